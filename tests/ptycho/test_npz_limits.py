"""NPZ input is bounded before it is read: a header that declares more than the file holds, a
zip bomb, or arrays beyond the memory budget are a named error (exit 2 in every command line),
never a MemoryError or gigabytes spent before failing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from npz_crafting import huge_declared_shape, zip_bomb

from ptycho.npz_limits import BUDGET_ENV, NpzLimitError, check_npz
from ptycho.raw_data import DataContractError, RawData, diffraction_shape

REPO = Path(__file__).resolve().parents[2]


def _valid(path: Path, n: int = 16, size: int = 32) -> Path:
    np.savez_compressed(path, diffraction=np.random.default_rng(0).random((n, size, size), np.float32),
                        probeGuess=np.ones((size, size), np.complex64), xcoords=np.arange(n, dtype=float),
                        ycoords=np.arange(n, dtype=float))
    return path


def test_a_header_declaring_more_than_the_member_holds_is_refused_before_allocation(tmp_path):
    path = huge_declared_shape(tmp_path / "huge.npz")
    with pytest.raises(NpzLimitError) as raised:
        RawData.from_file(path)
    message = str(raised.value)
    assert str(path) in message and "key 'diffraction'" in message and "(1000000000, 64, 64)" in message


def test_a_zip_bomb_is_refused_from_the_zip_directory(tmp_path):
    path = zip_bomb(tmp_path / "bomb.npz")
    assert path.stat().st_size < 1_000_000
    with pytest.raises(NpzLimitError, match=r"bomb.npz: key 'diffraction': expected a compression ratio"):
        RawData.from_file(path)


def test_arrays_beyond_the_memory_budget_are_refused(tmp_path, monkeypatch):
    path = _valid(tmp_path / "fine.npz")
    assert RawData.from_file(path).diffraction.shape == (16, 32, 32)  # within the default budget
    monkeypatch.setenv(BUDGET_ENV, "10000")
    with pytest.raises(NpzLimitError, match=rf"fine.npz: key '\w+': expected arrays within the memory budget of 10.0 kB \(set {BUDGET_ENV}"):
        RawData.from_file(path)
    monkeypatch.setenv(BUDGET_ENV, "lots")
    with pytest.raises(NpzLimitError, match=BUDGET_ENV):
        check_npz(path)


def test_a_truncated_archive_is_named_as_such(tmp_path):
    path = _valid(tmp_path / "cut.npz", n=64, size=64)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + data[-200:])  # directory kept, member data cut
    with pytest.raises(DataContractError) as raised:
        RawData.from_file(path)
    assert "cut.npz" in str(raised.value)


def test_not_a_zip_says_so_without_numpys_pickle_advice(tmp_path):
    path = tmp_path / "notes.npz"
    path.write_text("these are notes, not arrays")
    with pytest.raises(DataContractError) as raised:
        RawData.from_file(path)
    assert str(raised.value) == f"{path}: expected an NPZ (zip) archive, found not a zip archive"
    assert "pickle" not in str(raised.value)
    npy = tmp_path / "single.npz"
    with open(npy, "wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(DataContractError, match="a single .npy array"):
        RawData.from_file(npy)


def test_non_square_patterns_name_the_file_in_either_layout(tmp_path):
    for name, shape in (("canonical.npz", (20, 64, 32)), ("legacy.npz", (64, 32, 20))):
        path = tmp_path / name
        np.savez(path, diffraction=np.ones(shape, np.float32), probeGuess=np.ones((64, 64), np.complex64),
                 xcoords=np.arange(20.0), ycoords=np.arange(20.0))
        with pytest.raises(DataContractError, match=rf"{name}: key 'diffraction': expected square patterns"):
            diffraction_shape(path)


def _command(name: str) -> list[str]:
    script = Path(sys.executable).parent / name
    if name.startswith("ptycho_torch."):
        return [sys.executable, "-m", name]
    if not script.exists():
        pytest.skip(f"{name} is not installed next to {sys.executable}")
    return [str(script)]


@pytest.mark.parametrize("command, data_flag, prog", [
    ("ptycho-train", "--train_data_file", "ptycho-train"),
    ("ptycho-infer", "--test_data", "ptycho-infer"),
    ("ptycho-reconstruct", "--test_data", "ptycho-reconstruct"),
    ("ptycho_torch.train", "--train_data_file", "python -m ptycho_torch.train"),
    ("ptycho_torch.inference", "--test_data", "python -m ptycho_torch.inference"),
])
def test_every_command_line_reports_the_bound_in_one_line_with_exit_2(tmp_path, command, data_flag, prog):
    path = huge_declared_shape(tmp_path / "huge.npz")
    argv = [*_command(command), data_flag, str(path), "--output_dir", str(tmp_path / "out")]
    if command in ("ptycho-infer", "ptycho_torch.inference"):
        argv += ["--model_path", str(tmp_path)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "",
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180, check=False)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"{prog}: error: {path}: key 'diffraction'"), lines[0]


def test_the_torch_command_lines_name_the_command_the_user_typed(tmp_path):
    """``ptycho-train --backend pytorch`` hands over to the torch CLI; its errors still say ptycho-train."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    for command, flag in (("ptycho-train", "--train_data_file"), ("ptycho-infer", "--test_data")):
        argv = [*_command(command), "--backend", "pytorch", flag, str(tmp_path / "absent.npz"),
                "--output_dir", str(tmp_path / "out"), "--model_path", str(tmp_path)]
        if command == "ptycho-train":
            argv = argv[:-2]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=180, check=False)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"{command}: error: "), done.stderr
