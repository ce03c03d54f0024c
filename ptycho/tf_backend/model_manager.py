"""The TensorFlow model archive ``{output_dir}/wts.h5.zip`` (brief §2.1.4, DESIGN "Persistence").

The archive is a zip of two members and nothing executable:

- ``manifest.json``: ``backend: "tensorflow"``, the ptycho version, the four configs as plain JSON
  and the legacy ``params.cfg`` snapshot (see :mod:`ptycho.model_manifest`);
- ``model.weights.h5``: the Keras weights (HDF5, no pickle/dill).

The model is rebuilt from the manifest's ``ModelConfig`` by :func:`ptycho.tf_backend.network.build_model` and the
weights are loaded into it, so an archive from elsewhere cannot run code on load. Every failure
names the path: a torch artifact raises :class:`~ptycho.model_manifest.BackendMismatchError`, a
corrupted or truncated archive :class:`~ptycho.model_manifest.ModelArtifactError`.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

from ptycho import params
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho.model_manifest import (
    MANIFEST_NAME,
    TF_ARCHIVE_NAME,
    ModelArtifactError,
    make_manifest,
    require_backend,
)

__all__ = [
    "WEIGHTS_NAME",
    "archive_path",
    "config_to_dict",
    "model_config_from_dict",
    "write_archive",
    "save_model",
    "load_model",
    "remember",
    "current",
    "save",
]

WEIGHTS_NAME = "model.weights.h5"
BACKEND = "tensorflow"


def archive_path(path: Path | str) -> Path:
    """``path`` itself if it names an archive, else ``path / wts.h5.zip``."""
    path = Path(path)
    return path if path.name.endswith(".zip") or path.is_file() else path / TF_ARCHIVE_NAME


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def config_to_dict(config: ModelConfig | TrainingConfig | InferenceConfig) -> dict[str, Any]:
    """A config as plain JSON-able data (paths as strings, the nested ModelConfig as a dict)."""
    return _jsonable(dataclasses.asdict(config))


def model_config_from_dict(data: dict[str, Any], where: Path | str = "<manifest>") -> ModelConfig:
    """Rebuild a :class:`ModelConfig` from its saved dict, ignoring keys this version does not know
    (forward compatible) and naming the source on a bad value."""
    if not isinstance(data, dict):
        raise ModelArtifactError(f"{where}: configs.model: expected a JSON object, found {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    try:
        return ModelConfig(**{k: v for k, v in data.items() if k in known})
    except (TypeError, ValueError) as exc:
        raise ModelArtifactError(f"{where}: configs.model: {exc}") from None


def write_archive(path: Path, manifest: dict[str, Any], weights_file: Path) -> Path:
    """Write ``manifest`` and the weights file into the zip at ``path``, aside then renamed, so an
    interrupted save never leaves a half-written archive under the final name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MANIFEST_NAME, json.dumps(_jsonable(manifest), indent=2, sort_keys=True))
        archive.write(weights_file, WEIGHTS_NAME)
    tmp.replace(path)
    return path


def _scalar_params() -> dict[str, Any]:
    """The legacy dict without its arrays (``set_probe_guess`` records the probe there)."""
    return {k: v for k, v in params.cfg.items() if getattr(v, "ndim", 0) == 0}


