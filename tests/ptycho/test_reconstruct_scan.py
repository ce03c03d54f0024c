"""The reconstruction both backends share (ptycho.workflows.reconstruction.reconstruct_scan), driven
by a numpy PatchModel: the backends supply only the forward pass and the reassembly, so the sequence
(group, predict, synchronise, stitch, record) is tested here once, without TensorFlow or torch."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics, stitching
from ptycho.cli_arguments import UsageError
from ptycho.config.config import ModelConfig
from ptycho.simulate import make_object, make_probe, make_scan, simulate
from ptycho.workflows.reconstruction import reconstruct_scan

N = 32


class ExactPatches:
    """A 'network' that returns the true object patches of each group, each with a phase offset of
    its own (what a network trained on single patterns does), and the exact far field."""

    def __init__(self, raw, cfg, offset_spread=0.5):
        self.raw, self.cfg = raw, cfg
        self.spread = offset_spread
        self.calls: list[tuple[int, bool]] = []
        self.reassembled: list[tuple] = []
        self._positions = None

    def predict(self, x, offsets):
        self.calls.append((len(x), offsets is not None))
        positions = self._positions
        patches = physics.extract_patches(self.raw.objectGuess, positions.reshape(-1, 2), N).reshape(x.shape)
        offsets_rad = np.random.default_rng(7).uniform(-self.spread, self.spread, x.shape[:2])
        patches = patches * np.exp(1j * offsets_rad)[..., None, None]
        self.predicted = patches
        diffraction = None if offsets is None else np.asarray(x, dtype=np.float32)
        return np.abs(patches).astype(np.float32), np.angle(patches).astype(np.float32), diffraction

    def reassemble(self, patches, positions, canvas_shape, weights):
        self.reassembled.append((patches.shape, canvas_shape, weights.shape))
        return stitching.reassemble_patches(patches, positions, canvas_shape, weights).astype(np.complex64)


@pytest.fixture(scope="module")
def scan():
    rng = np.random.default_rng(3)
    x, y, _, _ = make_scan(8, 8, 4.0, 20.0, 0.3, rng)
    return simulate(make_object("grf", 80, rng), make_probe(N, sigma=4.0, aperture=8.0), x, y, 1e6, rng)


def _run(scan, cfg, **request):
    model = ExactPatches(scan, cfg)
    from ptycho.raw_data import generate_grouped_data

    grouped = generate_grouped_data(scan, neighbor_count=6, seed=0, N=cfg.N, gridsize=cfg.gridsize)
    model._positions = grouped.centers[:, None, :] + grouped.offsets
    timings: dict[str, float] = {}
    recon, grouped_seen = reconstruct_scan(model, scan, neighbor_count=6, seed=0, timings=timings, **request)
    return model, recon, grouped_seen, timings


@pytest.mark.parametrize("gridsize", [1, 2])
def test_exact_patches_with_offsets_of_their_own_stitch_back_into_the_object(scan, gridsize):
    cfg = ModelConfig(N=N, gridsize=gridsize)
    model, recon, grouped, timings = _run(scan, cfg)
    assert sorted(timings) == ["grouping", "inference", "stitching"]
    assert model.calls == [(len(grouped.X), True)]
    # The backend reassembles only the predicted central N/2 window, with its weights.
    (shape, canvas, weights), = model.reassembled
    assert shape[1:] == (N // 2, N // 2) and weights == (N // 2, N // 2) and canvas == scan.objectGuess.shape
    assert recon.obj.shape == scan.objectGuess.shape and recon.obj.dtype == np.complex64
    assert recon.positions.shape == (len(grouped.X) * gridsize**2, 2)
    meta = recon.metadata
    assert (meta["gridsize"], meta["N"], meta["n_groups"]) == (gridsize, N, len(grouped.X))
    assert np.isfinite(meta["poisson_deviance"])
    # Synchronisation took out the per-patch offsets (std 0.29 rad): inside the well-lit region the
    # stitched object is the truth up to one global phase, far closer than the offsets averaged raw.
    inside = stitching.summed_illumination(scan.probeGuess, recon.positions, scan.objectGuess.shape)
    inside = inside >= 0.5 * inside.max()

    def phase_error(obj):
        ratio = obj[inside] / scan.objectGuess[inside]
        return float(np.std(np.angle(ratio * np.exp(-1j * np.angle(np.mean(ratio))))))

    raw = stitching.reassemble_patches(
        model.predicted.reshape(-1, N, N), recon.positions, scan.objectGuess.shape,
        stitching.patch_weights(N, scan.probeGuess, crop=N // 2),
    )
    assert phase_error(recon.obj) < 0.06 and phase_error(recon.obj) < phase_error(raw) / 2


def test_without_deviance_the_model_is_asked_for_patches_only(scan):
    model, recon, _grouped, _ = _run(scan, ModelConfig(N=N, gridsize=1), with_deviance=False, flip_x=True, transpose=True)
    assert model.calls[0][1] is False and "poisson_deviance" not in recon.metadata
    assert recon.metadata["flip_x"] and recon.metadata["transpose"]


def test_a_scan_or_canvas_the_model_cannot_use_is_a_usage_error_naming_it(scan):
    model = ExactPatches(scan, ModelConfig(N=64, gridsize=1))
    with pytest.raises(UsageError, match="64"):
        reconstruct_scan(model, scan, neighbor_count=6)
    with pytest.raises(UsageError, match="M: canvas side 8 is smaller than the patch size 32"):
        _run(scan, ModelConfig(N=N, gridsize=1), M=8)
