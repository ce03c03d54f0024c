"""The manifest every saved model carries, and the cross-backend guard (brief §2.1.4).

A model directory or archive names the backend that wrote it; loading it with the other backend
fails with an error naming both backends and the path, instead of a deep deserialisation error.
The manifest is JSON (no pickle): a model may come from elsewhere.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from ptycho import __version__

__all__ = [
    "MANIFEST_NAME",
    "TF_ARCHIVE_NAME",
    "TORCH_CHECKPOINT",
    "ModelArtifactError",
    "BackendMismatchError",
    "make_manifest",
    "write_manifest",
    "read_manifest",
    "detect_backend",
    "require_backend",
]

MANIFEST_NAME = "manifest.json"
TF_ARCHIVE_NAME = "wts.h5.zip"
TORCH_CHECKPOINT = Path("checkpoints") / "last.ckpt"
MANIFEST_VERSION = 1


class ModelArtifactError(ValueError):
    """A model path is missing, unreadable or not a model of this project."""


class BackendMismatchError(ModelArtifactError):
    """A model written by one backend was handed to the other."""

    def __init__(self, path: Path, found: str, requested: str):
        self.path, self.found, self.requested = path, found, requested
        super().__init__(
            f"{path}: this is a {found} model (manifest backend {found!r}) and cannot be loaded with the "
            f"{requested} backend; load it with backend={found!r} or retrain with backend={requested!r}"
        )


def make_manifest(backend: str, configs: dict[str, Any], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "manifest_version": MANIFEST_VERSION,
        "backend": backend,
        "ptycho_version": __version__,
        "configs": configs,
        **(extra or {}),
    }


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / MANIFEST_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    tmp.replace(path)
    return path


def _parse(raw: bytes | str, where: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelArtifactError(f"{where}: {MANIFEST_NAME} is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("backend") not in ("tensorflow", "pytorch"):
        raise ModelArtifactError(f"{where}: {MANIFEST_NAME} lacks a 'backend' of 'tensorflow' or 'pytorch'")
    return manifest


def read_manifest(path: Path | str) -> dict[str, Any]:
    """The manifest of a model directory, a TF ``wts.h5.zip`` archive, or a directory holding one."""
    path = Path(path)
    if not path.exists():
        raise ModelArtifactError(f"{path}: no such model file or directory")
    if path.is_dir():
        if (path / MANIFEST_NAME).is_file():
            return _parse((path / MANIFEST_NAME).read_bytes(), path / MANIFEST_NAME)
        if (path / TF_ARCHIVE_NAME).is_file():
            return read_manifest(path / TF_ARCHIVE_NAME)
        raise ModelArtifactError(f"{path}: not a model directory (no {MANIFEST_NAME} or {TF_ARCHIVE_NAME})")
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if MANIFEST_NAME in names:
                    return _parse(archive.read(MANIFEST_NAME), path)
                if any(n.endswith("data.pkl") for n in names):
                    # A bare Lightning/torch checkpoint (a zip with data.pkl) carries no manifest.
                    return {"backend": "pytorch", "manifest_version": 0}
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelArtifactError(f"{path}: corrupted or truncated model archive ({exc})") from None
        raise ModelArtifactError(f"{path}: archive holds no {MANIFEST_NAME}; not a model of this project")
    if path.suffix in (".zip", ".ckpt"):
        what = "checkpoint" if path.suffix == ".ckpt" else "model archive"
        raise ModelArtifactError(f"{path}: corrupted or truncated {what} (not a valid zip file)")
    raise ModelArtifactError(f"{path}: unrecognised model file (expected a model directory, {TF_ARCHIVE_NAME} or .ckpt)")


def detect_backend(path: Path | str) -> str:
    return str(read_manifest(path)["backend"])


def require_backend(path: Path | str, backend: str) -> dict[str, Any]:
    """The manifest of ``path`` if it was written by ``backend``; else :class:`BackendMismatchError`."""
    manifest = read_manifest(path)
    if manifest["backend"] != backend:
        raise BackendMismatchError(Path(path), manifest["backend"], backend)
    return manifest
