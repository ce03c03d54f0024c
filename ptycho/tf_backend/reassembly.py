"""Reassembly in TensorFlow: patches splatted onto a canvas with the bilinear taps of
:mod:`ptycho.tf_backend.physics` (the adjoint of its extraction) and their weighted average (the
twin of :mod:`ptycho_torch.reassembly`; :mod:`ptycho.stitching` is the numpy reference).

The model merges a group's patches with :func:`reassemble_patches` (the overlap constraint, batched
``(B, P, N, N)``); a reconstruction stitches every predicted patch with :func:`reassemble_position`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ptycho.tf_backend.runtime import tf

# Private to the two modules: the taps and canvas indices extraction and splatting share.
from ptycho.tf_backend.physics import _as_float, _flat_indices, _tap_weights, _window, bilinear_taps

__all__ = ["splat_patches", "reassemble_patches", "reassemble_position"]


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
    """Sum of bilinearly splatted patches: the adjoint of :func:`ptycho.tf_backend.physics.extract_patches`
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