def save_model(
    model: Any,
    output_dir: Path | str,
    configs: dict[str, ModelConfig | TrainingConfig | InferenceConfig | dict[str, Any]],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save a Keras PtychoPINN model as ``{output_dir}/wts.h5.zip``; returns the archive path.

    ``configs`` maps names (``model``, ``training``, ...) to configs; ``configs['model']`` is
    required (it rebuilds the architecture on load). ``extra`` adds JSON-able facts to the manifest.
    """
    if "model" not in configs:
        raise ValueError("save_model: configs['model'] (the ModelConfig) is required to rebuild the model")
    plain = {k: (v if isinstance(v, dict) else config_to_dict(v)) for k, v in configs.items()}
    manifest = make_manifest(
        BACKEND,
        plain,
        extra={"params": _jsonable(_scalar_params()), "weights": WEIGHTS_NAME, **(extra or {})},
    )
    out = Path(output_dir) / TF_ARCHIVE_NAME
    with tempfile.TemporaryDirectory(prefix="ptycho-save-") as tmp:
        weights = Path(tmp) / WEIGHTS_NAME
        model.save_weights(weights)
        return write_archive(out, manifest, weights)


def load_model(path: Path | str) -> tuple[Any, dict[str, Any]]:
    """Load a TF archive, a directory holding ``wts.h5.zip``, or a directory holding the archive's
    unpacked members -> ``(keras_model, manifest)``.

    Raises :class:`BackendMismatchError` for a PyTorch artifact and :class:`ModelArtifactError` for
    a missing, corrupted, truncated or incompatible archive, each naming the path.
    """
    path = Path(path)
    target = archive_path(path) if path.is_dir() and (path / TF_ARCHIVE_NAME).is_file() else path
    manifest = require_backend(target, BACKEND)
    unpacked = target.is_dir()
    if unpacked and not (target / WEIGHTS_NAME).is_file():
        raise ModelArtifactError(
            f"{target}: expected a {TF_ARCHIVE_NAME} archive or its unpacked members "
            f"({MANIFEST_NAME} and {WEIGHTS_NAME}), found a directory without {WEIGHTS_NAME}"
        )
    model_config = model_config_from_dict(manifest.get("configs", {}).get("model"), target)

    from ptycho.tf_backend.network import build_model  # TensorFlow loads only when a model is loaded

    model = build_model(model_config)
    with tempfile.TemporaryDirectory(prefix="ptycho-load-") as tmp:
        weights = Path(tmp) / WEIGHTS_NAME
        try:
            if unpacked:
                # The archive's members unpacked by a client (ptychodus "Open Model" extracts the
                # .zip it saved into a folder): the same two files, read in place.
                shutil.copyfile(target / WEIGHTS_NAME, weights)
            else:
                with zipfile.ZipFile(target) as archive:
                    if WEIGHTS_NAME not in archive.namelist():
                        raise ModelArtifactError(f"{target}: archive holds no {WEIGHTS_NAME}; not a complete TensorFlow model")
                    with archive.open(WEIGHTS_NAME) as src, weights.open("wb") as dst:
                        shutil.copyfileobj(src, dst)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            raise ModelArtifactError(f"{target}: corrupted or truncated model archive ({exc})") from None
        try:
            model.load_weights(weights)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelArtifactError(
                f"{target}: {WEIGHTS_NAME} does not fit the model described by its manifest ({exc})"
            ) from None
    return model, manifest


# --------------------------------------------------------------------------- the legacy global model

# The model this process last trained or loaded, with what save_model needs to write it again:
# the legacy ``model_manager.save(dir)`` (ptychodus calls it after ``run_cdi_example``) saves it.
_current: dict[str, Any] | None = None


def remember(model: Any, configs: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
    """Record ``model`` as this process's current model (training and loading call this)."""
    global _current
    _current = {"model": model, "configs": dict(configs), "extra": dict(extra or {})}


def current() -> tuple[Any, dict[str, Any]]:
    """``(model, configs)`` of the model this process last trained or loaded."""
    if _current is None:
        raise RuntimeError("model_manager: no model trained or loaded in this process; nothing to save")
    return _current["model"], _current["configs"]


def save(output_dir: Path | str) -> Path:
    """Legacy ``model_manager.save(dir)``: write this process's current model (last trained or
    loaded) as ``{dir}/wts.h5.zip``, as :func:`save_model` does; returns the archive path."""
    model, configs = current()
    assert _current is not None
    return save_model(model, output_dir, configs, _current["extra"])
