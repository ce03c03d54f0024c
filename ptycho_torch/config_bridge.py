"""Canonical dataclasses <-> the four plain-dict hyperparameter groups of a Lightning checkpoint.

A checkpoint's ``hyper_parameters`` hold ``model_config``, ``data_config``, ``training_config`` and
``inference_config`` as JSON-able dicts (str, int, float, bool, None), so it reloads with
``torch.load(weights_only=True)`` and ``PtychoPINN_Lightning.load_from_checkpoint(p)`` needs no
kwargs. The mapping is lossless both ways; a dict with a missing, unknown or invalid field raises a
``ValueError`` naming the group and the field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ptycho.config.config import (
    CLIENT_MODEL_SETTINGS,
    CLIENT_TRAINING_SETTINGS,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
)

__all__ = [
    "GROUPS",
    "MODEL_FIELDS",
    "DATA_FIELDS",
    "TRAINING_FIELDS",
    "INFERENCE_FIELDS",
    "TORCH_ONLY_DEFAULTS",
    "HyperparameterError",
    "to_hyperparameters",
    "model_config_from",
    "training_config_from",
    "inference_config_from",
    "validate_hyperparameters",
]

GROUPS = ("model_config", "data_config", "training_config", "inference_config")

MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
# TrainingConfig fields split into what describes the data and what describes the optimisation.
DATA_FIELDS = ("train_data_file", "test_data_file", "n_groups", "neighbor_count", "subsample_seed", "nphotons")
TRAINING_FIELDS = (
    "batch_size", "nepochs", "learning_rate", "nll_weight", "mae_weight", "output_dir", "backend",
    *sorted(CLIENT_TRAINING_SETTINGS),
)
INFERENCE_FIELDS = tuple(f.name for f in dataclasses.fields(InferenceConfig) if f.name != "model")
# Settings of the torch backend alone (no TensorFlow counterpart), stored in training_config.
TORCH_ONLY_DEFAULTS: dict[str, Any] = {"seed": 42}
# Derived, read-only keys copied into data_config for readers of the checkpoint.
DERIVED_DATA_KEYS = ("N", "gridsize", "channels")

_PATH_FIELDS = {"train_data_file", "test_data_file", "output_dir", "model_path"}

assert set(DATA_FIELDS) | set(TRAINING_FIELDS) == {f.name for f in dataclasses.fields(TrainingConfig)} - {"model"}


class HyperparameterError(ValueError):
    """A hyperparameter dict does not describe a valid configuration."""


def _plain(name: str, value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise HyperparameterError(f"{name}: value {value!r} of type {type(value).__name__} is not JSON-able")


def to_hyperparameters(
    training: TrainingConfig, inference: InferenceConfig | None = None, seed: int | None = None
) -> dict[str, dict[str, Any]]:
    """The four JSON-able groups describing a training run (and the inference that follows it)."""
    if not isinstance(training, TrainingConfig):
        raise HyperparameterError(f"training: expected a TrainingConfig, got {type(training).__name__}")
    if inference is None:
        inference = InferenceConfig(
            model=training.model,
            model_path=training.output_dir,
            test_data_file=training.test_data_file,
            n_groups=training.n_groups,
            neighbor_count=training.neighbor_count,
            backend=training.backend,
        )
    if not isinstance(inference, InferenceConfig):
        raise HyperparameterError(f"inference: expected an InferenceConfig, got {type(inference).__name__}")
    if inference.model != training.model:
        raise HyperparameterError(
            "inference.model: differs from training.model; a checkpoint holds one architecture"
        )
    model = {k: _plain(f"model_config.{k}", getattr(training.model, k)) for k in MODEL_FIELDS}
    data = {k: _plain(f"data_config.{k}", getattr(training, k)) for k in DATA_FIELDS}
    data.update(N=training.model.N, gridsize=training.model.gridsize, channels=training.model.channels)
    train = {k: _plain(f"training_config.{k}", getattr(training, k)) for k in TRAINING_FIELDS}
    train["seed"] = int(TORCH_ONLY_DEFAULTS["seed"] if seed is None else seed)
    infer = {k: _plain(f"inference_config.{k}", getattr(inference, k)) for k in INFERENCE_FIELDS}
    return {"model_config": model, "data_config": data, "training_config": train, "inference_config": infer}


def _group(
    hparams: dict[str, Any], group: str, fields: tuple[str, ...], extra: tuple[str, ...] = (),
    optional: frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The ``fields`` of one group. ``optional`` fields (added for ptychodus, one supported value
    each, docs/ptychodus.md) may be missing: a checkpoint written before them loads with defaults."""
    if not isinstance(hparams, dict):
        raise HyperparameterError(f"hyper_parameters: expected a dict of {', '.join(GROUPS)}, got {type(hparams).__name__}")
    if group not in hparams:
        raise HyperparameterError(f"hyper_parameters: missing group {group!r} (expected {', '.join(GROUPS)})")
    values = hparams[group]
    if not isinstance(values, dict):
        raise HyperparameterError(f"{group}: expected a dict, got {type(values).__name__}")
    missing = [k for k in fields if k not in values and k not in optional]
    if missing:
        raise HyperparameterError(f"{group}: missing field(s) {', '.join(missing)}")
    unknown = sorted(set(values) - set(fields) - set(extra))
    if unknown:
        raise HyperparameterError(f"{group}: unknown field(s) {', '.join(unknown)}; known: {', '.join(fields + extra)}")
    return {k: values[k] for k in fields if k in values}


