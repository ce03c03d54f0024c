"""Iterative reference reconstruction (ptycho.iterative) and the ptycho-reconstruct CLI.

Quality is asserted against the canonical fixture's ground truth inside the scanned area; the
solvers' operators are held against the numpy physics oracle. No wall-clock assertions.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from ptycho import physics
from ptycho.evaluation import scanned_region
from ptycho.iterative import (
    Budget,
    compare_to_reference,
    object_in_input_frame,
    reconstruct_epie,
    reconstruct_poisson_pie,
    recommended_alpha,
    reference_reconstruction,
    register_to_reference,
    truth_figures,
)
from ptycho.iterative.operators import ScanOperator, canvas_for_scan
from ptycho.iterative.solver import probe_window, sparse_batches
from ptycho.raw_data import RawData
from ptycho.reconstruct_cli import main as reconstruct_main
from ptycho.simulate import CanonicalSpec, ensure_canonical_dataset, make_probe, simulate_spec


@pytest.fixture(scope="module")
def canonical() -> RawData:
    return RawData.from_file(ensure_canonical_dataset())


@pytest.fixture(scope="module")
def small_scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10 x 10 scan (100 positions) of the canonical kind: quick for the CLI tests."""
    path = tmp_path_factory.mktemp("data") / "small.npz"
    return simulate_spec(CanonicalSpec(seed=5, grid=10, count=100)).to_file(path)


