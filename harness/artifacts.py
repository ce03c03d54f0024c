"""Inspect the artifacts a selector leaves (ARTIF-001/002) without importing torch.

A torch checkpoint is a zip holding ``<name>/data.pkl``. It is read with a restricted
unpickler: every ``torch.*`` global becomes an inert placeholder, a handful of harmless
builtins are allowed, and anything else is refused, so no code from the file ever runs.
A PNG's size comes from its IHDR chunk; nothing is decoded.
"""

from __future__ import annotations

import collections
import io
import pickle
import re
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The most data.pkl we read; a Lightning checkpoint's pickle (tensors live outside it) is small.
MAX_PICKLE_BYTES = 64 * 1024 * 1024

_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("collections", "Counter"): collections.Counter,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "bytearray"): bytearray,
    ("builtins", "complex"): complex,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): lambda text, encoding="latin1": str(text).encode(encoding),
}


class Inert:
    """Stands for any torch object in a checkpoint: remembers its name, runs nothing."""

    qualname = "torch.?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Inert:
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<{self.qualname}>"


class RefusedGlobal(Exception):
    """The pickle names a global outside the allow-list."""


class _CheckpointUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" or module.startswith("torch."):
            return type(name, (Inert,), {"qualname": f"{module}.{name}"})
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None

    def persistent_load(self, pid: Any) -> Inert:
        storage = Inert()
        storage.args = (pid,)
        return storage


@dataclass(frozen=True)
class Inspection:
    """What was found: ``ok`` says whether the artifact meets its contract."""

    ok: bool
    detail: str
    size_bytes: int | None = None


def load_checkpoint_pickle(path: Path) -> Any:
    """The object pickled in a torch zip checkpoint, with torch objects as Inert placeholders."""
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if not names:
            raise ValueError("zip archive without a data.pkl entry (not a torch checkpoint)")
        entry = min(names, key=lambda name: name.count("/"))
        info = archive.getinfo(entry)
        if info.file_size > MAX_PICKLE_BYTES:
            raise ValueError(f"{entry} is {info.file_size} bytes (limit {MAX_PICKLE_BYTES})")
        data = archive.read(entry)
    return _CheckpointUnpickler(io.BytesIO(data)).load()


def inspect_checkpoint(path: Path, required_key: str = "hyper_parameters") -> Inspection:
    """Does the checkpoint exist, load safely, and carry a non-empty ``required_key``?"""
    path = Path(path)
    if not path.is_file():
        return Inspection(False, "checkpoint file is missing")
    size = path.stat().st_size
    if not zipfile.is_zipfile(path):
        return Inspection(False, "not a torch zip checkpoint (legacy or corrupt file)", size)
    try:
        content = load_checkpoint_pickle(path)
    except RefusedGlobal as exc:
        return Inspection(False, f"checkpoint pickles {exc}, which torch.load(weights_only=True) refuses", size)
    except (ValueError, zipfile.BadZipFile, pickle.UnpicklingError, EOFError) as exc:
        return Inspection(False, f"cannot read checkpoint: {exc}", size)
    if not isinstance(content, dict):
        return Inspection(False, f"checkpoint holds a {type(content).__name__}, expected a dict", size)
    if required_key not in content:
        keys = ", ".join(sorted(map(str, content))[:12])
        return Inspection(False, f"no {required_key!r} key (keys: {keys})", size)
    value = content[required_key]
    if value is None or (hasattr(value, "__len__") and len(value) == 0):
        return Inspection(False, f"{required_key!r} is empty ({value!r})", size)
    described = ", ".join(sorted(map(str, value))[:12]) if isinstance(value, dict) else type(value).__name__
    return Inspection(True, f"{required_key}: {described}", size)


def png_size(path: Path) -> tuple[int, int]:
    """(height, width) from the IHDR chunk; ValueError if the file is not a PNG."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        raise ValueError("not a PNG (bad signature or no IHDR chunk)")
    width, height = struct.unpack(">II", head[16:24])
    return height, width


def parse_shape(text: Any) -> tuple[int, int] | None:
    """``"[H, W]"``, ``"(H, W)"``, ``"HxW"`` or a list -> (H, W); None if it is not a shape."""
    if isinstance(text, (list, tuple)) and len(text) >= 2:
        values = list(text)[:2]
    else:
        values = re.findall(r"\d+", str(text))[:2]
    try:
        height, width = (int(value) for value in values)
    except (TypeError, ValueError):
        return None
    return height, width


def inspect_png(path: Path, min_bytes: int = 1024, expected_shape: tuple[int, int] | None = None) -> Inspection:
    """Does the PNG exist, weigh at least ``min_bytes`` and have the expected (H, W)?"""
    path = Path(path)
    if not path.is_file():
        return Inspection(False, "PNG file is missing")
    size = path.stat().st_size
    try:
        height, width = png_size(path)
    except ValueError as exc:
        return Inspection(False, str(exc), size)
    except OSError as exc:
        return Inspection(False, f"cannot read: {exc.strerror}", size)
    if size < min_bytes:
        return Inspection(False, f"{size} bytes, below the {min_bytes}-byte minimum ({height}x{width} px)", size)
    if expected_shape is not None and (height, width) != tuple(expected_shape):
        return Inspection(
            False, f"{height}x{width} px, expected {expected_shape[0]}x{expected_shape[1]} (H x W)", size
        )
    return Inspection(True, f"{height}x{width} px, {size} bytes", size)
