"""The network and its physics layer: shapes, initialisation, gradients, and the overlap constraint
and forward model against the numpy oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ptycho import physics as oracle
from ptycho import stitching
from ptycho.config.config import ModelConfig
from ptycho.raw_data import RawData, normalization_scale
from ptycho.simulate import make_probe
from ptycho_torch.network import PtychoPINN, head_bias_for, predicted_size


def _network(seed: int = 0, **kw) -> PtychoPINN:
    torch.manual_seed(seed)
    cfg = ModelConfig(**kw)
    return PtychoPINN(cfg, torch.from_numpy(make_probe(cfg.N, sigma=cfg.N / 8, aperture=cfg.N / 4)))


@pytest.mark.parametrize("activation", ["sigmoid", "softplus", "relu", "swish"])
def test_head_bias_starts_every_activation_at_one_half(activation):
    b = torch.tensor(head_bias_for(activation))
    act = {"sigmoid": torch.sigmoid, "softplus": torch.nn.functional.softplus, "relu": torch.relu, "swish": torch.nn.functional.silu}
    assert act[activation](b).item() == pytest.approx(0.5, abs=1e-6)


def test_initial_object_is_near_amplitude_half_phase_zero(tiny_npz):
    raw = RawData.from_file(tiny_npz)
    net = _network(N=32)
    x = torch.from_numpy(raw.diffraction[:16, None] * normalization_scale(raw.diffraction))
    with torch.no_grad():
        amp, phase = net.predict_object(x)
    window = slice(8, 24)
    assert abs(float(amp[..., window, window].mean()) - 0.5) < 0.05
    assert float(phase[..., window, window].abs().max()) < 0.2
    # zero padding outside the predicted central window
    assert float(amp[..., :8, :].abs().max()) == 0.0 and float(phase[..., :, 24:].abs().max()) == 0.0
    # the starting prediction carries roughly the normalised energy (N/2)^2
    with torch.no_grad():
        energy = float(net(x).amplitude.pow(2).sum((-2, -1)).mean())
    assert 0.5 * 256 < energy < 2 * 256


def test_same_seed_same_weights_different_seed_different_weights():
    a, b, c = _network(1), _network(1), _network(2)
    for (k, va), vb, vc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(va, vb), k
    assert not torch.equal(a.encoder.blocks[0][0].weight, c.encoder.blocks[0][0].weight)


def test_outputs_are_bounded_and_every_parameter_gets_a_gradient():
    net = _network(gridsize=2, N=32)
    x = torch.rand(3, 4, 32, 32) * 4
    offsets = torch.tensor(np.random.default_rng(0).uniform(-4, 4, (3, 4, 2)))
    out = net(x, offsets)
    assert out.amplitude.shape == out.object_amplitude.shape == out.object_phase.shape == (3, 4, 32, 32)
    assert float(out.object_phase.detach().abs().max()) <= math.pi
    assert float(out.object_amplitude.detach().min()) >= 0
    loss = (out.amplitude**2 - x**2 * torch.log(out.amplitude**2 + 1e-6)).mean()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_physics_layer_matches_the_oracle_forward_model():
    net = _network(N=32)
    rng = np.random.default_rng(4)
    amp = torch.from_numpy(rng.uniform(0.3, 1.0, (2, 1, 32, 32)).astype(np.float32))
    phase = torch.from_numpy(rng.uniform(-1, 1, (2, 1, 32, 32)).astype(np.float32))
    with torch.no_grad():
        ours = net.physics(amp, phase, None).numpy()
    obj = (amp.numpy() * np.exp(1j * phase.numpy())).astype(np.complex64)
    sigma = math.exp(float(net.physics.log_intensity_scale.detach()))
    ref = sigma * np.sqrt(oracle.intensity(oracle.propagate(oracle.illuminate(make_probe(32, 4.0, 8.0), obj))) + 1e-12)
    assert np.max(np.abs(ours - ref)) / np.max(ref) < 1e-5


def test_overlap_constraint_matches_numpy_merge_and_reextract():
    net = _network(N=32, gridsize=2)
    rng = np.random.default_rng(5)
    patches = (rng.uniform(0.2, 1, (3, 4, 32, 32)) * np.exp(1j * rng.uniform(-1, 1, (3, 4, 32, 32)))).astype(np.complex64)
    mask = net.physics.merge_weights.numpy()
    patches = patches * mask  # the network's patches are zero outside the predicted window
    offsets = rng.uniform(-6, 6, (3, 4, 2))
    with torch.no_grad():
        ours = net.physics.overlap_constraint(torch.from_numpy(patches), torch.from_numpy(offsets)).numpy()
    s = net.physics.canvas
    for g in range(3):
        pos = offsets[g] + s // 2
        merged = stitching.reassemble_patches(patches[g], pos, (s, s), mask)
        ref = oracle.extract_patches(merged, pos, 32)
        assert np.max(np.abs(ours[g] - ref)) < 1e-5 * np.max(np.abs(ref))
    # the constraint couples the patches: each re-extracted patch now holds its neighbours' content
    outside = 1 - mask
    assert np.abs(ours * outside).sum() > 0


def test_overlap_constraint_off_for_gridsize_one_and_without_object_big():
    assert not _network(N=32).physics.overlap
    assert not _network(N=32, gridsize=2, object_big=False).physics.overlap
    assert _network(N=32, gridsize=2).physics.overlap


def test_input_shape_errors_name_the_expected_shape():
    net = _network(N=32, gridsize=2)
    with pytest.raises(ValueError, match=r"expected shape \(B, 4, 32, 32\) for gridsize 2"):
        net(torch.zeros(2, 1, 32, 32), torch.zeros(2, 1, 2))
    with pytest.raises(ValueError, match="offsets: required"):
        net(torch.zeros(2, 4, 32, 32))


def test_probe_mask_and_fixed_intensity_scale():
    net = _network(N=32, probe_mask=True, intensity_scale_trainable=False)
    probe = net.physics.probe
    assert probe[0, 0] == 0 and probe[16, 16] != 0
    assert not net.physics.log_intensity_scale.requires_grad


@pytest.mark.parametrize("probe_big, pad_object, expected", [(False, True, 16), (True, True, 32), (False, False, 32)])
def test_predicted_size_follows_the_config(probe_big, pad_object, expected):
    assert predicted_size(ModelConfig(N=32, probe_big=probe_big, pad_object=pad_object)) == expected
