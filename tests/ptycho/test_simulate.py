"""Simulator and the canonical fixture."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from ptycho.raw_data import RawData
from ptycho.simulate import CANONICAL, OBJECT_KINDS, make_object, make_probe, main


def test_canonical_fixture_shape_and_contract(canonical_dataset):
    raw = RawData.from_file(canonical_dataset)
    assert raw.diffraction.shape == (1087, 64, 64) and raw.diffraction.dtype == np.float32
    assert raw.objectGuess.shape == (CANONICAL.object_size,) * 2
    assert raw.metadata["nphotons"] == 1e9 and raw.metadata["seed"] == CANONICAL.seed
    counts = (raw.diffraction.astype(np.float64) ** 2).sum(axis=(1, 2))
    assert counts.mean() == pytest.approx(1e9, rel=1e-3)
    np.testing.assert_allclose(counts, np.round(counts))  # amplitudes are sqrt of integer counts
    half = 32
    assert raw.xcoords.min() - half >= 0 and raw.xcoords.max() + half <= raw.objectGuess.shape[1]


def test_canonical_bytes_are_identical_for_a_seed(tmp_path, monkeypatch, canonical_dataset):
    monkeypatch.setenv("PTYCHO_DATASETS_DIR", str(tmp_path))
    assert main(["--canonical"]) == 0
    assert (tmp_path / CANONICAL.filename).read_bytes() == canonical_dataset.read_bytes()


@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_objects_have_multiscale_structure(kind):
    obj = make_object(kind, 128, np.random.default_rng(0))
    amp, phase = np.abs(obj), np.angle(obj)
    assert obj.dtype == np.complex64
    assert 0.45 <= amp.min() and amp.max() <= 1.0001
    assert 1.5 < np.ptp(phase) <= 2.0001
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2(amp - amp.mean()))) ** 2
    r = np.hypot(*np.indices(amp.shape) - 64)
    fine = spectrum[(r > 16) & (r < 40)].sum()  # features of about 3-8 px
    coarse = spectrum[(r > 1) & (r < 8)].sum()  # features of tens of px
    assert fine > 1e-3 * coarse and coarse > 0


def test_probe_has_defocus_phase_inside_aperture():
    probe = make_probe(64, sigma=8, aperture=16, defocus=3.0)
    assert np.abs(probe[32, 32 + 20]) == 0  # outside the aperture
    assert np.angle(probe[32, 32 + 10]) == pytest.approx(3.0 * 100 / 256, abs=1e-5)


def test_cli_writes_a_custom_scan(tmp_path):
    out = tmp_path / "scan.npz"
    assert main(["--output", str(out), "--grid", "5", "--N", "32", "--object", "lines", "--nphotons", "1e4"]) == 0
    raw = RawData.from_file(out)
    assert raw.diffraction.shape == (25, 32, 32) and raw.metadata["object_kind"] == "lines"


def test_cli_user_errors_exit_2_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ptycho.simulate", "--grid", "0", "--output", str(tmp_path / "x.npz")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "error: --grid" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "ptycho.simulate"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--output" in proc.stderr
