"""The train and inference command lines: outputs, and one clear line with exit 2 for a user's mistake."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from PIL import Image

from ptycho.model_manifest import make_manifest, write_manifest
from ptycho.raw_data import RawData
from ptycho_torch import inference, train


def _one_line_error(capsys, code: int, *needles: str) -> str:
    captured = capsys.readouterr()
    assert code == 2, captured
    lines = [ln for ln in captured.err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_inference_cli_writes_npz_and_exact_size_pngs(tiny_trained, tiny_npz, tmp_path, capsys):
    _, config, _ = tiny_trained
    out = tmp_path / "inf"
    code = inference.main(["--model_path", str(config.output_dir), "--test_data", str(tiny_npz), "--output_dir", str(out), "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0
    truth = RawData.from_file(tiny_npz).objectGuess
    with np.load(out / "reconstruction.npz", allow_pickle=False) as npz:
        recon = npz["reconstruction"]
        meta = json.loads(str(npz["_metadata"]))
        assert recon.shape == truth.shape and recon.dtype == np.complex64
        assert npz["positions"].shape == (64 * 4, 2)
        np.testing.assert_allclose(npz["amplitude"], np.abs(recon), rtol=1e-6)
    assert meta["backend"] == "pytorch" and meta["gridsize"] == 2 and meta["poisson_deviance"] > 0
    # The amplitude image shows a picture, not a blank canvas: a barely trained model's smooth
    # output can compress below ARTIF-002's 1 KB (that check is made on the canonical
    # reconstruction by the integration test), so count grey levels instead of bytes.
    with Image.open(out / "reconstruction_amplitude.png") as im:
        assert len(np.unique(np.asarray(im.convert("L")))) >= 16
    for name in ("reconstruction_amplitude.png", "reconstruction_phase.png"):
        png = out / name
        with Image.open(png) as im:
            assert im.format == "PNG" and im.size == (truth.shape[1], truth.shape[0])  # one pixel per element
    assert summary["canvas_shape"] == list(truth.shape) and summary["n_groups"] == 64
    assert set(summary["timings_s"]) >= {"inference", "stitching", "png", "total"}


def test_inference_subset_and_canvas_override(tiny_trained, tiny_npz, tmp_path, capsys):
    _, config, _ = tiny_trained
    code = inference.main(["--model_path", str(config.output_dir), "--test_data", str(tiny_npz), "--output_dir",
                           str(tmp_path), "--n_images", "5", "--M", "100", "--no_deviance", "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and summary["n_groups"] == 5 and summary["canvas_shape"] == [100, 100]
    assert summary["poisson_deviance"] is None


@pytest.mark.parametrize(
    "argv, needles",
    [
        (["--train_data_file", "/nonexistent/train.npz"], ["/nonexistent/train.npz", "no such file"]),
        (["--gridsize", "0"], ["gridsize", "0"]),
        (["--batch_size", "12"], ["batch_size", "power of two"]),
        (["--max_epochs", "0"], ["nepochs", "0"]),
        (["--accelerator", "tpu"], ["--accelerator", "tpu"]),
        (["--strategy", "ddp"], ["--strategy ddp", "--devices >= 2"]),
        (["--accelerator", "gpu"], ["no CUDA device is visible"]),
    ],
)
def test_train_cli_user_mistakes_exit_2_with_one_line(argv, needles, tiny_npz, tmp_path, capsys):
    base = {"--train_data_file": str(tiny_npz), "--output_dir": str(tmp_path / "o"), "--max_epochs": "1"}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    code = train.main([x for kv in base.items() for x in kv])
    _one_line_error(capsys, code, *needles)


def test_train_cli_rejects_a_non_npz_file(tmp_path, capsys):
    bad = tmp_path / "notes.npz"
    bad.write_text("not a zip")
    code = train.main(["--train_data_file", str(bad), "--output_dir", str(tmp_path / "o")])
    _one_line_error(capsys, code, str(bad), "NPZ")


def test_inference_cli_user_mistakes_exit_2_with_one_line(tiny_trained, tiny_npz, canonical_npz, tmp_path, capsys):
    _, config, _ = tiny_trained
    model = str(config.output_dir)
    cases = [
        (["--model_path", str(tmp_path / "missing"), "--test_data", str(tiny_npz)], ["missing", "no such file"]),
        (["--model_path", model, "--test_data", str(tmp_path / "nope.npz")], ["nope.npz"]),
        (["--model_path", model, "--test_data", str(canonical_npz)], ["64 x 64", "N = 32"]),
        (["--model_path", model, "--test_data", str(tiny_npz), "--n_images", "0"], ["--n_images"]),
        (["--model_path", model, "--test_data", str(tiny_npz), "--accelerator", "cuda"], ["no CUDA device is visible"]),
    ]
    tf_model = tmp_path / "tf_model"
    write_manifest(tf_model, make_manifest("tensorflow", {}))
    cases.append((["--model_path", str(tf_model), "--test_data", str(tiny_npz)], ["tensorflow", "pytorch"]))
    for argv, needles in cases:
        code = inference.main(argv + ["--output_dir", str(tmp_path / "out")])
        _one_line_error(capsys, code, *needles)


def test_cli_processes_exit_2_without_traceback(tmp_path, cli_env, python_exe):
    """The same contract seen from outside: real processes, real exit codes."""
    for module, argv in (
        ("ptycho_torch.train", ["--train_data_file", str(tmp_path / "absent.npz"), "--output_dir", str(tmp_path / "o")]),
        ("ptycho_torch.inference", ["--model_path", str(tmp_path), "--test_data", str(tmp_path / "absent.npz"), "--output_dir", str(tmp_path / "o")]),
    ):
        proc = subprocess.run([python_exe, "-m", module, *argv], capture_output=True, text=True, env=cli_env(), timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not (tmp_path / "o").exists()  # nothing half-written


@pytest.mark.parametrize("module", ["ptycho_torch.train", "ptycho_torch.inference"])
def test_help_exits_0_and_documents_exit_codes(module, cli_env, python_exe):
    proc = subprocess.run([python_exe, "-m", module, "--help"], capture_output=True, text=True, env=cli_env(), timeout=120)
    assert proc.returncode == 0
    assert "Exit codes" in proc.stdout and "--accelerator" in proc.stdout


def test_a_scan_too_small_for_the_gridsize_is_a_user_error(tiny_trained, tmp_path, capsys):
    """A gridsize-2 model needs at least 4 positions per group: one line, exit 2, from both CLIs."""
    from ptycho.simulate import CanonicalSpec, simulate_spec

    small = simulate_spec(CanonicalSpec(seed=1, n=32, grid=2, count=3, step=4.0, nphotons=1e5)).to_file(tmp_path / "three.npz")
    _, config, _ = tiny_trained
    code = inference.main(["--model_path", str(config.output_dir), "--test_data", str(small), "--output_dir", str(tmp_path / "o")])
    _one_line_error(capsys, code, "three.npz", "gridsize 2")
    code = train.main(["--train_data_file", str(small), "--output_dir", str(tmp_path / "t"), "--gridsize", "2"])
    _one_line_error(capsys, code, "three.npz", "gridsize 2")
