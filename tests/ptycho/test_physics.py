"""The numpy oracle: the forward model, reassembly and metrics both backends are held against."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics
from ptycho.evaluation import evaluate_reconstruction, frc50, scanned_region
from ptycho.simulate import make_object, make_probe
from ptycho.stitching import patch_weights, reassemble_patches


@pytest.fixture
def obj():
    return make_object("mixed", 96, np.random.default_rng(0))


def test_propagate_keeps_energy_parseval():
    rng = np.random.default_rng(1)
    psi = (rng.standard_normal((5, 32, 32)) + 1j * rng.standard_normal((5, 32, 32))).astype(np.complex64)
    far = physics.propagate(psi)
    np.testing.assert_allclose(physics.intensity(far).sum(axis=(1, 2)), physics.intensity(psi).sum(axis=(1, 2)), rtol=1e-5)


def test_propagate_centres_zero_frequency():
    far = physics.propagate(np.ones((1, 16, 16), np.complex64))
    assert np.unravel_index(np.argmax(np.abs(far[0])), (16, 16)) == (8, 8)


def test_extraction_matches_direct_indexing_at_integer_positions(obj):
    patches = physics.extract_patches(obj, np.array([[40.0, 30.0]]), 16)
    np.testing.assert_array_equal(patches[0], obj[30 - 8 : 30 + 8, 40 - 8 : 40 + 8])


def test_extraction_is_translation_consistent(obj):
    """Moving the scan position by (dx, dy) moves the sampled window by the same amount."""
    base = physics.extract_patches(obj, np.array([[40.3, 35.6]]), 16)[0]
    shifted = physics.extract_patches(obj, np.array([[43.3, 37.6]]), 16)[0]
    np.testing.assert_allclose(shifted[:-2, :-3], base[2:, 3:], atol=1e-6)


def test_extraction_interpolates_bilinearly_and_zero_outside():
    ramp = np.tile(np.arange(20, dtype=np.float64), (20, 1)).astype(np.complex64)  # value = column
    patch = physics.extract_patches(ramp, np.array([[10.25, 10.0]]), 4)[0]
    np.testing.assert_allclose(patch.real[0], np.arange(4) + 8.25, atol=1e-6)
    corner = physics.extract_patches(np.ones((8, 8), np.complex64), np.array([[0.0, 0.0]]), 4)[0]
    assert np.all(corner[:2, :] == 0) and np.all(corner[2:, 2:] == 1)


def test_poisson_counts_mean_total_matches_nphotons(obj):
    probe = make_probe(32, sigma=5, aperture=12)
    pos = np.array([[x, y] for x in range(30, 66, 6) for y in range(30, 66, 6)], dtype=float)
    intensities = physics.forward_intensity(obj, probe, pos)
    counts, scale = physics.poisson_counts(intensities, 1e5, np.random.default_rng(0))
    assert counts.sum(axis=(1, 2)).mean() == pytest.approx(1e5, rel=0.01)
    assert scale == pytest.approx(1e5 / intensities.sum(axis=(1, 2)).mean())


def test_poisson_nll_and_deviance_are_minimal_at_the_truth():
    rng = np.random.default_rng(0)
    lam = rng.uniform(1, 50, 1000)
    k = rng.poisson(lam)
    assert physics.poisson_nll(lam, k) < physics.poisson_nll(lam * 1.3, k)
    assert physics.poisson_deviance(k.astype(float), k) == pytest.approx(0, abs=1e-4)
    assert physics.poisson_deviance(lam, k) < physics.poisson_deviance(np.full_like(lam, lam.mean()), k)


def test_stitching_true_patches_recovers_object_inside_scanned_area(obj):
    n = 32
    pos = np.array([[x, y] for y in range(20, 77, 4) for x in range(20, 77, 4)], dtype=float)
    patches = physics.extract_patches(obj, pos, n)
    canvas = reassemble_patches(patches, pos, obj.shape, patch_weights(n, make_probe(n, sigma=6, aperture=14)))
    region = scanned_region(pos, obj.shape)
    np.testing.assert_allclose(canvas[region], obj[region], atol=1e-5)


def test_stitching_honours_subpixel_positions():
    """A constant object is recovered exactly whatever the sub-pixel offsets (weights normalise)."""
    obj = np.full((64, 64), 2 + 1j, np.complex64)
    pos = np.random.default_rng(0).uniform(24, 40, (30, 2))
    canvas = reassemble_patches(physics.extract_patches(obj, pos, 16), pos, obj.shape)
    region = scanned_region(pos, obj.shape)
    np.testing.assert_allclose(canvas[region], obj[region], atol=1e-5)


def test_stitching_crop_only_uses_central_window():
    patches = np.ones((1, 8, 8), np.float32)
    canvas = reassemble_patches(patches, np.array([[8.0, 8.0]]), (16, 16), patch_weights(8, crop=4))
    assert canvas.sum() == pytest.approx(16)
    assert canvas[6:10, 6:10].min() == 1


def test_stitching_rejects_bad_shapes():
    with pytest.raises(ValueError, match="positions: expected shape \\(2, 2\\)"):
        reassemble_patches(np.ones((2, 8, 8)), np.ones((3, 2)), (16, 16))


def test_metrics_ideal_on_identical_inputs(obj):
    q = evaluate_reconstruction(obj, obj)
    assert q.amplitude_ssim == pytest.approx(1.0) and q.phase_ssim == pytest.approx(1.0)
    assert q.amplitude_mae == pytest.approx(0, abs=1e-6) and q.phase_mae == pytest.approx(0, abs=1e-6)
    assert q.amplitude_psnr > 100
    assert q.amplitude_frc50 == 1.0


def test_metrics_invariant_to_global_phase_and_amplitude_scale(obj):
    transformed = obj * 1.7 * np.exp(1j * 0.9)
    q = evaluate_reconstruction(transformed, obj)
    assert q.amplitude_ssim == pytest.approx(1.0, abs=1e-5)
    assert q.phase_ssim == pytest.approx(1.0, abs=1e-5)
    assert q.phase_mae < 1e-5


def test_metrics_penalise_a_flat_image(obj):
    flat = np.full_like(obj, np.abs(obj).mean())
    q = evaluate_reconstruction(flat, obj)
    assert q.amplitude_ssim < 0.5 and q.phase_ssim < 0.5


def test_phase_plane_removal():
    truth = make_object("grf", 64, np.random.default_rng(3))
    rows, cols = np.indices(truth.shape)
    tilted = truth * np.exp(1j * (0.01 * rows - 0.02 * cols))
    assert evaluate_reconstruction(tilted, truth, phase_plane=True).phase_ssim > 0.99
    assert evaluate_reconstruction(tilted, truth).phase_ssim < evaluate_reconstruction(tilted, truth, phase_plane=True).phase_ssim


def test_frc_drops_for_blurred_image():
    from scipy.ndimage import gaussian_filter

    truth = np.abs(make_object("grf", 128, np.random.default_rng(2)))
    noise = np.random.default_rng(4).normal(0, 0.02, truth.shape)
    assert frc50(gaussian_filter(truth, 3) + noise, truth + noise[::-1]) < frc50(truth + noise, truth + noise[::-1])
