"""Bounds on NPZ input, checked from the zip directory and the ``.npy`` headers before any array
data is read.

``np.load`` allocates each array at the shape its header declares and only then reads the data,
so a file declaring a (1e9, 64, 64) stack fails with a ``MemoryError`` (or exhausts memory), and
a few megabytes of deflated zeros can expand to gigabytes. Before anything is decompressed,
:func:`check_npz` requires of every member:

* the zip directory fits inside the file (a truncated archive is named as such);
* the declared shape and dtype need no more bytes than the member holds (a header that lies);
* no more than :data:`MAX_RATIO` times its compressed size when it is large (a zip bomb);
* all arrays together fit the memory budget (``PTYCHO_NPZ_MAX_BYTES``, default half the RAM).

Each failure is an :class:`NpzLimitError` (a ``DataContractError``: file, key, expected, found),
which every command line reports in one line with exit 2.
"""

from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from ptycho.raw_data import DataContractError

BUDGET_ENV = "PTYCHO_NPZ_MAX_BYTES"
# Deflate cannot exceed ~1032:1; measured diffraction data compresses 2-10:1. A large member
# beyond this ratio is a crafted file, not a dataset.
MAX_RATIO = 100
RATIO_CHECK_FROM_BYTES = 64 * 2**20
NPY_MAGIC = b"\x93NUMPY"


class NpzLimitError(DataContractError):
    """An NPZ declares more data than its file holds or than memory allows."""


def memory_budget() -> int:
    """Bytes of array data one NPZ may hold: ``$PTYCHO_NPZ_MAX_BYTES``, else half the RAM."""
    text = os.environ.get(BUDGET_ENV, "").strip()
    if text:
        try:
            value = int(float(text))
        except ValueError:
            raise NpzLimitError(None, None, f"{BUDGET_ENV} as a number of bytes", repr(text)) from None
        if value <= 0:
            raise NpzLimitError(None, None, f"{BUDGET_ENV} > 0", repr(text))
        return value
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def _size(nbytes: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{nbytes} B"


def check_npz(path: Path | str, budget: int | None = None) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Check an NPZ against its own file and the memory budget; returns each array's declared
    (shape, dtype). Raises :class:`NpzLimitError` (or ``DataContractError`` for a file that is
    not an NPZ at all) naming the file and the key."""
    path = Path(path)
    budget = memory_budget() if budget is None else budget
    file_size = path.stat().st_size
    with open(path, "rb") as handle:
        start = handle.read(len(NPY_MAGIC))
    if start == NPY_MAGIC:
        raise DataContractError(path, None, "an NPZ (zip) archive of named arrays", "a single .npy array")
    if not zipfile.is_zipfile(path):
        raise DataContractError(path, None, "an NPZ (zip) archive", "not a zip archive")
    headers: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    total = 0
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                key = info.filename[: -len(".npy")] if info.filename.endswith(".npy") else info.filename
                if info.header_offset + info.compress_size > file_size:
                    raise NpzLimitError(path, key, f"a member within the file's {file_size} bytes",
                                        "a truncated archive (the member runs past the end)")
                if (info.compress_type != zipfile.ZIP_STORED and info.file_size > RATIO_CHECK_FROM_BYTES
                        and info.file_size > MAX_RATIO * max(info.compress_size, 1)):
                    raise NpzLimitError(path, key, f"a compression ratio of at most {MAX_RATIO}:1",
                                        f"{_size(info.file_size)} declared from {_size(info.compress_size)} "
                                        "compressed (a zip bomb?)")
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    version = npy_format.read_magic(member)
                    if version == (1, 0):
                        shape, _fortran, dtype = npy_format.read_array_header_1_0(member)
                    else:
                        shape, _fortran, dtype = npy_format.read_array_header_2_0(member)
                    header_bytes = member.tell()
                dtype = np.dtype(dtype)
                nbytes = math.prod(int(n) for n in shape) * dtype.itemsize
                if nbytes > info.file_size - header_bytes:
                    raise NpzLimitError(path, key, f"at most {_size(info.file_size - header_bytes)} of data "
                                        "(what the member holds)",
                                        f"a declared shape {tuple(shape)} {dtype} needing {_size(nbytes)}")
                total += nbytes
                if total > budget:
                    raise NpzLimitError(path, key, f"arrays within the memory budget of {_size(budget)} "
                                        f"(set {BUDGET_ENV} to change it)",
                                        f"{_size(total)} declared up to this array, shape {tuple(shape)} {dtype}")
                headers[key] = (tuple(shape), dtype)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        if isinstance(exc, DataContractError):
            raise
        raise DataContractError(path, None, "an NPZ (zip) archive", f"unreadable file ({exc})") from None
    return headers
