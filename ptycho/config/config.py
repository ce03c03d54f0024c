"""Modern configuration dataclasses and the bridge to the legacy ``params.cfg`` (brief §1).

Every field is validated at construction, so a bad value fails where it was written, with an error
that names the field, the value and what is allowed. ``update_legacy_dict`` is the CONFIG-001 bridge:
call it before loading data or building a model (brief §1.2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, MutableMapping

__all__ = [
    "VALID_BACKENDS",
    "UnsupportedSettingError",
    "CLIENT_MODEL_SETTINGS",
    "CLIENT_TRAINING_SETTINGS",
    "ModelConfig",
    "TrainingConfig",
    "InferenceConfig",
    "validate_backend",
    "update_legacy_dict",
    "legacy_items",
]

Backend = Literal["tensorflow", "pytorch"]
VALID_BACKENDS: tuple[str, ...] = ("tensorflow", "pytorch")
VALID_N: tuple[int, ...] = (32, 64, 128)
# N = 0: "not known yet" (ptychodus builds its TrainingConfig before it has read the data); training
# takes N from the data, and it may be assigned once after construction (``model.N = 64``).
UNRESOLVED_N = 0
DEFAULT_NEIGHBOR_COUNT = 4
VALID_MODEL_TYPES: tuple[str, ...] = ("pinn",)
# Accepted by name (ptychodus sets them) but not implemented: the value to pass, and why.
UNSUPPORTED_MODEL_TYPES: dict[str, str] = {
    "supervised": "the supervised model (trained on ground-truth object patches) is not implemented; use 'pinn'",
}
VALID_AMP_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "swish", "softplus", "relu")


def validate_backend(value: object) -> str:
    """Return ``value`` if it is a backend literal, else raise the corrective ``ValueError``."""
    if not isinstance(value, str) or value not in VALID_BACKENDS:
        raise ValueError(
            f"backend: invalid value {value!r}; expected 'tensorflow' (default) or 'pytorch'"
        )
    return value


# Fields a client (ptychodus) sets whose only supported value is the default (other values are
# refused at construction) or that fold into another field: nothing to persist or translate.
CLIENT_MODEL_SETTINGS: frozenset[str] = frozenset({"gaussian_smoothing_sigma"})
CLIENT_TRAINING_SETTINGS: frozenset[str] = frozenset(
    {"realspace_mae_weight", "realspace_weight", "positions_provided", "probe_trainable", "intensity_scale_trainable"}
)


class UnsupportedSettingError(ValueError):
    """A setting this library knows by name (a client such as ptychodus sets it) but whose value it
    does not implement: refused rather than silently ignored. The message names the field."""

    def __init__(self, name: str, value: object, supported: str):
        self.field, self.value = name, value
        super().__init__(f"{name}: {value!r} is not implemented by ptycho; {supported}")


def _fail(name: str, value: object, allowed: str) -> None:
    raise ValueError(f"{name}: invalid value {value!r}; expected {allowed}")


def _check_model_size(value: object, allow_unresolved: bool) -> None:
    if isinstance(value, bool) or not (value in VALID_N or (allow_unresolved and value == UNRESOLVED_N)):
        _fail("N", value, "one of 32, 64, 128" + (" (or 0: take it from the data)" if allow_unresolved else ""))


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(name, value, f"an integer >= {minimum}")


def _check_positive(name: str, value: object, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (value >= 0 if allow_zero else value > 0) and value == value and value != float("inf")
    if not ok:
        _fail(name, value, "a finite number " + (">= 0" if allow_zero else "> 0"))


def _check_grouping(config: "TrainingConfig | InferenceConfig") -> None:
    """``n_groups`` and ``neighbor_count``, the grouping fields training and inference share; an unset
    ``neighbor_count`` becomes ``max(4, gridsize**2)``."""
    if config.n_groups is not None:
        _check_int("n_groups", config.n_groups, 1)
    if config.neighbor_count is None:
        object.__setattr__(config, "neighbor_count", max(DEFAULT_NEIGHBOR_COUNT, config.model.channels))
    _check_int("neighbor_count", config.neighbor_count, 1)
    if config.neighbor_count < config.model.channels:
        _fail("neighbor_count", config.neighbor_count, f"at least gridsize**2 = {config.model.channels} neighbours to form a group")


def _check_bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        _fail(name, value, "True or False")


def _as_path(value: object, name: str, optional: bool = True) -> Path | None:
    if value is None:
        if optional:
            return None
        _fail(name, value, "a file system path")
    if isinstance(value, (str, Path)) and str(value):
        return Path(value)
    _fail(name, value, "a file system path (str or Path)")
    return None  # unreachable


@dataclass(unsafe_hash=True)
class ModelConfig:
    """Architecture and physics of the network; identical for both backends.

    Frozen, with one exception: an ``N`` of 0 ("take it from the data") may be assigned once, to a
    valid size, after construction (ptychodus sets ``training_config.model.N`` when its child
    process has read the patterns). Every other assignment raises ``FrozenInstanceError``.
    """

    N: int = 64
    gridsize: int = 1
    n_filters_scale: int = 1
    model_type: str = "pinn"
    amp_activation: str = "sigmoid"
    object_big: bool = True
    probe_big: bool = False
    probe_mask: bool = False
    pad_object: bool = True
    probe_scale: float = 4.0
    intensity_scale_trainable: bool = True
    gaussian_smoothing_sigma: float = 0.0

    def __post_init__(self) -> None:
        _check_model_size(self.N, allow_unresolved=True)
        _check_int("gridsize", self.gridsize, 1)
        _check_int("n_filters_scale", self.n_filters_scale, 1)
        if self.model_type in UNSUPPORTED_MODEL_TYPES:
            raise UnsupportedSettingError("model_type", self.model_type, UNSUPPORTED_MODEL_TYPES[self.model_type])
        if self.model_type not in VALID_MODEL_TYPES:
            _fail("model_type", self.model_type, "'pinn'")
        if self.amp_activation not in VALID_AMP_ACTIVATIONS:
            _fail("amp_activation", self.amp_activation, "one of " + ", ".join(map(repr, VALID_AMP_ACTIVATIONS)))
        for name in ("object_big", "probe_big", "probe_mask", "pad_object", "intensity_scale_trainable"):
            _check_bool(name, getattr(self, name))
        _check_positive("probe_scale", self.probe_scale)
        _check_positive("gaussian_smoothing_sigma", self.gaussian_smoothing_sigma, allow_zero=True)
        if self.gaussian_smoothing_sigma != 0:
            raise UnsupportedSettingError(
                "gaussian_smoothing_sigma", self.gaussian_smoothing_sigma, "only 0 (no smoothing) is supported"
            )

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.__dict__:  # first assignment, from the generated __init__
            object.__setattr__(self, name, value)
            return
        if name == "N" and self.__dict__["N"] == UNRESOLVED_N:
            _check_model_size(value, allow_unresolved=False)
            object.__setattr__(self, name, value)
            return
        raise dataclasses.FrozenInstanceError(
            f"cannot assign to field {name!r}: ModelConfig is frozen (only an unresolved N = 0 may be set, "
            f"once); use dataclasses.replace"
        )

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}: ModelConfig is frozen")

    @property
    def is_resolved(self) -> bool:
        """False while ``N`` is 0 ("take it from the data")."""
        return self.N != UNRESOLVED_N

    def require_resolved(self, where: str) -> None:
        """Refuse to build or run anything with ``N = 0``: the size must come from data first."""
        if not self.is_resolved:
            raise ValueError(
                f"N: 0 (take it from the data) is not resolved at {where}; train on data (which sets it) "
                f"or construct ModelConfig with N in 32, 64, 128"
            )

    def resolved(self, n: int, where: str = "data") -> "ModelConfig":
        """This config with ``N`` taken from data of pattern size ``n``; an explicit ``N`` must match."""
        if not self.is_resolved:
            return dataclasses.replace(self, N=n)
        if self.N != n:
            raise ValueError(f"{where}: patterns are {n} x {n} but ModelConfig.N is {self.N}")
        return self

    @property
    def channels(self) -> int:
        """Patches per group, ``C = gridsize**2``."""
        return self.gridsize**2

    @property
    def predicts_center_only(self) -> bool:
        """The decoder predicts the central N/2 x N/2 and zero-pads to N (``pad_object`` without
        the outer ``probe_big`` branch); measured to train faster and reconstruct better here."""
        return self.pad_object and not self.probe_big


@dataclass(frozen=True)
class TrainingConfig:
    """What to train on and how."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train_data_file: Path | None = None
    test_data_file: Path | None = None
    batch_size: int = 16
    nepochs: int = 50
    nll_weight: float = 1.0
    mae_weight: float = 0.0
    nphotons: float = 1e9
    n_groups: int | None = None
    # None: max(4, gridsize**2), the fewest neighbours that can form a group (ptychodus cannot set it).
    neighbor_count: int | None = None
    subsample_seed: int | None = None
    learning_rate: float = 1e-3
    output_dir: Path = Path("training_outputs")
    backend: Backend = "tensorflow"
    # Set by ptychodus's PtychoPINN reconstructor; each works at the value shown or is refused
    # (UnsupportedSettingError), never ignored. docs/ptychodus.md lists them.
    realspace_mae_weight: float = 0.0
    realspace_weight: float = 0.0
    positions_provided: bool = True
    probe_trainable: bool = False
    # None: the model's own ModelConfig.intensity_scale_trainable; a bool overrides it (the model
    # is replaced by a copy with that value, so the two cannot disagree).
    intensity_scale_trainable: bool | None = None

    def __post_init__(self) -> None:
        validate_backend(self.backend)
        if not isinstance(self.model, ModelConfig):
            _fail("model", self.model, "a ModelConfig")
        self._check_client_settings()
        object.__setattr__(self, "train_data_file", _as_path(self.train_data_file, "train_data_file"))
        object.__setattr__(self, "test_data_file", _as_path(self.test_data_file, "test_data_file"))
        object.__setattr__(self, "output_dir", _as_path(self.output_dir, "output_dir", optional=False))
        _check_int("batch_size", self.batch_size, 1)
        if self.batch_size & (self.batch_size - 1):
            _fail("batch_size", self.batch_size, "a power of two (1, 2, 4, ..., 16, ...)")
        _check_int("nepochs", self.nepochs, 1)
        _check_positive("nll_weight", self.nll_weight, allow_zero=True)
        _check_positive("mae_weight", self.mae_weight, allow_zero=True)
        if self.nll_weight + self.mae_weight <= 0:
            _fail("nll_weight", self.nll_weight, "nll_weight + mae_weight > 0 (some loss to train on)")
        _check_positive("nphotons", self.nphotons)
        _check_grouping(self)
        if self.subsample_seed is not None:
            _check_int("subsample_seed", self.subsample_seed, 0)
        _check_positive("learning_rate", self.learning_rate)

    def _check_client_settings(self) -> None:
        for name in ("realspace_mae_weight", "realspace_weight"):
            value = getattr(self, name)
            _check_positive(name, value, allow_zero=True)
            if value != 0:
                raise UnsupportedSettingError(
                    name, value, "only 0 is supported (the real-space losses need ground-truth object patches)"
                )
        _check_bool("positions_provided", self.positions_provided)
        if not self.positions_provided:
            raise UnsupportedSettingError(
                "positions_provided", False, "the model always uses the scan positions of the data; only True is supported"
            )
        _check_bool("probe_trainable", self.probe_trainable)
        if self.probe_trainable:
            raise UnsupportedSettingError(
                "probe_trainable", True, "the probe is fixed to the data's probeGuess; only False is supported"
            )
        if self.intensity_scale_trainable is not None:
            _check_bool("intensity_scale_trainable", self.intensity_scale_trainable)
            if self.intensity_scale_trainable != self.model.intensity_scale_trainable:
                object.__setattr__(
                    self, "model", dataclasses.replace(self.model, intensity_scale_trainable=self.intensity_scale_trainable)
                )


