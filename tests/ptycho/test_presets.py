"""Named training presets: data validated by pydantic, explicit flags win, named errors (exit 2)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from ptycho.cli import train_main, train_parser
from ptycho.cli_arguments import parse_training_args
from ptycho.presets import PresetError, check_preset_fits, get_preset, load_presets, preset_names
from ptycho.simulate import make_probe


def _parse(*argv: str) -> argparse.Namespace:
    return parse_training_args(train_parser(), ["--train_data_file", "d.npz", "--output_dir", "out", *argv])


def test_the_shipped_presets_are_valid_and_include_the_nightly_one():
    presets = load_presets()
    assert "nightly-quality" in presets
    nightly = presets["nightly-quality"]
    assert nightly.N == 64 and nightly.values()["max_epochs"] >= 1 and nightly.values()["seed"] == 42


def test_a_preset_fills_in_the_flags_not_given():
    args = _parse("--preset", "nightly-quality")
    for dest, value in get_preset("nightly-quality").values().items():
        assert getattr(args, dest) == value
    assert args.preset_config.name == "nightly-quality"


def test_explicit_flags_override_the_preset_even_when_equal_to_the_default():
    default_epochs = train_parser().get_default("max_epochs")
    args = _parse("--preset", "nightly-quality", "--nepochs", str(default_epochs), "--gridsize=2", "--batch_size", "32")
    assert args.max_epochs == default_epochs and args.gridsize == 2 and args.batch_size == 32
    assert args.learning_rate == get_preset("nightly-quality").values()["learning_rate"]


def test_without_a_preset_nothing_changes():
    assert vars(_parse()) == {**vars(train_parser().parse_args(["--train_data_file", "d.npz", "--output_dir", "out"])),
                              "preset_config": None}


def test_an_unknown_preset_exits_2_listing_the_valid_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        _parse("--preset", "nightly")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "unknown preset 'nightly'" in err
    for name in preset_names():
        assert name in err


def test_a_broken_presets_file_names_the_file_and_field(tmp_path):
    bad = tmp_path / "presets.toml"
    bad.write_text('[fast]\ndescription = "x"\n[fast.flags]\ngridsize = 0\nepochs = 3\n')
    with pytest.raises(PresetError, match=r"presets.toml: \[fast\]: .*flags.gridsize.*flags.epochs"):
        load_presets(bad)


def test_preset_fit_checks_pattern_size_and_positions():
    nightly = get_preset("nightly-quality")
    check_preset_fits(nightly, Path("d.npz"), (1087, 64, 64), 2, 4)
    with pytest.raises(PresetError, match=r"--preset nightly-quality: made for 64 x 64 patterns, but d.npz has 32 x 32"):
        check_preset_fits(nightly, Path("d.npz"), (1087, 32, 32), 2, 4)
    with pytest.raises(PresetError, match=r"needs at least \d+ scan positions for gridsize 2 groups, but d.npz has 3"):
        check_preset_fits(nightly, Path("d.npz"), (3, 64, 64), 2, 4)


def _tiny_npz(path: Path, n_positions: int, n: int) -> Path:
    rng = np.random.default_rng(0)
    np.savez(
        path,
        diffraction=rng.uniform(0, 1, (n_positions, n, n)).astype(np.float32),
        probeGuess=make_probe(n).astype(np.complex64),
        xcoords=rng.uniform(40, 60, n_positions),
        ycoords=rng.uniform(40, 60, n_positions),
    )
    return path


@pytest.mark.parametrize("backend", ["tensorflow", "pytorch"])
@pytest.mark.parametrize(
    "n_positions,n,extra,needle",
    [
        (300, 32, [], "made for 64 x 64 patterns"),
        (10, 64, [], "needs at least 256 scan positions for training"),
        (10, 64, ["--gridsize", "2"], "needs at least 256 scan positions for gridsize 2 groups"),
    ],
)
def test_a_preset_that_does_not_fit_the_data_is_a_one_line_error(backend, n_positions, n, extra, needle, tmp_path, capsys):
    if backend == "pytorch":
        pytest.importorskip("torch")
    data = _tiny_npz(tmp_path / "d.npz", n_positions, n)
    code = train_main(["--backend", backend, "--preset", "nightly-quality", "--train_data_file", str(data),
                       "--output_dir", str(tmp_path / "out"), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert needle in err and "--preset nightly-quality" in err and str(data) in err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()
