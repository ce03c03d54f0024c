"""Numeric cross-backend parity: with weights copied from torch into Keras (and back),
the two forwards agree to 1e-4 on a batch of the canonical fixture, step by step: diffraction ->
object patches -> complex patches (through the overlap constraint) -> predicted amplitudes -> loss,
and so do the loss gradients."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
tf = pytest.importorskip("ptycho.tf_backend.runtime", reason="TensorFlow is not installed").tf

from ptycho import params  # noqa: E402
from ptycho.config.config import ModelConfig, update_legacy_dict  # noqa: E402
from ptycho.tf_backend.network import build_model, training_loss  # noqa: E402
from ptycho.tf_backend.parity import keras_to_torch, torch_to_keras  # noqa: E402
from ptycho.raw_data import RawData, generate_grouped_data  # noqa: E402
from ptycho_torch.model import training_loss as torch_training_loss  # noqa: E402
from ptycho_torch.network import PtychoPINN as TorchPtychoPINN  # noqa: E402

# Keras' Variable.numpy() trips numpy 2's __array__ copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

TOL = 1e-4
BATCH = 8


@pytest.fixture(scope="module")
def raw(canonical_dataset):
    return RawData.from_file(canonical_dataset)


def _batch(raw: RawData, gridsize: int):
    cfg = ModelConfig(N=64, gridsize=gridsize)
    update_legacy_dict(params.cfg, cfg)
    grouped = generate_grouped_data(raw, n_groups=BATCH, seed=3)
    return cfg, grouped.X[:BATCH].astype(np.float32), grouped.offsets[:BATCH].astype(np.float32)


def _torch_model(cfg: ModelConfig, probe: np.ndarray) -> TorchPtychoPINN:
    torch.manual_seed(0)
    net = TorchPtychoPINN(cfg, torch.from_numpy(probe))
    with torch.no_grad():
        # Heads start near-constant by design; make them input-dependent so parity means something.
        for head in (net.decoder_last.amp_head, net.decoder_last.phase_head):
            head.weight.normal_(0.0, 0.2)
            head.bias.normal_(0.0, 0.2)
        net.physics.log_intensity_scale.add_(0.1)
    return net


def _close(a, b, what: str) -> None:
    a = np.asarray(a)
    b = np.asarray(b)
    scale = max(1.0, float(np.abs(b).max()))
    err = float(np.abs(a - b).max())
    assert err <= TOL * scale, f"{what}: max |torch - keras| = {err:.3g} > {TOL} x {scale:.3g}"


@pytest.mark.parametrize("gridsize", [1, 2])
def test_torch_weights_in_keras_give_the_same_forward_and_loss(raw, gridsize):
    cfg, x, offsets = _batch(raw, gridsize)
    net = _torch_model(cfg, raw.probeGuess)
    keras_model = build_model(cfg)
    torch_to_keras(net, keras_model)

    xt, ot = torch.from_numpy(x), torch.from_numpy(offsets)
    t_out = net(xt, ot)
    k_out = keras_model(tf.constant(x), tf.constant(offsets))
    _close(t_out.object_amplitude.detach(), k_out.object_amplitude, "object amplitude")
    _close(t_out.object_phase.detach(), k_out.object_phase, "object phase")
    t_patches = net.physics.object_patches(t_out.object_amplitude, t_out.object_phase)
    k_patches = keras_model.physics.object_patches(k_out.object_amplitude, k_out.object_phase)
    if gridsize > 1:
        t_patches = net.physics.overlap_constraint(t_patches, ot)
        k_patches = keras_model.physics.overlap_constraint(k_patches, tf.constant(offsets))
    _close(t_patches.detach(), k_patches, "complex object patches")
    _close(t_out.amplitude.detach(), k_out.amplitude, "predicted diffraction amplitude")
    assert float(np.abs(t_out.amplitude.detach().numpy()).std()) > 0.1  # not a trivial constant

    t_loss = torch_training_loss(t_out.amplitude, xt, 1.0, 0.5)
    k_loss = training_loss(k_out.amplitude, x, 1.0, 0.5)
    _close(t_loss.detach(), k_loss, "loss")

    # Gradients of the loss agree too (same training signal), for every copied weight.
    t_loss.backward()
    with tf.GradientTape() as tape:
        k_loss = training_loss(keras_model(tf.constant(x), tf.constant(offsets)).amplitude, x, 1.0, 0.5)
    grads = dict(zip([v.path for v in keras_model.trainable_variables], tape.gradient(k_loss, keras_model.trainable_variables)))
    for path, layer in keras_model.conv_layers().items():
        t_grad = net.get_parameter(f"{path}.weight").grad.numpy().transpose(2, 3, 1, 0)
        _close(t_grad, grads[layer.kernel.path], f"d loss / d {path}.weight")
    t_sigma_grad = float(net.physics.log_intensity_scale.grad)
    k_sigma_grad = float(grads[keras_model.physics.log_intensity_scale.path])
    assert k_sigma_grad == pytest.approx(t_sigma_grad, rel=TOL, abs=TOL)


def test_keras_weights_in_torch_give_the_same_forward(raw):
    cfg, x, offsets = _batch(raw, 2)
    keras_model = build_model(cfg, raw.probeGuess)
    for layer in (keras_model.amp_head, keras_model.phase_head):
        layer.kernel.assign(np.random.default_rng(1).normal(0, 0.2, layer.kernel.shape).astype(np.float32))
    net = TorchPtychoPINN(cfg, torch.ones((64, 64), dtype=torch.complex64))
    keras_to_torch(keras_model, net)
    np.testing.assert_array_equal(net.physics.probe.numpy(), raw.probeGuess)
    t_out = net(torch.from_numpy(x), torch.from_numpy(offsets))
    k_out = keras_model(tf.constant(x), tf.constant(offsets))
    _close(t_out.amplitude.detach(), k_out.amplitude, "predicted diffraction amplitude")
    _close(t_out.object_phase.detach(), k_out.object_phase, "object phase")


def test_weight_copy_refuses_a_different_architecture(raw):
    net = TorchPtychoPINN(ModelConfig(N=64, gridsize=1, n_filters_scale=2), torch.from_numpy(raw.probeGuess))
    keras_model = build_model(ModelConfig(N=64, gridsize=1))
    with pytest.raises(ValueError, match="model configs differ"):
        torch_to_keras(net, keras_model)


def test_tensorflow_adam_takes_torch_adam_steps():
    """The TF optimiser applies torch.optim.Adam's exact rule (bias-corrected moments, eps outside
    the square root) to the same gradient sequence."""
    from ptycho.tf_backend.adam import TorchAdam

    rng = np.random.default_rng(4)
    start = rng.normal(size=(5, 7)).astype(np.float32)
    grads = [rng.normal(scale=s, size=(5, 7)).astype(np.float32) for s in (1.0, 1e-3, 1e-6, 10.0, 0.1)]
    t_var = torch.nn.Parameter(torch.from_numpy(start.copy()))
    t_opt = torch.optim.Adam([t_var], lr=1e-2)
    k_var = tf.Variable(start.copy())
    k_opt = TorchAdam([k_var], learning_rate=1e-2)
    for g in grads:
        t_var.grad = torch.from_numpy(g)
        t_opt.step()
        k_opt.apply_gradients([tf.constant(g)])
        np.testing.assert_allclose(k_var.numpy(), t_var.detach().numpy(), rtol=1e-6, atol=1e-6)


def test_training_steps_follow_the_same_trajectory(raw):
    """Three optimiser steps from copied weights on the same batches: the losses agree."""
    from ptycho.config.config import TrainingConfig
    from ptycho.tf_backend.adam import TorchAdam
    from ptycho.tf_backend.workflows.components import _compiled_steps

    cfg, x, offsets = _batch(raw, 2)
    net = _torch_model(cfg, raw.probeGuess)
    keras_model = build_model(cfg)
    torch_to_keras(net, keras_model)
    t_opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    k_opt = TorchAdam(keras_model.trainable_variables, learning_rate=1e-3)
    train_step, _ = _compiled_steps(keras_model, k_opt, TrainingConfig(model=cfg))
    xt, ot = torch.from_numpy(x), torch.from_numpy(offsets.astype(np.float64))
    t_losses, k_losses = [], []
    for _ in range(3):
        t_opt.zero_grad()
        loss = torch_training_loss(net(xt, ot).amplitude, xt, 1.0, 0.0)
        loss.backward()
        t_opt.step()
        t_losses.append(float(loss.detach()))
        k_losses.append(float(train_step(tf.constant(x), tf.constant(offsets, tf.float64))))
    np.testing.assert_allclose(k_losses, t_losses, rtol=1e-4)
    assert t_losses[-1] < t_losses[0]
