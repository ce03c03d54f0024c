"""Phase synchronisation of predicted patches before stitching (both backends call it)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics
from ptycho.simulate import make_object, make_probe
from ptycho.stitching import patch_weights, reassemble_patches, relative_patch_phases, synchronise_patch_phases

N = 32


def _scan(step: float, count_side: int):
    truth = make_object("mixed", 128, np.random.default_rng(1))
    grid = 64 + step * (np.arange(count_side) - (count_side - 1) / 2)
    rng = np.random.default_rng(2)
    positions = np.array([[x, y] for y in grid for x in grid]) + rng.uniform(-0.4, 0.4, (count_side**2, 2))
    return truth, positions, physics.extract_patches(truth, positions, N)


def _without_plane(offsets: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``offsets`` less their best-fitting plane over the positions: the part synchronisation
    removes (a planar part is kept on purpose, see the tilt test below)."""
    design = np.column_stack([positions, np.ones(len(positions))])
    plane, *_ = np.linalg.lstsq(design, offsets, rcond=None)
    return offsets - design @ plane


def _offsets_left(patches: np.ndarray, truth_patches: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each patch's remaining phase offset against the truth, relative to the first patch's."""
    theta = np.angle(np.sum(weights * patches * np.conj(truth_patches), axis=(1, 2)))
    return np.angle(np.exp(1j * (theta - theta[0])))


@pytest.mark.parametrize("count_side", [4, 12])  # 16 patches: dense solver; 144: sparse (ARPACK)
def test_random_and_drifting_offsets_are_removed(count_side):
    truth, positions, patches = _scan(4.0, count_side)
    rng = np.random.default_rng(3)
    # noise + a curved drift across the scan (a planar one is kept: see synchronise_patch_phases)
    offsets = _without_plane(rng.normal(0, 0.5, len(positions)) + 1.5 * np.sin((positions[:, 0] - 64) / 12), positions)
    weights = patch_weights(N, make_probe(N, sigma=5, aperture=10), crop=N // 2)
    shifted = patches * np.exp(1j * offsets)[:, None, None]
    assert np.abs(_offsets_left(shifted, patches, weights)).max() > 1.0
    synced = synchronise_patch_phases(shifted, positions, weights)
    assert synced.dtype == shifted.dtype and synced.shape == shifted.shape
    # what is left comes from rounding sub-pixel relative positions to whole pixels (jitter 0.4 px)
    left = _offsets_left(synced, patches, weights)
    np.testing.assert_allclose(_without_plane(left, positions), 0, atol=0.03)
    assert np.ptp(left) < 0.3  # a slight tilt over the whole scan at most
    np.testing.assert_allclose(np.abs(synced), np.abs(shifted), rtol=1e-5)  # only phases change


def test_synchronised_stitching_recovers_the_object_phase():
    truth, positions, patches = _scan(3.0, 12)
    weights = patch_weights(N, make_probe(N, sigma=5, aperture=10), crop=N // 2)
    offsets = _without_plane(np.random.default_rng(4).normal(0, 0.8, len(positions)), positions)
    shifted = patches * np.exp(1j * offsets)[:, None, None]
    plain = reassemble_patches(shifted, positions, truth.shape, weights)
    synced = reassemble_patches(synchronise_patch_phases(shifted, positions, weights), positions, truth.shape, weights)
    inner = (slice(52, 76), slice(52, 76))
    rows, cols = np.indices(truth[inner].shape)
    design = np.column_stack([rows.ravel(), cols.ravel(), np.ones(rows.size)])

    def phase_error(canvas: np.ndarray) -> np.ndarray:
        """|phase error| after the best global phase and tilt (which synchronisation leaves)."""
        d = np.angle(canvas[inner] * np.conj(truth[inner]) * np.conj(np.mean(canvas[inner] * np.conj(truth[inner]))))
        plane, *_ = np.linalg.lstsq(design, d.ravel(), rcond=None)
        return np.abs(d.ravel() - design @ plane)

    assert np.median(phase_error(synced)) < 0.02 and phase_error(synced).max() < 0.1
    assert np.median(phase_error(plain)) > 0.1


def test_relative_phases_are_the_pairwise_offset_differences():
    truth, positions, _ = _scan(4.0, 4)
    positions = np.rint(positions)
    patches = physics.extract_patches(truth, positions, N)
    weights = patch_weights(N, crop=N // 2)
    offsets = np.linspace(-1, 1, len(positions))
    i, j, h = relative_patch_phases(patches * np.exp(1j * offsets)[:, None, None], positions, weights)
    assert len(i) > 0
    np.testing.assert_allclose(np.angle(h * np.exp(-1j * (offsets[i] - offsets[j]))), 0, atol=1e-6)


def test_overlap_products_equal_the_sums_over_the_shared_pixels_for_any_weight_support():
    """The products are computed on the weights' support only; an off-centre, non-square support
    must give the sum over every pixel two patches share, as laid out on the object."""
    rng = np.random.default_rng(3)
    positions = np.rint(64 + rng.uniform(-6, 6, (12, 2)))
    patches = rng.normal(size=(12, N, N)) + 1j * rng.normal(size=(12, N, N))
    weights = np.zeros((N, N))
    weights[5:27, 9:21] = rng.uniform(0.5, 1.0, (22, 12))
    i, j, h = relative_patch_phases(patches, positions, weights)
    assert len(i) > 0

    def on_canvas(k: int) -> np.ndarray:
        canvas = np.zeros((160, 160), complex)
        row, col = int(positions[k, 1]) - N // 2, int(positions[k, 0]) - N // 2
        canvas[row : row + N, col : col + N] = patches[k] * weights
        return canvas

    expected = [np.sum(on_canvas(a) * np.conj(on_canvas(b))) for a, b in zip(i, j)]
    np.testing.assert_allclose(h, expected, rtol=1e-12, atol=1e-9)


def test_patches_that_do_not_overlap_are_left_alone():
    patches = np.exp(1j * np.arange(3))[:, None, None] * np.ones((3, N, N), np.complex64)
    far_apart = np.array([[0.0, 0.0], [100.0, 0.0], [200.0, 0.0]])
    np.testing.assert_array_equal(synchronise_patch_phases(patches, far_apart, patch_weights(N, crop=N // 2)), patches)


def test_a_common_tilt_inside_every_patch_does_not_become_a_ramp_across_the_scan():
    """Each patch tilted alike (a network's typical bias): chained over the overlaps, the pairwise
    phases would add up to a ramp over the whole scan; the planar part of the offsets stays put."""
    truth, positions, patches = _scan(4.0, 12)
    cols = np.arange(N) - N / 2
    tilted = patches * np.exp(1j * 0.02 * cols)[None, None, :]
    weights = patch_weights(N, make_probe(N, sigma=5, aperture=10), crop=N // 2)
    synced = synchronise_patch_phases(tilted, positions, weights)
    theta = np.angle(np.sum(weights * synced * np.conj(tilted), axis=(1, 2)))
    assert np.ptp(theta) < 0.05
