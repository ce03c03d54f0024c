"""Framework-neutral sizes and starting values of the PtychoPINN network (docs/architecture.md).

Both backends build their layers from these functions (``ptycho/tf_backend/network.py`` in Keras,
``ptycho_torch/network.py`` in torch), so the shapes that weight copying and parity rely on are
decided in one place.
"""

from __future__ import annotations

import math

from ptycho.config.config import ModelConfig

__all__ = [
    "BASE_WIDTHS",
    "AMPLITUDE_START",
    "HEAD_WEIGHT_STD",
    "encoder_widths",
    "predicted_size",
    "decoder_widths",
    "head_bias_for",
]

# Encoder widths at n_filters_scale 1; multiplied by n_filters_scale.
BASE_WIDTHS: tuple[int, int, int] = (8, 16, 32)
# Initial amplitude the amplitude head starts at, and the std of the head weights.
AMPLITUDE_START = 0.5
HEAD_WEIGHT_STD = 1e-3


def encoder_widths(cfg: ModelConfig) -> tuple[int, int, int]:
    return tuple(w * cfg.n_filters_scale for w in BASE_WIDTHS)  # type: ignore[return-value]


def predicted_size(cfg: ModelConfig) -> int:
    """Side of the object patch the decoder predicts: N/2 when only the centre is predicted."""
    return cfg.N // 2 if cfg.predicts_center_only else cfg.N


def decoder_widths(cfg: ModelConfig) -> tuple[int, ...]:
    """One width per upsampling level, from the bottleneck (N/8) up to the predicted size."""
    e1, e2, _e3 = encoder_widths(cfg)
    levels = int(round(math.log2(predicted_size(cfg) / (cfg.N // 8))))
    return (e2, e1, e1)[:levels]


def head_bias_for(activation: str) -> float:
    """Bias making ``activation(bias) == AMPLITUDE_START`` so every activation starts at 0.5."""
    a = AMPLITUDE_START
    if activation == "sigmoid":
        return math.log(a / (1 - a))
    if activation == "softplus":
        return math.log(math.expm1(a))
    if activation == "relu":
        return a
    if activation == "swish":
        x = 1.0  # solve x * sigmoid(x) = a by Newton's method
        for _ in range(50):
            s = 1 / (1 + math.exp(-x))
            x -= (x * s - a) / (s + x * s * (1 - s))
        return x
    raise ValueError(f"amp_activation: invalid value {activation!r}; expected sigmoid, swish, softplus or relu")
