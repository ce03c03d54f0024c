"""The TensorFlow physics operators and reassembly against the numpy oracle (float32 tolerance)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics, stitching

tf = pytest.importorskip("ptycho.tf_backend.runtime", reason="TensorFlow is not installed").tf
from ptycho.tf_backend import physics as th  # noqa: E402
from ptycho.tf_backend import reassembly  # noqa: E402


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(7)
    rows, cols, n = 96, 88, 32
    obj = ((0.5 + rng.random((rows, cols))) * np.exp(1j * rng.uniform(-1, 1, (rows, cols)))).astype(np.complex64)
    # Sub-pixel positions, some partly outside the object (zero padding must match).
    positions = rng.uniform(-6, 100, (40, 2))
    probe = ((rng.random((n, n)) + 0.1) * np.exp(1j * rng.uniform(-1, 1, (n, n)))).astype(np.complex64)
    return obj, positions, probe, n


def test_extract_patches_matches_oracle(scene):
    obj, positions, _probe, n = scene
    ref = physics.extract_patches(obj, positions, n)
    got = th.extract_patches(obj, positions, n).numpy()
    assert got.shape == ref.shape == (40, n, n)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_extract_patches_batched_objects_are_independent(scene):
    obj, positions, _probe, n = scene
    objs = np.stack([obj, 2 * obj])
    pos = np.stack([positions, positions[::-1]])
    got = th.extract_patches(objs, pos, n).numpy()
    np.testing.assert_allclose(got[0], physics.extract_patches(obj, positions, n), atol=1e-5)
    np.testing.assert_allclose(got[1], 2 * physics.extract_patches(obj, positions[::-1], n), atol=2e-5)


def test_forward_chain_matches_oracle_operator_by_operator(scene):
    obj, positions, probe, n = scene
    patches = physics.extract_patches(obj, positions, n)
    psi = th.illuminate(probe, tf.constant(patches))
    np.testing.assert_allclose(psi.numpy(), physics.illuminate(probe, patches), atol=1e-6)
    far = th.propagate(psi)
    np.testing.assert_allclose(far.numpy(), physics.propagate(physics.illuminate(probe, patches)), atol=1e-5)
    ref = physics.forward_intensity(obj, probe, positions)
    got = th.forward_intensity(obj, probe, positions).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * ref.max())


def test_poisson_nll_matches_oracle():
    rng = np.random.default_rng(1)
    lam = rng.random((3, 16, 16)) * 4
    counts = rng.poisson(lam).astype(np.float64)
    got = float(th.poisson_nll(tf.constant(lam, tf.float32), counts))
    assert got == pytest.approx(physics.poisson_nll(lam, counts), abs=1e-5)


def test_pad_center_places_patch_in_the_middle():
    patch = tf.ones((2, 16, 16), tf.complex64)
    out = th.pad_center(patch, 32).numpy()
    assert out.shape == (2, 32, 32)
    assert np.all(out[:, 8:24, 8:24] == 1) and np.abs(out).sum() == 2 * 16 * 16
    with pytest.raises(ValueError, match="cannot centre"):
        th.pad_center(patch, 33)


@pytest.mark.parametrize("use_probe_weights", [False, True])
def test_reassemble_position_matches_numpy_stitching(scene, use_probe_weights):
    obj, positions, probe, n = scene
    patches = physics.extract_patches(obj, positions, n) * np.exp(1j * 0.3)
    weights = stitching.patch_weights(n, probe if use_probe_weights else None, crop=24)
    shape = (96, 88)
    ref = stitching.reassemble_patches(patches, positions, shape, weights)
    got = reassembly.reassemble_position(patches, positions, shape, weights).numpy()
    assert got.dtype == np.complex64 and got.shape == shape
    np.testing.assert_allclose(got, ref, atol=1e-5)
    # Uncovered pixels stay exactly zero, as in the reference.
    assert np.array_equal(got == 0, ref == 0)


def test_reassemble_position_with_an_off_centre_weight_window(scene):
    """Zero-weight borders are cropped away before stitching; an off-centre, odd-sized window must
    land exactly where the full patch would have put it."""
    obj, positions, probe, n = scene
    patches = physics.extract_patches(obj, positions, n)
    weights = stitching.patch_weights(n, probe)
    weights[:3, :] = 0
    weights[:, :5] = 0
    weights[22:, :] = 0
    ref = stitching.reassemble_patches(patches, positions, (96, 88), weights)
    got = reassembly.reassemble_position(patches, positions, (96, 88), weights).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_splat_is_adjoint_of_extract(scene):
    """<extract(O), Y> == <O, splat(Y)>: the two operators share one sampling convention."""
    obj, positions, _probe, n = scene
    rng = np.random.default_rng(3)
    y = rng.standard_normal((40, n, n)) + 1j * rng.standard_normal((40, n, n))
    obj = obj.astype(np.complex128)
    lhs = np.vdot(th.extract_patches(obj, positions, n).numpy(), y)
    rhs = np.vdot(obj, reassembly.splat_patches(tf.constant(y), positions, obj.shape).numpy())
    assert lhs == pytest.approx(rhs, rel=1e-10)
    np.testing.assert_allclose(
        reassembly.splat_patches(tf.constant(y), positions, obj.shape).numpy(),
        physics.adjoint_extract(y, positions, obj.shape),
        atol=1e-9,
    )
    # The gradient-free accumulation used for stitching gives the same sums.
    np.testing.assert_allclose(
        reassembly.splat_patches(tf.constant(y), positions, obj.shape, differentiable=False).numpy(),
        physics.adjoint_extract(y, positions, obj.shape),
        atol=1e-9,
    )


def test_reassemble_patches_is_differentiable():
    patches = tf.Variable(tf.ones((1, 3, 8, 8), tf.complex64))
    offsets = tf.constant([[[-1.5, 0.0], [0.0, 0.0], [1.25, 0.5]]], tf.float32) + 8.0
    with tf.GradientTape() as tape:
        canvas = reassembly.reassemble_patches(patches, offsets, (16, 16))
        loss = tf.reduce_sum(tf.abs(canvas) ** 2)
    grad = tape.gradient(loss, patches)
    assert grad is not None and np.all(np.isfinite(grad.numpy())) and np.abs(grad.numpy()).sum() > 0


def test_reassemble_position_rejects_mismatched_shapes(scene):
    obj, positions, _probe, n = scene
    with pytest.raises(ValueError, match="positions"):
        reassembly.reassemble_position(np.zeros((3, n, n), np.complex64), positions, (96, 88))
