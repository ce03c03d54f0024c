"""The honest evaluator: well-illuminated region, registration, strict phase, flat-image floors."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ptycho.evaluation import evaluate_reconstruction, illuminated_region, score_reconstruction
from ptycho.simulate import make_object, make_probe
from ptycho.stitching import summed_illumination

N = 32


@pytest.fixture
def scan():
    """A 128 x 128 object scanned on a 4 px grid over its middle with a 32 px probe."""
    truth = make_object("mixed", 128, np.random.default_rng(0))
    probe = make_probe(N, sigma=5, aperture=10)
    grid = np.arange(40, 89, 4, dtype=float)
    positions = np.array([[x, y] for y in grid for x in grid])
    return truth, probe, positions


def test_summed_illumination_is_the_probe_intensity_placed_at_each_position():
    probe = make_probe(N, sigma=5, aperture=10)
    total = summed_illumination(probe, np.array([[20.0, 20.0], [60.0, 20.0]]), (64, 80))
    intensity = np.abs(probe) ** 2
    np.testing.assert_allclose(total[4:36, 44:76], intensity, atol=1e-12)
    np.testing.assert_allclose(total.sum(), 2 * intensity.sum())


def test_illuminated_region_keeps_the_well_lit_middle_and_erodes(scan):
    truth, probe, positions = scan
    mask = illuminated_region(probe, positions, truth.shape, erosion=0)
    eroded = illuminated_region(probe, positions, truth.shape, erosion=3)
    assert mask[64, 64] and not mask[5, 5] and not mask[64, 20]
    assert eroded.sum() < mask.sum() and not np.any(eroded & ~mask)
    # the scanned rectangle itself (40..88) reaches into the half-lit edge: the mask is inside it
    rows, cols = np.nonzero(eroded)
    assert rows.min() > 40 - N // 2 and rows.max() < 88 + N // 2


def test_illuminated_region_too_small_is_a_named_error():
    probe = make_probe(N, sigma=1, aperture=2)
    with pytest.raises(ValueError, match="illuminated region: only"):
        illuminated_region(probe, np.array([[32.0, 32.0]]), (64, 64), erosion=3)


def test_truth_scores_one_and_the_floor_is_the_flat_image(scan):
    truth, probe, positions = scan
    report = score_reconstruction(truth * 1.7 * np.exp(0.9j), truth, probe, positions)
    assert report.figures.amplitude_ssim == pytest.approx(1.0, abs=1e-6)
    assert report.figures.phase_ssim == pytest.approx(1.0, abs=1e-6)
    mask = illuminated_region(probe, positions, truth.shape)
    assert report.flat == evaluate_reconstruction(np.ones_like(truth), truth, mask)
    assert report.flat.amplitude_ssim < 0.6
    # strict phase: a flat phase scores near nothing (with a data range of 1 it would score high)
    assert report.flat.phase_ssim < 0.15
    d = report.as_dict()
    assert d["flat_phase_ssim"] == report.flat.phase_ssim and d["scored_pixels"] == int(mask.sum())


def test_only_the_illuminated_region_is_scored(scan):
    truth, probe, positions = scan
    mask = illuminated_region(probe, positions, truth.shape)
    garbage = np.where(ndimage.binary_dilation(mask, iterations=4), truth, 0.01 * np.exp(2j))
    report = score_reconstruction(garbage, truth, probe, positions, register=False)
    assert report.figures.amplitude_ssim > 0.99 and report.figures.phase_ssim > 0.99
    everywhere = evaluate_reconstruction(garbage, truth)
    assert everywhere.amplitude_ssim < 0.9


def test_a_small_translation_is_registered_away_and_reported(scan):
    truth, probe, positions = scan
    shift = (0.6, -1.4)
    moved = ndimage.shift(truth.real, shift, order=3) + 1j * ndimage.shift(truth.imag, shift, order=3)
    registered = score_reconstruction(moved, truth, probe, positions)
    raw = score_reconstruction(moved, truth, probe, positions, register=False)
    assert registered.shift == pytest.approx((-0.6, 1.4), abs=0.15)
    assert registered.figures.amplitude_ssim > 0.98 > raw.figures.amplitude_ssim


def test_a_reconstruction_in_another_frame_is_not_registered_but_scored_low(scan):
    truth, probe, positions = scan
    report = score_reconstruction(np.roll(truth, 20, axis=1), truth, probe, positions)
    assert report.shift == (0.0, 0.0)
    assert report.figures.amplitude_ssim < 0.5


def test_mask_must_match_the_image(scan):
    truth, _, _ = scan
    with pytest.raises(ValueError, match="boolean mask of shape"):
        evaluate_reconstruction(truth, truth, np.ones((3, 3), bool))
