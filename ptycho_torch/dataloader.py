"""Data access for the PyTorch backend: the FORMAT-001 guarded entry points of the brief (§4.2)
and a ``Dataset`` over grouped patterns. The layout logic itself lives in :mod:`ptycho.raw_data`,
shared with every other reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptycho.raw_data import DIFFRACTION_KEYS, DataContractError, canonical_diffraction
from ptycho.raw_data import npz_headers as _npz_headers

__all__ = ["npz_headers", "_get_diffraction_stack"]


def npz_headers(path: Path | str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Array shapes and dtypes of an NPZ without loading the data (for large files)."""
    return _npz_headers(path)


def _get_diffraction_stack(path: Path | str) -> np.ndarray:
    """The diffraction stack of ``path`` as canonical (n, H, W) float32, legacy layouts transposed."""
    path = Path(path)
    headers = _npz_headers(path)
    key = next((k for k in DIFFRACTION_KEYS if k in headers), None)
    if key is None:
        raise DataContractError(path, "diffraction", "a diffraction stack ('diffraction' or legacy 'diff3d')", f"keys {sorted(headers)}")
    with np.load(path, allow_pickle=False) as archive:
        stack = archive[key]
        n_positions = None
        if "xcoords" in headers and len(headers["xcoords"][0]) == 1:
            n_positions = headers["xcoords"][0][0]
    if stack.ndim != 3:
        raise DataContractError(path, key, "a 3-D stack (n, H, W)", f"shape {stack.shape}")
    return canonical_diffraction(stack, n_positions, source=path).astype(np.float32, copy=False)
