"""The torch forward model against the numpy oracle (ptycho/physics.py, ptycho/stitching.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptycho import physics as oracle
from ptycho import stitching
from ptycho.simulate import make_probe
from ptycho_torch import physics as tphys
from ptycho_torch.reassembly import reassemble_patches, splat_patches


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(a)))


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(7)
    obj = ((0.5 + 0.5 * rng.random((96, 96))) * np.exp(1j * rng.uniform(-1, 1, (96, 96)))).astype(np.complex64)
    probe = make_probe(32, sigma=5.0, aperture=12.0)
    # sub-pixel, integer, half-integer and partly-outside positions
    pos = np.concatenate([rng.uniform(10, 86, (12, 2)), [[48.0, 48.0], [20.5, 70.5], [-3.2, 40.0], [95.7, 99.1]]])
    return obj, probe, pos


def test_bilinear_taps_match_oracle(scene):
    _, _, pos = scene
    for ours, ref in zip(tphys.bilinear_taps(torch.from_numpy(pos), 32), oracle.bilinear_taps(pos, 32)):
        np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)


def test_extract_patches_matches_oracle(scene):
    obj, _, pos = scene
    ours = tphys.extract_patches(torch.from_numpy(obj), torch.from_numpy(pos), 32).numpy()
    ref = oracle.extract_patches(obj, pos, 32)
    assert ours.shape == ref.shape == (len(pos), 32, 32)
    assert _rel(ref, ours) < 1e-5


def test_extract_patches_batched_equals_per_object(scene):
    obj, _, pos = scene
    objs = torch.from_numpy(np.stack([obj, obj.conj() * 0.5]))
    p = torch.from_numpy(np.stack([pos, pos[::-1].copy()]))
    batched = tphys.extract_patches(objs, p, 32)
    for g in range(2):
        np.testing.assert_allclose(batched[g].numpy(), tphys.extract_patches(objs[g], p[g], 32).numpy(), atol=1e-6)


def test_forward_intensity_matches_oracle_to_1e5_relative(scene):
    obj, probe, pos = scene
    ours = tphys.forward_intensity(torch.from_numpy(obj), torch.from_numpy(probe), torch.from_numpy(pos)).numpy()
    ref = oracle.forward_intensity(obj, probe, pos)
    assert _rel(ref, ours) < 1e-5
    amp = tphys.forward_amplitude(torch.from_numpy(obj), torch.from_numpy(probe), torch.from_numpy(pos)).numpy()
    assert _rel(oracle.forward_amplitude(obj, probe, pos), amp) < 1e-5


def test_step_operators_match_oracle(scene):
    obj, probe, pos = scene
    patches = oracle.extract_patches(obj, pos, 32)
    psi = tphys.illuminate(torch.from_numpy(probe), torch.from_numpy(patches))
    np.testing.assert_allclose(psi.numpy(), oracle.illuminate(probe, patches), rtol=1e-6, atol=1e-7)
    far = tphys.propagate(psi).numpy()
    assert _rel(oracle.propagate(oracle.illuminate(probe, patches)), far) < 1e-5
    np.testing.assert_allclose(tphys.intensity(torch.from_numpy(far)).numpy(), oracle.intensity(far), rtol=1e-6)


def test_poisson_losses_match_oracle():
    rng = np.random.default_rng(3)
    lam = rng.uniform(0.1, 50, (4, 8, 8))
    k = rng.poisson(lam).astype(np.float64)
    assert tphys.poisson_nll(torch.from_numpy(lam), torch.from_numpy(k)).item() == pytest.approx(oracle.poisson_nll(lam, k), rel=1e-10)
    assert tphys.poisson_deviance(torch.from_numpy(lam), torch.from_numpy(k)).item() == pytest.approx(oracle.poisson_deviance(lam, k), rel=1e-10)
    # a perfect model has zero deviance; a wrong one does not
    assert tphys.poisson_deviance(torch.from_numpy(k + 0.0), torch.from_numpy(k)).item() == pytest.approx(0.0, abs=1e-4)
    assert tphys.poisson_deviance(torch.from_numpy(2 * lam), torch.from_numpy(k)).item() > 1.0


def test_physics_is_differentiable(scene):
    obj, probe, pos = scene
    o = torch.from_numpy(obj).clone().requires_grad_(True)
    loss = tphys.forward_intensity(o, torch.from_numpy(probe), torch.from_numpy(pos)).sum()
    loss.backward()
    assert o.grad is not None and torch.isfinite(o.grad.real).all() and o.grad.abs().sum() > 0


def test_splat_is_the_adjoint_of_extract(scene):
    """<extract(O), v> == <O, splat(v)> for real tensors: the reassembly is the true adjoint."""
    obj, _, pos = scene
    rng = np.random.default_rng(1)
    o = torch.from_numpy(obj.real.astype(np.float64))
    v = torch.from_numpy(rng.standard_normal((len(pos), 32, 32)))
    p = torch.from_numpy(pos)
    lhs = torch.sum(tphys.extract_patches(o, p, 32) * v)
    rhs = torch.sum(o * splat_patches(v, p, (96, 96)))
    assert lhs.item() == pytest.approx(rhs.item(), rel=1e-10)


@pytest.mark.parametrize("crop", [None, 16])
def test_reassembly_matches_numpy_stitching(scene, crop):
    obj, probe, pos = scene
    patches = oracle.extract_patches(obj, pos, 32)
    w = stitching.patch_weights(32, probe, crop=crop)
    ref = stitching.reassemble_patches(patches, pos, (100, 104), w)
    ours = reassemble_patches(torch.from_numpy(patches), torch.from_numpy(pos), (100, 104), torch.from_numpy(w)).numpy()
    assert ours.shape == ref.shape == (100, 104)
    assert _rel(ref, ours) < 1e-5
    # pixels no patch reached stay exactly zero in both
    np.testing.assert_array_equal(ref == 0, ours == 0)