@dataclass(frozen=True)
class InferenceConfig:
    """What model to load and what to reconstruct."""

    model: ModelConfig = field(default_factory=ModelConfig)
    model_path: Path | None = None
    test_data_file: Path | None = None
    n_groups: int | None = None
    # None: max(4, gridsize**2), the fewest neighbours that can form a group (ptychodus cannot set it).
    neighbor_count: int | None = None
    output_dir: Path = Path("inference_outputs")
    backend: Backend = "tensorflow"
    debug: bool = False

    def __post_init__(self) -> None:
        validate_backend(self.backend)
        if not isinstance(self.model, ModelConfig):
            _fail("model", self.model, "a ModelConfig")
        object.__setattr__(self, "model_path", _as_path(self.model_path, "model_path"))
        object.__setattr__(self, "test_data_file", _as_path(self.test_data_file, "test_data_file"))
        object.__setattr__(self, "output_dir", _as_path(self.output_dir, "output_dir", optional=False))
        _check_grouping(self)
        _check_bool("debug", self.debug)


# Modern field name -> legacy params.cfg key, where they differ.
_LEGACY_KEYS: dict[str, str] = {
    "object_big": "object.big",
    "probe_big": "probe.big",
    "probe_mask": "probe.mask",
    "intensity_scale_trainable": "intensity_scale.trainable",
    "output_dir": "output_prefix",
    "train_data_file": "train_data_file_path",
    "test_data_file": "test_data_file_path",
    "nepochs": "nepochs",
}


def legacy_items(config: ModelConfig | TrainingConfig | InferenceConfig) -> dict[str, Any]:
    """The flat legacy view of a config: nested model fields lifted, keys renamed, paths as
    ``str``, ``None`` values and an unresolved ``N = 0`` left out (the legacy dict keeps its previous
    value instead)."""
    flat: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, ModelConfig):
            flat.update(legacy_items(value))
            continue
        if value is None or (f.name == "N" and value == UNRESOLVED_N):
            continue
        if isinstance(value, Path):
            value = str(value)
        flat[_LEGACY_KEYS.get(f.name, f.name)] = value
    return flat


def update_legacy_dict(cfg: MutableMapping[str, Any], config: ModelConfig | TrainingConfig | InferenceConfig) -> None:
    """CONFIG-001: copy ``config`` into the legacy global dict before any legacy-dependent code runs."""
    if not isinstance(config, (ModelConfig, TrainingConfig, InferenceConfig)):
        raise TypeError(
            f"update_legacy_dict: expected a ModelConfig, TrainingConfig or InferenceConfig, "
            f"got {type(config).__name__}"
        )
    cfg.update(legacy_items(config))
