"""The forward model of :mod:`ptycho.physics`, precomputed for one fixed scan.

An iterative solver applies the same extraction thousands of times at the same positions, so the
bilinear taps and the flat indices of every patch's (N+1) x (N+1) footprint are computed once.
:meth:`ScanOperator.extract` equals :func:`ptycho.physics.extract_patches` and
:meth:`ScanOperator.adjoint` equals :func:`ptycho.physics.adjoint_extract` (tested), about ten
times faster. The far field is kept in unshifted FFT order (the measured patterns are
``ifftshift``-ed once instead), which is exact because every Fourier-space update is pixelwise.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from ptycho import physics

__all__ = ["ScanOperator", "canvas_for_scan", "far_field", "near_field", "to_fft_order"]


def canvas_for_scan(
    positions: np.ndarray, n: int, min_shape: tuple[int, int] | None = None
) -> tuple[tuple[int, int], np.ndarray]:
    """A canvas holding every patch footprint, and the positions on it.

    Positions stay as given unless a patch would start left of or above the origin; then all are
    shifted by whole pixels (returned ``offset`` (x, y)) so that nothing is cut off. ``min_shape``
    (e.g. the ground truth's shape) enlarges the canvas so results compare pixel for pixel.
    Returns ``((rows, cols), offset)``.
    """
    positions = np.asarray(positions, dtype=np.float64)
    low = positions.min(axis=0) - n / 2
    offset = np.where(low < 0, np.ceil(-low), 0.0)
    shifted = positions + offset
    rows = int(np.floor(shifted[:, 1].max() - n / 2)) + n + 1
    cols = int(np.floor(shifted[:, 0].max() - n / 2)) + n + 1
    if min_shape is not None:
        rows, cols = max(rows, int(min_shape[0])), max(cols, int(min_shape[1]))
    return (rows, cols), offset


def to_fft_order(patterns: np.ndarray) -> np.ndarray:
    """Measured patterns (centred, as :func:`ptycho.physics.propagate` lays them out) in FFT order."""
    return np.ascontiguousarray(np.fft.ifftshift(patterns, axes=(-2, -1)))


def far_field(psi: np.ndarray) -> np.ndarray:
    """``fft2(psi, ortho)`` in FFT order: :func:`ptycho.physics.propagate` without the fftshift."""
    return scipy.fft.fft2(psi, norm="ortho")


def near_field(field: np.ndarray) -> np.ndarray:
    """Inverse of :func:`far_field` (also its adjoint: the transform is unitary)."""
    return scipy.fft.ifft2(field, norm="ortho")


Window = tuple[slice, slice]


class ScanOperator:
    """Bilinear patch extraction at fixed scan positions on a fixed canvas, and its adjoint.

    ``window`` (rows, cols of the N x N patch, default all of it) limits the work to the part of
    each patch the probe lights: outside it the exit wave is zero whatever the object holds.
    """

    def __init__(self, positions: np.ndarray, n: int, shape: tuple[int, int], window: Window | None = None):
        positions = np.asarray(positions, dtype=np.float64)
        row0, col0, frac_row, frac_col = physics.bilinear_taps(positions, n)
        top, left = row0[:, 0], col0[:, 0]
        rows, cols = int(shape[0]), int(shape[1])
        if top.min() < 0 or left.min() < 0 or top.max() + n >= rows or left.max() + n >= cols:
            raise ValueError(
                f"scan: patches of {n} px at these positions do not fit a {rows} x {cols} canvas; "
                "build the canvas with canvas_for_scan"
            )
        win_rows, win_cols = window if window is not None else (slice(0, n), slice(0, n))
        r0, r1, _ = win_rows.indices(n)
        c0, c1, _ = win_cols.indices(n)
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"window: expected a non-empty part of the {n} x {n} patch, got {window}")
        self.n = int(n)
        self.shape = (rows, cols)
        self.positions = positions
        self.window: Window = (slice(r0, r1), slice(c0, c1))
        block_rows = np.arange(r0, r1 + 1)
        block_cols = np.arange(c0, c1 + 1)
        self.index = (
            (top[:, None, None] + block_rows[None, :, None]) * cols + (left[:, None, None] + block_cols[None, None, :])
        ).astype(np.int64)
        self.frac_row = frac_row.astype(np.float32)[:, None, None]
        self.frac_col = frac_col.astype(np.float32)[:, None, None]

    @property
    def n_positions(self) -> int:
        return int(self.index.shape[0])

    def extract(self, obj: np.ndarray, select: np.ndarray | slice = slice(None)) -> np.ndarray:
        """The window of every selected patch of ``obj`` (bilinear, separable): (B, h, w)."""
        block = obj.ravel()[self.index[select]]
        fr, fc = self.frac_row[select], self.frac_col[select]
        rows = block[:, :-1, :] + fr * (block[:, 1:, :] - block[:, :-1, :])
        return rows[:, :, :-1] + fc * (rows[:, :, 1:] - rows[:, :, :-1])

    def _spread(self, patches: np.ndarray, select: np.ndarray | slice) -> np.ndarray:
        """Transpose of the separable interpolation: (B, h, w) -> footprints (B, h+1, w+1)."""
        fr, fc = self.frac_row[select], self.frac_col[select]
        count, h, w = patches.shape
        rows = np.zeros((count, h, w + 1), dtype=patches.dtype)
        rows[:, :, :-1] = (1 - fc) * patches
        rows[:, :, 1:] += fc * patches
        block = np.zeros((count, h + 1, w + 1), dtype=patches.dtype)
        block[:, :-1, :] = (1 - fr) * rows
        block[:, 1:, :] += fr * rows
        return block

    def adjoint(self, patches: np.ndarray, select: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Sum of the selected (windowed) patches splatted back onto the canvas: the transpose of
        :meth:`extract`, overlaps included."""
        block = self._spread(patches, select)
        index = self.index[select].ravel()
        size = self.shape[0] * self.shape[1]
        if np.iscomplexobj(block):
            flat = np.bincount(index, block.real.ravel(), minlength=size) + 1j * np.bincount(
                index, block.imag.ravel(), minlength=size
            )
        else:
            flat = np.bincount(index, block.ravel(), minlength=size)
        return flat.reshape(self.shape)

    def add_adjoint(self, canvas: np.ndarray, patches: np.ndarray, select: np.ndarray) -> None:
        """``canvas += adjoint(patches, select)`` in place, for positions whose footprints do not
        overlap (a sparse set): then a plain indexed add is exact and much faster than a splat."""
        index = self.index[select]
        flat = canvas.reshape(-1)
        if not np.shares_memory(flat, canvas):
            raise ValueError("canvas: expected a C-contiguous array to update in place")
        flat[index] += self._spread(patches, select).astype(canvas.dtype, copy=False)
