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


def _offsets_left(patches: np.ndarray, truth_patches: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each patch's remaining phase offset against the truth, relative to the first patch's."""
    theta = np.angle(np.sum(weights * patches * np.conj(truth_patches), axis=(1, 2)))
    return np.angle(np.exp(1j * (theta - theta[0])))


@pytest.mark.parametrize("count_side", [4, 12])  # 16 patches: dense solver; 144: sparse (ARPACK)
def test_random_and_drifting_offsets_are_removed(count_side):
    truth, positions, patches = _scan(4.0, count_side)
    rng = np.random.default_rng(3)
    offsets = rng.normal(0, 0.5, len(positions)) + 0.05 * (positions[:, 0] - 64)  # noise + a drift across the scan
    weights = patch_weights(N, make_probe(N, sigma=5, aperture=10), crop=N // 2)
    shifted = patches * np.exp(1j * offsets)[:, None, None]
    assert np.abs(_offsets_left(shifted, patches, weights)).max() > 1.0
    synced = synchronise_patch_phases(shifted, positions, weights)
    assert synced.dtype == shifted.dtype and synced.shape == shifted.shape
    # what is left comes from rounding sub-pixel relative positions to whole pixels (jitter 0.4 px)
    np.testing.assert_allclose(_offsets_left(synced, patches, weights), 0, atol=0.03)
    np.testing.assert_allclose(np.abs(synced), np.abs(shifted), rtol=1e-5)  # only phases change


def test_synchronised_stitching_recovers_the_object_phase():
    truth, positions, patches = _scan(3.0, 12)
    weights = patch_weights(N, make_probe(N, sigma=5, aperture=10), crop=N // 2)
    shifted = patches * np.exp(1j * np.random.default_rng(4).normal(0, 0.8, len(positions)))[:, None, None]
    plain = reassemble_patches(shifted, positions, truth.shape, weights)
    synced = reassemble_patches(synchronise_patch_phases(shifted, positions, weights), positions, truth.shape, weights)
    inner = (slice(52, 76), slice(52, 76))
    global_phase = np.exp(1j * np.angle(np.mean(synced[inner] * np.conj(truth[inner]))))
    error = np.abs(np.angle(synced[inner] * np.conj(truth[inner] * global_phase)))
    plain_error = np.abs(np.angle(plain[inner] * np.conj(truth[inner] * global_phase)))
    assert np.median(error) < 0.02 and error.max() < 0.1
    assert np.median(plain_error) > 0.1


def test_relative_phases_are_the_pairwise_offset_differences():
    truth, positions, _ = _scan(4.0, 4)
    positions = np.rint(positions)
    patches = physics.extract_patches(truth, positions, N)
    weights = patch_weights(N, crop=N // 2)
    offsets = np.linspace(-1, 1, len(positions))
    i, j, h = relative_patch_phases(patches * np.exp(1j * offsets)[:, None, None], positions, weights)
    assert len(i) > 0
    np.testing.assert_allclose(np.angle(h * np.exp(-1j * (offsets[i] - offsets[j]))), 0, atol=1e-6)


def test_patches_that_do_not_overlap_are_left_alone():
    patches = np.exp(1j * np.arange(3))[:, None, None] * np.ones((3, N, N), np.complex64)
    far_apart = np.array([[0.0, 0.0], [100.0, 0.0], [200.0, 0.0]])
    np.testing.assert_array_equal(synchronise_patch_phases(patches, far_apart, patch_weights(N, crop=N // 2)), patches)
