"""Numpy reference of the PtychoPINN forward model.

This module is the oracle: the TensorFlow and PyTorch backends implement the same operators under
the same names and are tested against these functions to float32 tolerance.

Conventions (DESIGN "The physics"): positions are ``(x, y)`` in object pixels, x the column and y
the row; pixel ``(r, c)`` of an N x N patch centred at ``(x, y)`` samples the object at row
``y - N/2 + r`` and column ``x - N/2 + c`` with bilinear interpolation, zero outside the object.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "bilinear_taps",
    "extract_patches",
    "adjoint_extract",
    "illuminate",
    "propagate",
    "intensity",
    "forward_intensity",
    "forward_amplitude",
    "counts_scale",
    "poisson_counts",
    "poisson_nll",
    "poisson_deviance",
]


def bilinear_taps(positions: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer top-left corners and fractional weights of every patch pixel.

    Returns ``(row0, col0, frac_row, frac_col)``: ``row0`` has shape (P, N) (one row index per patch
    row), ``col0`` (P, N); the fractions are (P,) because a patch shifts rigidly. Shared by
    extraction and by reassembly (its adjoint), so both agree on every sub-pixel convention.
    """
    positions = np.asarray(positions, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2:
        raise ValueError(f"positions: expected shape (P, 2) as (x, y), got {positions.shape}")
    start_col = positions[:, 0] - n / 2
    start_row = positions[:, 1] - n / 2
    base_col = np.floor(start_col)
    base_row = np.floor(start_row)
    frac_col = start_col - base_col
    frac_row = start_row - base_row
    offsets = np.arange(n)
    row0 = base_row.astype(np.int64)[:, None] + offsets[None, :]
    col0 = base_col.astype(np.int64)[:, None] + offsets[None, :]
    return row0, col0, frac_row, frac_col


def _gather(obj: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """obj[rows[p, r], cols[p, c]] with zero outside the object."""
    m_rows, m_cols = obj.shape
    row_ok = (rows >= 0) & (rows < m_rows)
    col_ok = (cols >= 0) & (cols < m_cols)
    values = obj[np.clip(rows, 0, m_rows - 1)[:, :, None], np.clip(cols, 0, m_cols - 1)[:, None, :]]
    return values * (row_ok[:, :, None] & col_ok[:, None, :])


def extract_patches(obj: np.ndarray, positions: np.ndarray, n: int) -> np.ndarray:
    """Bilinearly sample one N x N patch of ``obj`` per scan position -> (P, N, N)."""
    obj = np.asarray(obj)
    if obj.ndim != 2:
        raise ValueError(f"object: expected a 2-D array, got shape {obj.shape}")
    row0, col0, fr, fc = bilinear_taps(positions, n)
    fr = fr[:, None, None]
    fc = fc[:, None, None]
    out = (
        (1 - fr) * (1 - fc) * _gather(obj, row0, col0)
        + (1 - fr) * fc * _gather(obj, row0, col0 + 1)
        + fr * (1 - fc) * _gather(obj, row0 + 1, col0)
        + fr * fc * _gather(obj, row0 + 1, col0 + 1)
    )
    return out.astype(np.result_type(obj.dtype, np.complex64) if np.iscomplexobj(obj) else np.float32)


def adjoint_extract(patches: np.ndarray, positions: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Adjoint of :func:`extract_patches`: splat every patch back onto an object of ``shape``.

    Each patch pixel is spread over its four bilinear neighbours with the same taps as extraction
    (values that fall outside the object are dropped), and overlapping patches add up, so
    ``<extract_patches(O), G> == <O, adjoint_extract(G)>``. Iterative solvers need it for the
    gradient with respect to the object.
    """
    patches = np.asarray(patches)
    if patches.ndim != 3 or patches.shape[1] != patches.shape[2]:
        raise ValueError(f"patches: expected shape (P, N, N), got {patches.shape}")
    n = patches.shape[-1]
    m_rows, m_cols = int(shape[0]), int(shape[1])
    row0, col0, fr, fc = bilinear_taps(positions, n)
    if row0.shape[0] != patches.shape[0]:
        raise ValueError(f"positions: expected {patches.shape[0]} positions, one per patch, got {row0.shape[0]}")
    values = patches.astype(np.complex128 if np.iscomplexobj(patches) else np.float64)
    flat_index: list[np.ndarray] = []
    flat_value: list[np.ndarray] = []
    for d_row, d_col in ((0, 0), (0, 1), (1, 0), (1, 1)):
        tap = ((fr if d_row else 1 - fr) * (fc if d_col else 1 - fc))[:, None, None]
        rows = np.broadcast_to((row0 + d_row)[:, :, None], values.shape)
        cols = np.broadcast_to((col0 + d_col)[:, None, :], values.shape)
        ok = (rows >= 0) & (rows < m_rows) & (cols >= 0) & (cols < m_cols)
        flat_index.append(rows[ok] * m_cols + cols[ok])
        flat_value.append((tap * values)[ok])
    index = np.concatenate(flat_index)
    value = np.concatenate(flat_value)
    size = m_rows * m_cols
    if np.iscomplexobj(value):
        out = np.bincount(index, value.real, minlength=size) + 1j * np.bincount(index, value.imag, minlength=size)
    else:
        out = np.bincount(index, value, minlength=size)
    return out.reshape(m_rows, m_cols)


def illuminate(probe: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """Exit waves ``psi_i = P * O_i``."""
    return probe * patches


def propagate(psi: np.ndarray) -> np.ndarray:
    """Far field ``fftshift(fft2(psi, norm='ortho'))`` over the last two axes."""
    return np.fft.fftshift(np.fft.fft2(psi, norm="ortho"), axes=(-2, -1))


def intensity(field: np.ndarray) -> np.ndarray:
    """``|Psi|^2``."""
    return (field.real**2 + field.imag**2).astype(np.float64 if field.dtype == np.complex128 else np.float32)


def forward_intensity(obj: np.ndarray, probe: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Noise-free diffraction intensities for every scan position -> (P, N, N)."""
    n = probe.shape[-1]
    return intensity(propagate(illuminate(probe, extract_patches(obj, positions, n))))


def forward_amplitude(obj: np.ndarray, probe: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Noise-free diffraction amplitudes ``|Psi|``."""
    return np.sqrt(forward_intensity(obj, probe, positions))


def counts_scale(intensities: np.ndarray, nphotons: float) -> float:
    """The factor ``s`` that makes the mean total counts per pattern equal ``nphotons``."""
    mean_total = float(np.mean(np.sum(intensities, axis=(-2, -1))))
    if not mean_total > 0:
        raise ValueError("intensities: total intensity is zero; the object or probe is empty")
    return float(nphotons) / mean_total


def poisson_counts(
    intensities: np.ndarray, nphotons: float, rng: np.random.Generator
) -> tuple[np.ndarray, float]:
    """Draw ``k ~ Poisson(s * I)`` with ``s`` from :func:`counts_scale`; returns ``(k, s)``."""
    scale = counts_scale(intensities, nphotons)
    return rng.poisson(scale * np.asarray(intensities, dtype=np.float64)).astype(np.float64), scale


def poisson_nll(lam: np.ndarray, counts: np.ndarray, eps: float = 1e-6) -> float:
    """Poisson negative log-likelihood ``mean(lambda - k log(lambda + eps))`` (constant dropped)."""
    lam = np.asarray(lam, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    return float(np.mean(lam - counts * np.log(lam + eps)))


def poisson_deviance(lam: np.ndarray, counts: np.ndarray, eps: float = 1e-6) -> float:
    """Mean Poisson deviance ``2 (k log(k/lambda) - (k - lambda))``: zero for a perfect model.

    Unlike the NLL it has an absolute zero, so "trained is clearly below untrained" reads directly.
    """
    lam = np.asarray(lam, dtype=np.float64) + eps
    k = np.asarray(counts, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.where(k > 0, k * np.log(k / lam), 0.0)
    return float(np.mean(2.0 * (term - (k - lam))))