def _complex(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


# --------------------------------------------------------------------------- operators


def test_adjoint_extract_is_the_adjoint_of_extract_patches() -> None:
    rng = np.random.default_rng(0)
    obj = _complex(rng, (40, 44))
    # sub-pixel positions, some patches hanging over the edges (zero outside the object)
    positions = np.array([[5.3, 4.7], [20.25, 18.5], [38.9, 36.1], [22.0, 21.0]])
    grad = _complex(rng, (4, 16, 16))
    forward = np.vdot(grad, physics.extract_patches(obj, positions, 16))
    backward = np.vdot(physics.adjoint_extract(grad, positions, obj.shape), obj)
    assert forward == pytest.approx(backward, rel=1e-5)


def test_scan_operator_matches_the_physics_oracle() -> None:
    rng = np.random.default_rng(1)
    n = 16
    positions = rng.uniform(10, 40, size=(12, 2))
    shape, offset = canvas_for_scan(positions, n)
    assert np.all(offset == 0)
    obj = _complex(rng, shape).astype(np.complex64)
    op = ScanOperator(positions, n, shape)
    np.testing.assert_allclose(op.extract(obj), physics.extract_patches(obj, positions, n), atol=1e-5)
    grad = _complex(rng, (12, n, n)).astype(np.complex64)
    np.testing.assert_allclose(op.adjoint(grad), physics.adjoint_extract(grad, positions, shape), atol=1e-4)
    # a window computes exactly that part of every patch
    window = (slice(3, 12), slice(2, 14))
    windowed = ScanOperator(positions, n, shape, window)
    np.testing.assert_allclose(windowed.extract(obj), physics.extract_patches(obj, positions, n)[:, 3:12, 2:14], atol=1e-5)


def test_canvas_shifts_positions_that_would_fall_off_it() -> None:
    positions = np.array([[-3.5, 2.0], [10.0, 12.0]])
    shape, offset = canvas_for_scan(positions, 16)
    assert np.all(positions + offset - 8 >= 0)
    ScanOperator(positions + offset, 16, shape)  # fits
    with pytest.raises(ValueError, match="do not fit"):
        ScanOperator(positions, 16, shape)


def test_sparse_sets_never_share_a_pixel(canonical: RawData) -> None:
    """The vectorised update equals sequential PIE only if no two footprints of a set overlap."""
    window = probe_window(canonical.probeGuess)
    op = ScanOperator(canonical.positions, canonical.N, canonical.objectGuess.shape, window)
    height = window[0].stop - window[0].start
    batches = sparse_batches(canonical.positions, height + 1, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(canonical.n_positions))
    assert len(batches) < 150  # sets, not single positions
    rng = np.random.default_rng(2)
    for sel in batches[:5]:
        index = op.index[sel].ravel()
        assert np.unique(index).size == index.size
        grad = _complex(rng, (sel.size, height, window[1].stop - window[1].start)).astype(np.complex64)
        canvas = np.zeros(op.shape, dtype=np.complex64)
        op.add_adjoint(canvas, grad, sel)
        np.testing.assert_allclose(canvas, op.adjoint(grad, sel), atol=1e-4)


# --------------------------------------------------------------------------- solvers on the canonical fixture


@pytest.mark.parametrize("solver", [reconstruct_epie, reconstruct_poisson_pie])
def test_known_probe_reaches_amplitude_ssim_0_9_within_30_s(canonical: RawData, solver) -> None:
    result = solver(canonical, Budget(iterations=3, seconds=30.0))
    figures = truth_figures(result, canonical)
    assert figures is not None
    assert figures.amplitude_ssim >= 0.9
    assert np.all(np.isfinite(result.object))


@pytest.mark.parametrize("solver", [reconstruct_epie, reconstruct_poisson_pie])
def test_cost_decreases_every_sweep(canonical: RawData, solver) -> None:
    result = solver(canonical, Budget(iterations=4))
    assert result.cost.shape == (4,)
    assert np.all(np.diff(result.cost) < 0)
    assert list(result.history_iteration) == [1.0, 2.0, 3.0, 4.0]


def test_reference_defaults_converge_with_momentum(canonical: RawData) -> None:
    plain = reconstruct_epie(canonical, Budget(iterations=8))
    reference = reference_reconstruction(canonical, "epie", iterations=8)
    assert reference.settings["momentum"] == 0.9
    assert reference.cost[-1] < reference.cost[0] / 20
    # the low-frequency phase is what momentum speeds up
    assert truth_figures(reference, canonical).phase_ssim > truth_figures(plain, canonical).phase_ssim + 0.05


def test_shifted_probe_is_visibly_worse_and_registration_finds_the_shift(canonical: RawData) -> None:
    good = truth_figures(reconstruct_epie(canonical, Budget(iterations=3)), canonical)
    shifted = reconstruct_epie(canonical, Budget(iterations=3), probe=np.roll(canonical.probeGuess, 3, axis=1))
    worse = truth_figures(shifted, canonical)
    assert worse.amplitude_ssim < good.amplitude_ssim - 0.1
    # a shifted probe only translates the object (a global ambiguity): registration undoes it
    figures, registration = compare_to_reference(
        object_in_input_frame(shifted, canonical.objectGuess.shape), canonical.objectGuess, canonical.positions
    )
    assert abs(registration.shift[1]) == pytest.approx(3.0, abs=0.3)
    assert abs(registration.shift[0]) < 0.3
    assert figures.amplitude_ssim > good.amplitude_ssim - 0.02


def test_wrong_probe_is_worse_and_probe_update_repairs_it(canonical: RawData) -> None:
    wrong_probe = make_probe(canonical.N, defocus=2.0)  # the data was taken with defocus 3
    known = reconstruct_epie(canonical, Budget(iterations=4))
    wrong = reconstruct_epie(canonical, Budget(iterations=4), probe=wrong_probe)
    repaired = reconstruct_epie(canonical, Budget(iterations=4), probe=wrong_probe, update_probe=True)
    assert wrong.cost[-1] > 10 * known.cost[-1]
    assert truth_figures(wrong, canonical).amplitude_ssim < 0.7
    assert repaired.cost[-1] < 2 * known.cost[-1]
    assert truth_figures(repaired, canonical).amplitude_ssim > 0.85
    assert not np.allclose(repaired.probe, known.probe)


def test_deterministic_for_a_seed(small_scan: Path) -> None:
    raw = RawData.from_file(small_scan)
    a = reference_reconstruction(raw, "poisson-pie", iterations=3, seed=7)
    b = reference_reconstruction(raw, "poisson-pie", iterations=3, seed=7)
    c = reference_reconstruction(raw, "poisson-pie", iterations=3, seed=8)
    assert np.array_equal(a.object, b.object) and np.array_equal(a.cost, b.cost)
    assert not np.array_equal(a.object, c.object)


def test_positions_off_the_canvas_are_moved_onto_it(small_scan: Path) -> None:
    """Coordinates centred near zero (as experimental scans often are) reconstruct the same object,
    placed on a canvas shifted by ``offset``."""
    raw = RawData.from_file(small_scan)
    moved = RawData(diffraction=raw.diffraction, probeGuess=raw.probeGuess, xcoords=raw.xcoords - 30, ycoords=raw.ycoords - 30)
    plain = reconstruct_epie(raw, Budget(iterations=2))
    shifted = reconstruct_epie(moved, Budget(iterations=2))
    assert np.all(plain.offset == 0)
    d_col, d_row = (int(v) for v in (shifted.offset - 30))
    assert d_col < 0 and d_row < 0  # the canvas starts right where the scan needs it
    np.testing.assert_allclose(shifted.positions, plain.positions + [d_col, d_row], atol=1e-9)
    region = scanned_region(shifted.positions, shifted.object.shape)
    rows, cols = region
    np.testing.assert_allclose(
        shifted.object[region],
        plain.object[rows.start - d_row : rows.stop - d_row, cols.start - d_col : cols.stop - d_col],
        atol=1e-4,
    )


def test_time_budget_stops_part_way(canonical: RawData) -> None:
    result = reconstruct_epie(canonical, Budget(iterations=10_000, seconds=0.5))
    assert 0 < result.iterations < 10_000
    assert result.history_cost.size == result.history_iteration.size >= 1
    assert np.all(np.diff(result.history_iteration) > 0)


def test_progress_reports_every_sweep(small_scan: Path) -> None:
    seen: list[tuple[int, float]] = []
    result = reconstruct_epie(
        RawData.from_file(small_scan), Budget(iterations=3), progress=lambda r: seen.append((r.iteration, r.cost))
    )
    assert [i for i, _ in seen] == [1, 2, 3]
    assert [c for _, c in seen] == list(result.cost)


def test_dose_sets_the_default_step(small_scan: Path) -> None:
    raw = RawData.from_file(small_scan)
    assert recommended_alpha(raw) == 1.0
    low = RawData(
        diffraction=raw.diffraction * np.float32(np.sqrt(1e-6)), probeGuess=raw.probeGuess,
        xcoords=raw.xcoords, ycoords=raw.ycoords,
    )
    assert recommended_alpha(low) == 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "rpie"}, "method: invalid value 'rpie'"),
        ({"method": "epie", "cap": 3.0}, "unknown option"),
        ({"method": "epie", "iterations": 0}, "iterations: expected an integer >= 1"),
        ({"method": "epie", "seconds": float("nan")}, "seconds: expected a finite number"),
        ({"method": "epie", "alpha": 0.0}, "alpha: expected"),
        ({"method": "epie", "momentum": 1.0}, "momentum: expected"),
        ({"method": "poisson-pie", "step": 2.0}, "step: expected"),
        ({"method": "epie", "probe": np.ones((8, 8))}, "probe: expected shape"),
    ],
)
def test_bad_settings_name_the_setting(small_scan: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        reference_reconstruction(small_scan, **kwargs)


# --------------------------------------------------------------------------- registration


def _shift(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    return ndimage.shift(image.real, shift, order=3, mode="nearest") + 1j * ndimage.shift(
        image.imag, shift, order=3, mode="nearest"
    )


@pytest.mark.parametrize("feature", ["complex", "amplitude", "phase"])
def test_registration_undoes_shift_scale_and_phase(canonical: RawData, feature: str) -> None:
    truth = canonical.objectGuess
    moved = _shift(truth, (2.3, -1.6)) * (0.7 * np.exp(0.8j))
    registration = register_to_reference(moved, truth, canonical.positions, feature=feature)
    assert registration.shift == pytest.approx((-2.3, 1.6), abs=0.1)
    assert abs(registration.scale) == pytest.approx(1 / 0.7, rel=0.02)
    assert np.angle(registration.scale) == pytest.approx(-0.8, abs=0.02)
    figures, _ = compare_to_reference(moved, truth, canonical.positions, feature=feature)
    assert figures.amplitude_ssim > 0.98 and figures.phase_ssim > 0.98


def test_registration_scores_blur_below_a_sharp_copy_on_a_smaller_canvas(canonical: RawData) -> None:
    truth = canonical.objectGuess
    sharp = _shift(truth, (0.0, 1.5))[:260, :262]  # a stitched canvas can be smaller than the reference
    blurred = ndimage.gaussian_filter(sharp.real, 4) + 1j * ndimage.gaussian_filter(sharp.imag, 4)
    sharp_figures, reg = compare_to_reference(sharp, truth, canonical.positions)
    blurred_figures, _ = compare_to_reference(blurred, truth, canonical.positions)
    assert reg.aligned.shape == truth.shape
    assert sharp_figures.amplitude_ssim > 0.97
    assert blurred_figures.amplitude_ssim < sharp_figures.amplitude_ssim - 0.1


def test_reference_reconstruction_compares_like_the_truth(canonical: RawData) -> None:
    """Without ground truth, the iterative reference stands in for it: a network-like degraded
    copy scores about the same against the reference as against the truth."""
    result = reconstruct_epie(canonical, Budget(iterations=4))
    reference = object_in_input_frame(result, canonical.objectGuess.shape)
    candidate = ndimage.gaussian_filter(canonical.objectGuess.real, 1.5) + 1j * ndimage.gaussian_filter(
        canonical.objectGuess.imag, 1.5
    )
    vs_reference, _ = compare_to_reference(candidate, reference, canonical.positions)
    vs_result, _ = compare_to_reference(candidate, result, canonical.positions)  # the result itself will do
    assert vs_result == vs_reference
    vs_truth, _ = compare_to_reference(candidate, canonical.objectGuess, canonical.positions)
    assert vs_reference.amplitude_ssim == pytest.approx(vs_truth.amplitude_ssim, abs=0.05)
    region = scanned_region(canonical.positions, reference.shape)
    assert np.abs(reference[region]).std() > 0.05  # the reference is not flat


# --------------------------------------------------------------------------- CLI


def test_cli_writes_reconstruction_and_pngs(small_scan: Path, tmp_path: Path, capsys) -> None:
    from PIL import Image

    out = tmp_path / "out"
    code = reconstruct_main(
        ["--method", "poisson-pie", "--test_data", str(small_scan), "--output_dir", str(out), "--iterations", "3", "--json"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "poisson-pie" and summary["iterations"] == 3.0
    with np.load(out / "reconstruction.npz", allow_pickle=False) as npz:
        recon = npz["reconstruction"]
        assert recon.dtype == np.complex64 and recon.ndim == 2
        assert npz["positions"].shape == (100, 2)
        assert npz["cost"].shape == (3,)
        meta = json.loads(str(npz["_metadata"]))
    assert meta["method"] == "poisson-pie" and meta["quality_vs_ground_truth"]["amplitude_ssim"] > 0.5
    for name in ("reconstruction_amplitude.png", "reconstruction_phase.png"):
        path = out / name
        assert path.stat().st_size > 1024
        with Image.open(path) as image:
            assert image.size == (recon.shape[1], recon.shape[0])
    assert sorted(p.name for p in out.iterdir()) == [
        "reconstruction.npz", "reconstruction_amplitude.png", "reconstruction_phase.png",
    ]


def _run_cli_error(argv: list[str], capsys) -> str:
    code = reconstruct_main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


def test_cli_missing_file_is_one_line_and_writes_nothing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    err = _run_cli_error(["--test_data", str(tmp_path / "nope.npz"), "--output_dir", str(out)], capsys)
    assert "nope.npz" in err and "no such file" in err
    assert not out.exists()


def test_cli_contract_violation_names_the_key(small_scan: Path, tmp_path: Path, capsys) -> None:
    with np.load(small_scan) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "probeGuess"}
    broken = tmp_path / "broken.npz"
    np.savez(broken, **arrays)
    err = _run_cli_error(["--test_data", str(broken), "--output_dir", str(tmp_path / "out")], capsys)
    assert "probeGuess" in err and "broken.npz" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--iterations", "0"], "--iterations"),
        (["--seconds", "-1"], "--seconds"),
        (["--iterations", "2", "--seconds", "1"], "not allowed with"),
        (["--method", "dm"], "--method"),
        (["--cap", "3"], "--cap: only applies to --method poisson-pie"),
        (["--momentum", "1.5"], "--momentum"),
    ],
)
def test_cli_bad_values_exit_2(small_scan: Path, tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    argv = ["--test_data", str(small_scan), "--output_dir", str(tmp_path / "out"), *extra]
    with pytest.raises(SystemExit) as caught:
        code = reconstruct_main(argv)
        raise SystemExit(code)
    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_console_script_help() -> None:
    script = Path(sys.executable).with_name("ptycho-reconstruct")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0
    assert "--method" in done.stdout and "poisson-pie" in done.stdout and "--seconds" in done.stdout
