"""The legacy global configuration dict ``cfg`` (CONFIG-001).

Legacy-dependent code (grouping, model shapes) reads ``N`` and ``gridsize`` from here, so the
modern dataclasses must be synchronised into it with ``update_legacy_dict`` first. The defaults
below are the legacy defaults; a process that skips the sync silently runs with them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["cfg", "DEFAULTS", "get", "set", "reset", "get_padded_size"]

DEFAULTS: dict[str, Any] = {
    "N": 64,
    "gridsize": 1,
    "n_filters_scale": 1,
    "model_type": "pinn",
    "amp_activation": "sigmoid",
    "object.big": True,
    "probe.big": False,
    "probe.mask": False,
    "pad_object": True,
    "probe_scale": 4.0,
    "intensity_scale.trainable": True,
    "batch_size": 16,
    "nepochs": 50,
    "nll_weight": 1.0,
    "mae_weight": 0.0,
    "nphotons": 1e9,
    "neighbor_count": 4,
    "learning_rate": 1e-3,
    "output_prefix": "training_outputs",
    "backend": "tensorflow",
    # Nominal largest offset (pixels) between patches of one group; sizes the legacy padded canvas.
    "offset": 4,
}

cfg: dict[str, Any] = dict(DEFAULTS)


def get(key: str) -> Any:
    """Value of a legacy key; derived keys are computed from the stored ones."""
    if key in ("bigN", "padded_size"):
        return get_padded_size()
    try:
        return cfg[key]
    except KeyError:
        raise KeyError(f"params.cfg: unknown key {key!r}; known keys: {', '.join(sorted(cfg))}") from None


def set(key: str, value: Any) -> None:  # noqa: A001 - the legacy API name
    """Set a legacy key (``None`` is refused: the legacy dict never holds it)."""
    if value is None:
        raise ValueError(f"params.cfg: refusing to set {key!r} to None")
    cfg[key] = value


def reset() -> None:
    """Back to the legacy defaults (tests use this to isolate global state)."""
    cfg.clear()
    cfg.update(DEFAULTS)


def get_padded_size() -> int:
    """Side of the padded object canvas for one group: ``N + (gridsize - 1) * offset``."""
    return int(cfg["N"] + (cfg["gridsize"] - 1) * cfg["offset"])
