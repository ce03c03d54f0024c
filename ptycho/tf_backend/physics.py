"""The PtychoPINN forward model in TensorFlow, operator for operator the same as :mod:`ptycho.physics`
(the twin of :mod:`ptycho_torch.physics`); the reassembly built on the same taps is in
:mod:`ptycho.tf_backend.reassembly`.

The operators carry the names of the numpy oracle and follow its conventions exactly: positions
are ``(x, y)`` in object pixels, x the column and y the row; pixel ``(r, c)`` of an N x N patch
centred at ``(x, y)`` samples the object at row ``y - N/2 + r`` and column ``x - N/2 + c`` with
bilinear interpolation, zero outside the object.
Extraction and reassembly share :func:`bilinear_taps`, so one is the adjoint of the other.

Every operator works on a leading batch of objects as well, ``obj (B, H, W)`` with ``positions
(B, P, 2)``, which is what the model's gridsize > 1 overlap constraint needs (a canvas per group).
"""

from __future__ import annotations

import math

import numpy as np
from ptycho.tf_backend.runtime import tf

__all__ = [
    "bilinear_taps",
    "extract_patches",
    "illuminate",
    "propagate",
    "intensity",
    "amplitude",
    "forward_intensity",
    "forward_amplitude",
    "poisson_nll",
    "pad_center",
]


def _as_float(positions: tf.Tensor | np.ndarray, dtype: tf.DType) -> tf.Tensor:
    if isinstance(positions, np.ndarray):
        # Taps from numpy positions are computed in float64, like the oracle (sub-pixel exactness).
        positions = tf.constant(positions, dtype=tf.float64)
    positions = tf.convert_to_tensor(positions)
    return tf.cast(positions, dtype) if positions.dtype != dtype else positions