def _build(cls: type, group: str, kwargs: dict[str, Any]) -> Any:
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise HyperparameterError(f"{group}.{exc}") from None


def model_config_from(hparams: dict[str, Any]) -> ModelConfig:
    """The :class:`ModelConfig` of a hyperparameter dict."""
    model = _build(ModelConfig, "model_config", _group(hparams, "model_config", MODEL_FIELDS, optional=CLIENT_MODEL_SETTINGS))
    data = hparams.get("data_config") or {}
    for key in DERIVED_DATA_KEYS:
        if key in data and data[key] != getattr(model, key):
            raise HyperparameterError(
                f"data_config.{key}: {data[key]!r} disagrees with model_config ({getattr(model, key)!r})"
            )
    return model


def training_config_from(hparams: dict[str, Any]) -> TrainingConfig:
    """The :class:`TrainingConfig` of a hyperparameter dict (inverse of :func:`to_hyperparameters`)."""
    model = model_config_from(hparams)
    kwargs = _group(hparams, "data_config", DATA_FIELDS, DERIVED_DATA_KEYS)
    kwargs.update(_group(hparams, "training_config", TRAINING_FIELDS, tuple(TORCH_ONLY_DEFAULTS), CLIENT_TRAINING_SETTINGS))
    return _build(TrainingConfig, "training_config", {"model": model, **kwargs})


def inference_config_from(hparams: dict[str, Any]) -> InferenceConfig:
    """The :class:`InferenceConfig` of a hyperparameter dict."""
    model = model_config_from(hparams)
    kwargs = _group(hparams, "inference_config", INFERENCE_FIELDS)
    return _build(InferenceConfig, "inference_config", {"model": model, **kwargs})


def seed_from(hparams: dict[str, Any]) -> int:
    seed = (hparams.get("training_config") or {}).get("seed", TORCH_ONLY_DEFAULTS["seed"])
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise HyperparameterError(f"training_config.seed: invalid value {seed!r}; expected an integer >= 0")
    return seed


def validate_hyperparameters(hparams: dict[str, Any]) -> tuple[TrainingConfig, InferenceConfig]:
    """Check all four groups; return the configs they describe."""
    training = training_config_from(hparams)
    inference = inference_config_from(hparams)
    seed_from(hparams)
    return training, inference
