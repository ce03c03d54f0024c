"""Copy PtychoPINN weights between the torch network and its Keras twin, in both directions.

The two architectures are the same layer by layer (docs/architecture.md); only the storage differs:

- convolution kernels: torch ``(out, in, kh, kw)`` <-> Keras ``(kh, kw, in, out)``; biases as is;
- the probe: a complex64 torch buffer ``physics.probe`` <-> two float Keras weights
  ``probe_real`` / ``probe_imag``;
- ``physics.log_intensity_scale``: a scalar in both;
- ``physics.merge_weights`` (torch buffer) is derived from the ``ModelConfig`` on both sides and
  checked, not copied.

torch is imported only inside these functions, so ``import ptycho.tf_backend.parity`` stays light; TensorFlow
is needed only for the Keras side. A shape or name mismatch raises ``ValueError`` naming the layer.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

__all__ = ["torch_state_dict", "torch_to_keras", "keras_to_torch", "torch_network"]

_ANCHOR = "encoder.blocks.0.0.weight"


def torch_network(module: Any) -> Any:
    """The bare ``ptycho_torch.network.PtychoPINN`` inside ``module`` (a LightningModule keeps it
    as ``.network``)."""
    return module.network if hasattr(module, "network") and hasattr(module.network, "physics") else module


def torch_state_dict(module_or_state: Any) -> dict[str, Any]:
    """A network's state dict with any wrapper prefix (``network.``) removed."""
    state = module_or_state if isinstance(module_or_state, Mapping) else module_or_state.state_dict()
    anchor = next((k for k in state if k.endswith(_ANCHOR)), None)
    if anchor is None:
        raise ValueError(f"torch state dict: no '{_ANCHOR}' key; not a PtychoPINN network")
    prefix = anchor[: -len(_ANCHOR)]
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _numpy(tensor: Any) -> np.ndarray:
    return tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else np.asarray(tensor)


def _check_model_configs(torch_module: Any, keras_model: Any) -> None:
    net = torch_network(torch_module)
    t_cfg = getattr(net, "cfg", None)
    if t_cfg is not None and t_cfg != keras_model.cfg:
        raise ValueError(f"model configs differ: torch {t_cfg} vs Keras {keras_model.cfg}")


def torch_to_keras(torch_module: Any, keras_model: Any) -> None:
    """Load the weights of a torch PtychoPINN (network or LightningModule) into a Keras one."""
    _check_model_configs(torch_module, keras_model)
    state = torch_state_dict(torch_module)
    convs = keras_model.conv_layers()
    expected = {f"{path}.{kind}" for path in convs for kind in ("weight", "bias")}
    expected |= {"physics.probe", "physics.log_intensity_scale", "physics.merge_weights"}
    unknown = sorted(set(state) - expected)
    missing = sorted(expected - set(state))
    if unknown or missing:
        raise ValueError(f"torch -> Keras: unmatched parameters (unknown: {unknown}, missing: {missing})")
    for path, layer in convs.items():
        kernel = _numpy(state[f"{path}.weight"]).transpose(2, 3, 1, 0)
        bias = _numpy(state[f"{path}.bias"])
        if kernel.shape != tuple(layer.kernel.shape) or bias.shape != tuple(layer.bias.shape):
            raise ValueError(
                f"torch -> Keras: layer {path}: kernel {kernel.shape} / bias {bias.shape} do not fit "
                f"{tuple(layer.kernel.shape)} / {tuple(layer.bias.shape)}"
            )
        layer.kernel.assign(kernel)
        layer.bias.assign(bias)
    physics = keras_model.physics
    merge = _numpy(state["physics.merge_weights"])
    if not np.array_equal(merge, physics.merge_weights.numpy()):
        raise ValueError("torch -> Keras: physics.merge_weights differ (different predicted window)")
    probe = _numpy(state["physics.probe"]).astype(np.complex64)
    physics.probe_real.assign(probe.real)
    physics.probe_imag.assign(probe.imag)
    physics.log_intensity_scale.assign(np.float32(_numpy(state["physics.log_intensity_scale"])))


def keras_to_torch(keras_model: Any, torch_module: Any) -> None:
    """Load the weights of a Keras PtychoPINN into a torch one (network or LightningModule)."""
    import torch

    _check_model_configs(torch_module, keras_model)
    net = torch_network(torch_module)
    params = dict(net.named_parameters())
    buffers = dict(net.named_buffers())
    with torch.no_grad():
        for path, layer in keras_model.conv_layers().items():
            for kind, value in (("weight", layer.kernel.numpy().transpose(3, 2, 0, 1)), ("bias", layer.bias.numpy())):
                name = f"{path}.{kind}"
                if name not in params:
                    raise ValueError(f"Keras -> torch: the torch network has no parameter {name}")
                if tuple(params[name].shape) != value.shape:
                    raise ValueError(f"Keras -> torch: {name}: shape {value.shape} does not fit {tuple(params[name].shape)}")
                params[name].copy_(torch.from_numpy(np.ascontiguousarray(value)))
        physics = keras_model.physics
        if not np.array_equal(buffers["physics.merge_weights"].cpu().numpy(), physics.merge_weights.numpy()):
            raise ValueError("Keras -> torch: physics.merge_weights differ (different predicted window)")
        probe = physics.probe_real.numpy() + 1j * physics.probe_imag.numpy()
        buffers["physics.probe"].copy_(torch.from_numpy(probe.astype(np.complex64)))
        params["physics.log_intensity_scale"].copy_(torch.tensor(float(physics.log_intensity_scale.numpy())))
