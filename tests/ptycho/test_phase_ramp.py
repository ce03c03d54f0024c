"""The global phase ramp a stitched object lacks, found from the measured patterns' centroids."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics
from ptycho.simulate import make_object, make_probe
from ptycho.stitching import correct_phase_ramp, diffraction_centroids, phase_ramp_from_diffraction

N = 32


def _scan(nphotons: float | None = None):
    """A 128 x 128 object scanned on a 10 x 10 grid; measured amplitudes, Poisson-noisy if asked."""
    truth = make_object("mixed", 128, np.random.default_rng(1)).astype(np.complex128)
    probe = make_probe(N)
    grid = 64 + 6.0 * (np.arange(10) - 4.5)
    positions = np.array([[x, y] for y in grid for x in grid])
    positions = positions + np.random.default_rng(2).uniform(-0.4, 0.4, positions.shape)
    intensities = physics.forward_intensity(truth, probe, positions)
    if nphotons is not None:
        counts, _ = physics.poisson_counts(intensities, nphotons, np.random.default_rng(3))
        intensities = counts
    return truth, probe, positions, np.sqrt(intensities)


def _ramp(shape, gradient, positions):
    rows, cols = np.indices(shape, dtype=np.float64)
    centre = positions.mean(axis=0)
    return np.exp(1j * (gradient[0] * (cols - centre[0]) + gradient[1] * (rows - centre[1])))


def test_centroid_of_a_tilted_wave_is_its_spatial_frequency():
    rows, cols = np.indices((N, N))
    envelope = np.exp(-((rows - N / 2) ** 2 + (cols - N / 2) ** 2) / (2 * 5.0**2))
    kx, ky = 1.5, -2.25  # cycles across the window: pixels in the far field
    wave = envelope * np.exp(2j * np.pi * (kx * cols + ky * rows) / N)
    centroid = diffraction_centroids(physics.intensity(physics.propagate(wave[None])))
    np.testing.assert_allclose(centroid[0], [kx, ky], atol=1e-3)


def test_a_known_ramp_is_found_and_removed():
    truth, probe, positions, diffraction = _scan(nphotons=1e6)
    gradient = np.array([0.012, -0.02])  # rad/px: 1.5 and 2.5 rad across the 128 px object
    tilted = truth * _ramp(truth.shape, gradient, positions)
    # One step already lands within a few percent: the centroid is linear in the ramp.
    np.testing.assert_allclose(phase_ramp_from_diffraction(tilted, probe, positions, diffraction), -gradient, atol=5e-4)
    corrected, found = correct_phase_ramp(tilted, probe, positions, diffraction)
    np.testing.assert_allclose(found, -gradient, atol=1e-4)
    # The corrected object's phase equals the truth's up to one constant over the scanned region.
    lo, hi = int(positions.min()), int(positions.max())
    residual = np.angle(corrected * np.conj(truth))[lo:hi, lo:hi]
    residual = np.angle(np.exp(1j * (residual - np.angle(np.mean(np.exp(1j * residual))))))
    assert np.max(np.abs(residual)) < 0.02
    assert corrected.dtype == tilted.dtype


@pytest.mark.parametrize("nphotons", [1e3, 1e6])
def test_an_object_without_ramp_is_left_alone_under_photon_noise(nphotons):
    truth, probe, positions, diffraction = _scan(nphotons)
    corrected, found = correct_phase_ramp(truth, probe, positions, diffraction)
    # What remains is the noise of a mean of per-pattern centroids: within a few standard errors.
    scatter = diffraction_centroids(physics.forward_intensity(truth, probe, positions)) - diffraction_centroids(diffraction**2)
    standard_error = 2 * np.pi / N * scatter.std(axis=0) / np.sqrt(len(positions))
    assert np.all(np.abs(found) < 4 * standard_error), (found, standard_error)
    assert np.all(np.abs(found) < (3e-3 if nphotons < 1e4 else 2e-4))
    drift = np.abs(np.angle(corrected * np.conj(truth)))[40:88, 40:88]
    assert np.max(drift) <= np.hypot(*found) * 24 * np.sqrt(2) + 1e-6


def test_the_ramp_ignores_amplitude_scale_and_empty_pixels():
    truth, probe, positions, diffraction = _scan()
    gradient = np.array([-0.01, 0.005])
    tilted = 0.3 * truth * _ramp(truth.shape, gradient, positions)
    tilted[:, :5] = 0  # left empty by the stitching, outside every probe's reach
    corrected, found = correct_phase_ramp(tilted, probe, positions, 7.0 * diffraction)
    np.testing.assert_allclose(found, -gradient, atol=1e-4)
    assert np.all(corrected[:, :5] == 0)


def test_bad_shapes_are_named():
    truth, probe, positions, diffraction = _scan()
    with pytest.raises(ValueError, match="diffraction: expected shape"):
        phase_ramp_from_diffraction(truth, probe, positions, diffraction[:, :16, :16])
    with pytest.raises(ValueError, match="positions: expected 100"):
        phase_ramp_from_diffraction(truth, probe, positions[:50], diffraction)
    with pytest.raises(ValueError, match="intensities: 1 pattern"):
        diffraction_centroids(np.concatenate([diffraction[:2] ** 2, np.zeros((1, N, N))]))


def test_transposed_patches_take_transposed_patterns_and_probe():
    """``transpose``: the network's patches (and so its patterns) are the stitched frame's transposed."""
    truth, probe, positions, _ = _scan()
    rows, cols = np.indices(probe.shape)
    probe = probe * np.exp(1j * 0.3 * np.sin(2 * np.pi * cols / N)) * (1 + 0.2 * rows / N)  # no symmetry to hide a mix-up
    network_patches = np.swapaxes(physics.extract_patches(truth, positions, N), -1, -2)
    diffraction = np.abs(physics.propagate(physics.illuminate(probe, network_patches)))
    gradient = np.array([0.015, 0.004])
    tilted = truth * _ramp(truth.shape, gradient, positions)
    _, found = correct_phase_ramp(tilted, probe, positions, diffraction, transpose=True)
    np.testing.assert_allclose(found, -gradient, atol=1e-4)
    _, wrong = correct_phase_ramp(tilted, probe, positions, diffraction)
    assert np.max(np.abs(wrong + gradient)) > 1e-3  # without it the patterns disagree with the object


class _RampedPatches:
    """A numpy 'network' (PatchModel) whose patches are the true object's under a phase ramp that
    runs across the whole scan: each patch agrees with its neighbours, so only the patterns show it."""

    def __init__(self, raw, cfg, gradient):
        self.raw, self.cfg = raw, cfg
        self.ramped = raw.objectGuess * _ramp(raw.objectGuess.shape, gradient, np.zeros((1, 2)))
        self.positions = None

    def predict(self, x, offsets):
        patches = physics.extract_patches(self.ramped, self.positions.reshape(-1, 2), self.cfg.N).reshape(x.shape)
        return np.abs(patches).astype(np.float32), np.angle(patches).astype(np.float32), None

    def reassemble(self, patches, positions, canvas_shape, weights):
        from ptycho.stitching import reassemble_patches

        return reassemble_patches(patches, positions, canvas_shape, weights).astype(np.complex64)


@pytest.mark.parametrize("correct_ramp", [True, False])
def test_the_shared_reconstruction_removes_the_ramp_and_records_it(correct_ramp):
    from ptycho.config.config import ModelConfig
    from ptycho.raw_data import generate_grouped_data
    from ptycho.simulate import make_scan, simulate
    from ptycho.workflows.reconstruction import reconstruct_scan

    rng = np.random.default_rng(3)
    x, y, _, _ = make_scan(8, 8, 4.0, 20.0, 0.3, rng)
    raw = simulate(make_object("grf", 80, rng), make_probe(N, sigma=4.0, aperture=8.0), x, y, 1e6, rng)
    cfg = ModelConfig(N=N, gridsize=1)
    gradient = np.array([0.02, -0.015])
    model = _RampedPatches(raw, cfg, gradient)
    grouped = generate_grouped_data(raw, neighbor_count=4, seed=0, N=N, gridsize=1)
    model.positions = grouped.centers[:, None, :] + grouped.offsets
    recon, _ = reconstruct_scan(model, raw, neighbor_count=4, seed=0, with_deviance=False, correct_ramp=correct_ramp)
    assert recon.obj.dtype == np.complex64
    from ptycho.evaluation import illuminated_region

    inside = illuminated_region(raw.probeGuess, raw.positions, raw.objectGuess.shape)
    residual = np.angle(recon.obj * np.conj(raw.objectGuess))[inside]
    residual = np.angle(np.exp(1j * (residual - np.angle(np.mean(np.exp(1j * residual))))))
    if correct_ramp:
        np.testing.assert_allclose(recon.metadata["phase_ramp_removed_rad_per_px"], -gradient, atol=1e-3)
        assert np.std(residual) < 0.02
    else:
        assert "phase_ramp_removed_rad_per_px" not in recon.metadata
        assert np.std(residual) > 0.1  # the ramp (about 0.6 rad end to end) stays
