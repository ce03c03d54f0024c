"""Crafted NPZ files for the input-limit tests: headers that lie, and a zip bomb (built by
streaming, so the test itself never holds the declared data)."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _header(shape: tuple[int, ...], dtype: str) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _small_members(n: int = 4, size: int = 64) -> dict[str, bytes]:
    return {
        "probeGuess.npy": _npy_bytes(np.ones((size, size), np.complex64)),
        "xcoords.npy": _npy_bytes(np.arange(n, dtype=np.float64)),
        "ycoords.npy": _npy_bytes(np.arange(n, dtype=np.float64)),
    }


def huge_declared_shape(path: Path, shape: tuple[int, ...] = (1_000_000_000, 64, 64)) -> Path:
    """A 'diffraction' member whose header declares ``shape`` float32 but holds 1 kB of data."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr("diffraction.npy", _header(shape, "<f4") + bytes(1024))
        for name, data in _small_members().items():
            archive.writestr(name, data)
    return path


def zip_bomb(path: Path, patterns: int = 1800, size: int = 128) -> Path:
    """A consistent but deflated-zeros 'diffraction' (patterns, size, size) float32 (118 MB from
    about 0.1 MB), streamed into the archive."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("diffraction.npy", "w", force_zip64=True) as member:
            member.write(_header((patterns, size, size), "<f4"))
            chunk = bytes(size * size * 4)
            for _ in range(patterns):
                member.write(chunk)
        for name, data in _small_members(patterns, size).items():
            archive.writestr(name, data)
    return path
