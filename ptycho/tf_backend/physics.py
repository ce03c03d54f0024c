"""TensorFlow implementation of the PtychoPINN physics operators and of the reassembly.

The operators carry the names of the numpy oracle (:mod:`ptycho.physics`, :mod:`ptycho.stitching`)
and follow its conventions exactly: positions are ``(x, y)`` in object pixels, x the column and y the
row; pixel ``(r, c)`` of an N x N patch centred at ``(x, y)`` samples the object at row
``y - N/2 + r`` and column ``x - N/2 + c`` with bilinear interpolation, zero outside the object.
Extraction and reassembly share :func:`bilinear_taps`, so one is the adjoint of the other.

Every operator works on a leading batch of objects as well, ``obj (B, H, W)`` with ``positions
(B, P, 2)``, which is what the model's gridsize > 1 overlap constraint needs (a canvas per group).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from ptycho.tf_runtime import tf

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
    "splat_patches",
    "reassemble_patches",
    "reassemble_position",
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


def _accumulate(values: tf.Tensor, segments: tf.Tensor, count: tf.Tensor, differentiable: bool) -> tf.Tensor:
    """Sum ``values`` into ``count`` bins. ``unsorted_segment_sum`` has a gradient; ``bincount`` has
    none but is several times faster on a CPU (stitching thousands of patches)."""
    if differentiable:
        return tf.math.unsorted_segment_sum(values, segments, count)
    if values.dtype.is_complex:
        real = tf.math.bincount(segments, weights=tf.math.real(values), minlength=count, maxlength=count)
        imag = tf.math.bincount(segments, weights=tf.math.imag(values), minlength=count, maxlength=count)
        return tf.complex(real, imag)
    return tf.math.bincount(segments, weights=values, minlength=count, maxlength=count)


def splat_patches(
    values: tf.Tensor,
    positions: tf.Tensor | np.ndarray,
    canvas_shape: Sequence[int],
    differentiable: bool = True,
) -> tf.Tensor:
    """Sum of bilinearly splatted patches: the adjoint of :func:`extract_patches`
    (:func:`ptycho.physics.adjoint_extract`); pixels falling outside the canvas are dropped.

    ``values (P, N, N)`` with ``positions (P, 2)`` -> (H, W); or batched ``(B, P, N, N)`` with
    ``(B, P, 2)`` -> (B, H, W). Differentiable, unless ``differentiable=False`` picks the faster
    gradient-free accumulation (stitching).
    """
    values = tf.convert_to_tensor(values)
    batched = values.shape.rank == 4
    if values.shape.rank not in (3, 4) or values.shape[-1] != values.shape[-2]:
        raise ValueError(f"patches: expected shape (P, N, N) or (B, P, N, N), got {values.shape}")
    n = int(values.shape[-1])
    positions = _as_float(positions, tf.float64 if isinstance(positions, np.ndarray) else tf.convert_to_tensor(positions).dtype)
    if not batched:
        values = values[None]
        positions = positions[None]
    rows, cols = int(canvas_shape[0]), int(canvas_shape[1])
    batch = tf.shape(values)[0]
    cells = rows * cols
    # The four taps combined into one (N+1) x (N+1) window per patch, placed at its integer corner;
    # out-of-canvas pixels go to one dump segment per canvas, dropped afterwards.
    row0, col0, fr, fc = bilinear_taps(positions, n)
    window = None
    for d_row, d_col, tap in _tap_weights(fr, fc, values.dtype):
        term = tap * _window(values, d_row, d_col)
        window = term if window is None else window + term
    segments = batch * (cells + 1)
    batch_base = (tf.range(batch, dtype=tf.int32) * (cells + 1))[:, None, None, None]
    flat, inside = _flat_indices(row0, col0, n + 1, rows, cols)
    segment = tf.reshape(tf.broadcast_to(tf.where(inside, flat, cells) + batch_base, tf.shape(window)), [-1])
    canvas = _accumulate(tf.reshape(window, [-1]), segment, segments, differentiable)
    out = tf.reshape(tf.reshape(canvas, [batch, cells + 1])[:, :cells], [batch, rows, cols])
    return out if batched else out[0]


def reassemble_patches(
    patches: tf.Tensor,
    positions: tf.Tensor | np.ndarray,
    canvas_shape: Sequence[int],
    weights: tf.Tensor | np.ndarray | None = None,
    differentiable: bool = True,
) -> tf.Tensor:
    """Weighted average of patches placed at positions: :func:`splat_patches` of the weighted
    patches divided by the splatted weights where positive (zero elsewhere).

    ``patches (P, N, N)`` with ``positions (P, 2)`` -> (H, W); or batched ``(B, P, N, N)`` with
    ``(B, P, 2)`` -> (B, H, W). Works in the patches' dtype (differentiable: the model uses it to
    merge a group's patches).
    """
    patches = tf.convert_to_tensor(patches)
    if patches.shape.rank not in (3, 4) or patches.shape[-1] != patches.shape[-2]:
        raise ValueError(f"patches: expected shape (P, N, N) or (B, P, N, N), got {patches.shape}")
    n = int(patches.shape[-1])
    real = patches.dtype.real_dtype
    w = tf.ones((n, n), real) if weights is None else tf.cast(tf.convert_to_tensor(weights), real)
    numerator = splat_patches(patches * tf.cast(w, patches.dtype), positions, canvas_shape, differentiable)
    denominator = splat_patches(tf.broadcast_to(w, tf.shape(patches)), positions, canvas_shape, differentiable)
    covered = denominator > 1e-12
    safe = tf.where(covered, denominator, tf.ones_like(denominator))
    return tf.where(covered, numerator / tf.cast(safe, patches.dtype), tf.zeros_like(numerator))


def reassemble_position(
    patches: tf.Tensor | np.ndarray,
    positions: np.ndarray,
    canvas_shape: Sequence[int] | None = None,
    weights: np.ndarray | None = None,
    M: int | None = None,
) -> tf.Tensor:
    """Stitch predicted patches into one object: :func:`reassemble_patches` accumulated in double
    precision (thousands of overlapping patches), returned as complex64/float32 like the numpy
    reference :func:`ptycho.stitching.reassemble_patches`, which it matches to 1e-5.

    Also the legacy form ``reassemble_position(obj, global_offsets, M=20)`` (ptychodus): patches in
    the legacy layout (B, N, N, C) with positions (B, 1, 2, C) (:mod:`ptycho.loader`), each
    patch's central ``M x M`` kept. Without ``canvas_shape`` the canvas is the smallest one anchored
    at object pixel (0, 0) that holds every patch (:func:`ptycho.stitching.canvas_shape_for`), so
    the result is in the scan's object-pixel frame.
    """
    from ptycho.stitching import canvas_shape_for, patch_weights

    if np.ndim(patches) == 4 and np.ndim(positions) == 4:
        patches, positions = _from_legacy_layout(patches, positions)
    patches = tf.convert_to_tensor(patches)
    if patches.shape.rank == 3 and canvas_shape is None:
        canvas_shape = canvas_shape_for(np.asarray(positions, dtype=np.float64).reshape(-1, 2), int(patches.shape[-1]))
    if M is not None and patches.shape.rank == 3:
        crop = patch_weights(int(patches.shape[-1]), crop=int(M))
        weights = crop if weights is None else np.asarray(weights, np.float64) * crop
    wide = tf.complex128 if patches.dtype.is_complex else tf.float64
    narrow = tf.complex64 if patches.dtype.is_complex else tf.float32
    positions = np.asarray(positions, dtype=np.float64)
    if patches.shape.rank != 3 or positions.shape != (patches.shape[0], 2):
        raise ValueError(
            f"reassemble_position: expected patches (P, N, N) and positions (P, 2), got {patches.shape} and {positions.shape}"
        )
    if weights is not None:
        patches, positions, weights = _crop_to_weighted_window(patches, positions, np.asarray(weights, np.float64))
    out = reassemble_patches(tf.cast(patches, wide), positions, canvas_shape, weights, differentiable=False)
    return tf.cast(out, narrow)


def _from_legacy_layout(patches: tf.Tensor | np.ndarray, positions: np.ndarray) -> tuple[tf.Tensor, np.ndarray]:
    """(B, N, N, C) patches and (B, 1, 2, C) positions -> (B*C, N, N) and (B*C, 2)."""
    positions = np.asarray(positions, dtype=np.float64)
    shape = tuple(np.shape(patches))
    b, c = shape[0], shape[-1]
    if positions.shape != (b, 1, 2, c):
        raise ValueError(
            f"reassemble_position: legacy positions must be (B, 1, 2, C) = ({b}, 1, 2, {c}) for patches {shape}, got {positions.shape}"
        )
    flat = tf.reshape(tf.transpose(tf.convert_to_tensor(patches), [0, 3, 1, 2]), (b * c, shape[1], shape[2]))
    return flat, np.transpose(positions[:, 0], (0, 2, 1)).reshape(b * c, 2)


def _crop_to_weighted_window(
    patches: tf.Tensor, positions: np.ndarray, weights: np.ndarray
) -> tuple[tf.Tensor, np.ndarray, np.ndarray]:
    """Drop the patch border where the weight is zero (it adds nothing to either sum): the square
    window ``[lo, lo + m)`` holding every positive weight becomes an ``m x m`` patch whose centre
    moves by ``lo + m/2 - N/2``. With the model's central-N/2 weights this quarters the work."""
    n = int(patches.shape[-1])
    rows, cols = np.nonzero(weights > 0)
    if rows.size == 0:
        return patches, positions, weights
    lo = int(min(rows.min(), cols.min()))
    hi = int(max(rows.max(), cols.max())) + 1
    if lo == 0 and hi == n:
        return patches, positions, weights
    m = hi - lo
    shift = lo + m / 2 - n / 2
    return patches[:, lo:hi, lo:hi], positions + shift, weights[lo:hi, lo:hi]