def bilinear_taps(positions: tf.Tensor | np.ndarray, n: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Integer first row/column of every patch and the fractional weights.

    ``positions (..., P, 2)`` as (x, y) -> ``(row0, col0, frac_row, frac_col)``: ``row0``/``col0``
    have shape (..., P) (int32; a patch shifts rigidly, pixel ``r`` reads rows ``row0 + r`` and
    ``row0 + r + 1``), the fractions (..., P) in the positions' float dtype.
    """
    positions = tf.convert_to_tensor(positions)
    start_col = positions[..., 0] - n / 2
    start_row = positions[..., 1] - n / 2
    base_col = tf.floor(start_col)
    base_row = tf.floor(start_row)
    return (
        tf.cast(base_row, tf.int32),
        tf.cast(base_col, tf.int32),
        start_row - base_row,
        start_col - base_col,
    )


def _tap_weights(frac_row: tf.Tensor, frac_col: tf.Tensor, dtype: tf.DType) -> list[tuple[int, int, tf.Tensor]]:
    """The four bilinear taps ``(d_row, d_col, weight (..., P, 1, 1))`` in ``dtype``."""
    real = dtype.real_dtype
    fr = tf.cast(frac_row, real)[..., None, None]
    fc = tf.cast(frac_col, real)[..., None, None]
    taps = [(0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)]
    return [(dr, dc, tf.cast(w, dtype) if dtype.is_complex else w) for dr, dc, w in taps]


def _flat_indices(row0: tf.Tensor, col0: tf.Tensor, n: int, rows: int, cols: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Flat index ``r * cols + c`` into one canvas of every patch pixel (..., P, N, N), and the mask
    of pixels inside the canvas."""
    offsets = tf.range(n, dtype=tf.int32)
    r = row0[..., None] + offsets  # (..., P, N)
    c = col0[..., None] + offsets
    r_ok = (r >= 0) & (r < rows)
    c_ok = (c >= 0) & (c < cols)
    inside = r_ok[..., :, None] & c_ok[..., None, :]
    flat = tf.clip_by_value(r, 0, rows - 1)[..., :, None] * cols + tf.clip_by_value(c, 0, cols - 1)[..., None, :]
    return flat, inside


def _window(values: tf.Tensor, d_row: int, d_col: int) -> tf.Tensor:
    """Place (..., N, N) at offset (d_row, d_col) inside a zero (..., N+1, N+1) window."""
    pad = [[0, 0]] * (values.shape.rank - 2) + [[d_row, 1 - d_row], [d_col, 1 - d_col]]
    return tf.pad(values, pad)


def extract_patches(obj: tf.Tensor, positions: tf.Tensor | np.ndarray, n: int) -> tf.Tensor:
    """Bilinearly sample one N x N patch per scan position, zero outside the object.

    ``obj (H, W)`` with ``positions (P, 2)`` -> (P, N, N); or batched ``obj (B, H, W)`` with
    ``positions (B, P, 2)`` -> (B, P, N, N) (each batch entry samples its own object).

    One gather of the (N+1) x (N+1) window at the integer corner, then the four taps as shifted
    slices of it (a patch shifts rigidly, so the taps share that window).
    """
    obj = tf.convert_to_tensor(obj)
    batched = obj.shape.rank == 3
    if obj.shape.rank not in (2, 3):
        raise ValueError(f"object: expected shape (H, W) or (B, H, W), got {obj.shape}")
    positions = _as_float(positions, tf.float64 if isinstance(positions, np.ndarray) else tf.convert_to_tensor(positions).dtype)
    if not batched:
        obj = obj[None]
        positions = positions[None]
    rows, cols = obj.shape[-2], obj.shape[-1]
    row0, col0, fr, fc = bilinear_taps(positions, n)
    batch_base = (tf.range(tf.shape(obj)[0], dtype=tf.int32) * (rows * cols))[:, None, None, None]
    flat, inside = _flat_indices(row0, col0, n + 1, rows, cols)
    window = tf.gather(tf.reshape(obj, [-1]), flat + batch_base) * tf.cast(inside, obj.dtype)
    out = None
    for d_row, d_col, weight in _tap_weights(fr, fc, obj.dtype):
        term = weight * window[..., d_row : d_row + n, d_col : d_col + n]
        out = term if out is None else out + term
    return out if batched else out[0]


def illuminate(probe: tf.Tensor, patches: tf.Tensor) -> tf.Tensor:
    """Exit waves ``psi_i = P * O_i``."""
    return tf.cast(probe, patches.dtype) * patches


def propagate(psi: tf.Tensor) -> tf.Tensor:
    """Far field ``fftshift(fft2(psi, norm='ortho'))`` over the last two axes."""
    psi = tf.convert_to_tensor(psi)
    n_rows, n_cols = psi.shape[-2], psi.shape[-1]
    scale = tf.cast(1.0 / math.sqrt(n_rows * n_cols), psi.dtype)
    return tf.signal.fftshift(tf.signal.fft2d(psi) * scale, axes=(-2, -1))


def intensity(field: tf.Tensor) -> tf.Tensor:
    """``|Psi|^2``."""
    return tf.math.square(tf.math.real(field)) + tf.math.square(tf.math.imag(field))


def amplitude(field: tf.Tensor) -> tf.Tensor:
    """``|Psi|``."""
    return tf.math.abs(field)


def forward_intensity(obj: tf.Tensor, probe: tf.Tensor, positions: tf.Tensor | np.ndarray) -> tf.Tensor:
    """Noise-free diffraction intensities for every scan position -> (P, N, N)."""
    n = int(probe.shape[-1])
    return intensity(propagate(illuminate(probe, extract_patches(obj, positions, n))))


def forward_amplitude(obj: tf.Tensor, probe: tf.Tensor, positions: tf.Tensor | np.ndarray) -> tf.Tensor:
    return tf.sqrt(forward_intensity(obj, probe, positions))


def poisson_nll(lam: tf.Tensor, counts: tf.Tensor, eps: float = 1e-6) -> tf.Tensor:
    """Poisson negative log-likelihood ``mean(lambda - k log(lambda + eps))`` (constant dropped)."""
    counts = tf.cast(counts, lam.dtype)
    return tf.reduce_mean(lam - counts * tf.math.log(lam + eps))


def pad_center(patches: tf.Tensor, n: int) -> tf.Tensor:
    """Zero-pad the last two axes symmetrically from ``m x m`` to ``n x n`` (``n - m`` even)."""
    m = int(patches.shape[-1])
    if (n - m) % 2 or n < m:
        raise ValueError(f"pad_center: cannot centre a {m} x {m} patch in {n} x {n}")
    lo = (n - m) // 2
    pad = [[0, 0]] * (patches.shape.rank - 2) + [[lo, n - m - lo], [lo, n - m - lo]]
    return tf.pad(patches, pad)
