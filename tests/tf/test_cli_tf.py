"""``ptycho-train`` / ``ptycho-infer``: the torch CLIs' flags plus ``--backend``, fast help, and a
user's mistakes as one line on stderr with exit code 2 (nothing written). These cases fail before
TensorFlow loads, so they run in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ptycho import cli
from ptycho.simulate import CanonicalSpec, simulate_spec

REPO = Path(__file__).resolve().parents[2]
TINY = CanonicalSpec(seed=5, n=32, grid=8, count=64, step=4.0, jitter=0.3, nphotons=1e6, object_kind="mixed")


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "tiny_n32.npz"
    simulate_spec(TINY).to_file(path)
    return path


@pytest.fixture(scope="module")
def tiny_n64_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli64") / "tiny_n64.npz"
    simulate_spec(CanonicalSpec(seed=6, n=64, grid=6, count=36, step=6.0, nphotons=1e6)).to_file(path)
    return path


def _one_line_error(capsys, main, argv: list[str], *fragments: str) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_help_lists_backend_and_loads_no_framework():
    """``--help`` answers without importing TensorFlow or torch."""
    code = (
        "import sys\n"
        "from ptycho.cli import train_main, infer_main\n"
        "for main in (train_main, infer_main):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0\n"
        "print(sorted(m for m in ('tensorflow', 'torch', 'keras') if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "usage: ptycho-train" in proc.stdout and "usage: ptycho-infer" in proc.stdout
    assert proc.stdout.count("--backend {tensorflow,pytorch}") == 4  # usage line + option, twice
    assert "--train_data_file" in proc.stdout and "--model_path" in proc.stdout and "Exit codes" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_invalid_backend_is_a_usage_error(capsys, tiny_npz, tmp_path):
    with pytest.raises(SystemExit) as info:
        cli.train_main(["--backend", "tf", "--train_data_file", str(tiny_npz), "--output_dir", str(tmp_path / "o")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'tf'" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--gridsize", "0"], ("gridsize", "0")),
        (["--batch_size", "12"], ("batch_size", "power of two")),
        (["--max_epochs", "0"], ("nepochs", "0")),
        (["--devices", "2"], ("--devices", "tensorflow")),
        (["--strategy", "ddp"], ("--strategy", "pytorch")),
        (["--accelerator", "tpu"], ("--accelerator", "tpu")),
    ],
)
def test_training_mistakes_are_one_line_exit_2(capsys, tiny_npz, tmp_path, extra, fragments):
    out = tmp_path / "out"
    _one_line_error(capsys, cli.train_main, ["--train_data_file", str(tiny_npz), "--output_dir", str(out), *extra], *fragments)
    assert not out.exists()


def test_training_file_mistakes_name_the_file(capsys, tiny_npz, tiny_n64_npz, tmp_path):
    missing = tmp_path / "missing.npz"
    _one_line_error(capsys, cli.train_main, ["--train_data_file", str(missing), "--output_dir", str(tmp_path / "a")], str(missing))
    _one_line_error(
        capsys, cli.train_main,
        ["--train_data_file", str(tiny_npz), "--test_data_file", str(tiny_n64_npz), "--output_dir", str(tmp_path / "b")],
        "--test_data_file", "64 x 64", "32 x 32",
    )
    occupied = tmp_path / "occupied"
    occupied.write_text("a file")
    _one_line_error(capsys, cli.train_main, ["--train_data_file", str(tiny_npz), "--output_dir", str(occupied)], "--output_dir", "not a directory")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_inference_mistakes_are_one_line_exit_2(capsys, tiny_npz, tmp_path):
    out = tmp_path / "out"
    _one_line_error(
        capsys, cli.infer_main, ["--model_path", str(tmp_path / "nowhere"), "--test_data", str(tiny_npz), "--output_dir", str(out)],
        "--model_path", "no such file",
    )
    not_a_model = tmp_path / "empty_dir"
    not_a_model.mkdir()
    _one_line_error(
        capsys, cli.infer_main, ["--model_path", str(not_a_model), "--test_data", str(tiny_npz), "--output_dir", str(out)],
        str(not_a_model), "not a model directory",
    )
    _one_line_error(
        capsys, cli.infer_main, ["--model_path", str(not_a_model), "--test_data", str(tiny_npz), "--output_dir", str(out), "--M", "0"],
        "--M",
    )
    assert not out.exists()


def test_flags_match_the_torch_command_lines():
    """Same flags, defaults and destinations as ``python -m ptycho_torch.train`` / ``.inference``
    (plus ``--backend``): the unified CLI does not drift from the torch one."""
    pytest.importorskip("torch")
    from ptycho_torch import inference as torch_inference
    from ptycho_torch import train as torch_train

    def options(parser):
        return {
            tuple(a.option_strings): (a.dest, a.default, a.type, getattr(a, "choices", None))
            for a in parser._actions
            if a.option_strings and a.dest not in ("help", "backend")
        }

    assert options(cli.train_parser()) == options(torch_train._parser())
    assert options(cli.infer_parser()) == options(torch_inference._parser())


def test_module_entry_point_names_the_subcommands(capsys):
    assert cli.main([]) == 2
    assert "{train,infer}" in capsys.readouterr().err
