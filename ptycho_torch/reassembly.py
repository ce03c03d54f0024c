"""Native torch reassembly: predicted patches -> one object canvas (brief §5.3).

The adjoint of :func:`ptycho_torch.physics.extract_patches`: each patch is splatted onto the canvas
at its (sub-pixel) position with the four bilinear taps via ``index_add``, multiplied by a per-pixel
weight, and the canvas divided by the accumulated weight where it is positive. Matches the numpy
reference :func:`ptycho.stitching.reassemble_patches` to float32 tolerance; batched and
differentiable, so the model's overlap constraint uses the same code.
"""

from __future__ import annotations

import numpy as np
import torch

from ptycho_torch.physics import bilinear_taps, splat_window, window_index

__all__ = ["splat_patches", "reassemble_patches", "reassemble_patches_numpy_io", "WEIGHT_FLOOR"]

# Accumulated weight below which a canvas pixel counts as "not reached" (as in ptycho.stitching).
WEIGHT_FLOOR = 1e-12


def splat_patches(
    values: torch.Tensor, positions: torch.Tensor, canvas_shape: tuple[int, int]
) -> torch.Tensor:
    """Sum of bilinearly splatted patches (the adjoint of extraction).

    ``values`` (P, N, N) with ``positions`` (P, 2) -> (H, W); or batched (G, P, N, N) with (G, P, 2)
    -> (G, H, W). Pixels falling outside the canvas are dropped.
    """
    n = int(values.shape[-1])
    batch = int(values.shape[0]) if values.dim() == 4 else None
    rows, cols = int(canvas_shape[0]), int(canvas_shape[1])
    row0, col0, fr, fc = bilinear_taps(positions, n)
    index, inside = window_index(row0, col0, (rows, cols), batch)
    window = splat_window(values, fr, fc)
    if inside is not None:
        window = window * inside
    canvas = torch.zeros(rows * cols * (batch or 1), dtype=values.dtype, device=values.device)
    canvas = canvas.index_add(0, index.reshape(-1), window.reshape(-1))
    shape = (rows, cols) if batch is None else (batch, rows, cols)
    return canvas.reshape(shape)


def reassemble_patches(
    patches: torch.Tensor,
    positions: torch.Tensor,
    canvas_shape: tuple[int, int],
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Weighted average of ``patches`` placed at ``positions`` (as (x, y)); unreached pixels stay 0.

    Unbatched (P, N, N) + (P, 2) -> (H, W), or batched (G, P, N, N) + (G, P, 2) -> (G, H, W).
    ``weights`` (N, N) per patch pixel (default 1).
    """
    if patches.dim() not in (3, 4) or patches.shape[-1] != patches.shape[-2]:
        raise ValueError(f"patches: expected shape (P, N, N) or (G, P, N, N), got {tuple(patches.shape)}")
    if tuple(positions.shape) != (*patches.shape[:-2], 2):
        raise ValueError(f"positions: expected shape {(*patches.shape[:-2], 2)}, got {tuple(positions.shape)}")
    n = int(patches.shape[-1])
    real_dtype = patches.real.dtype if patches.is_complex() else patches.dtype
    if weights is None:
        weights = torch.ones((n, n), dtype=real_dtype, device=patches.device)
    weights = weights.to(device=patches.device, dtype=real_dtype)
    numerator = splat_patches(patches * weights, positions, canvas_shape)
    denominator = splat_patches(weights.expand(patches.shape), positions, canvas_shape)
    covered = denominator > WEIGHT_FLOOR
    safe = torch.where(covered, denominator, torch.ones_like(denominator))
    return torch.where(covered, numerator / safe, torch.zeros_like(numerator))


def reassemble_patches_numpy_io(
    patches: np.ndarray, positions: np.ndarray, canvas_shape: tuple[int, int], weights: np.ndarray | None = None
) -> np.ndarray:
    """:func:`reassemble_patches` on numpy arrays (float64/complex128 accumulation, float32 out),
    the drop-in for :func:`ptycho.stitching.reassemble_patches` on large stitching jobs."""
    tensor = torch.from_numpy(np.asarray(patches))
    tensor = tensor.to(torch.complex128 if tensor.is_complex() else torch.float64)
    w = None if weights is None else torch.from_numpy(np.asarray(weights, dtype=np.float64))
    out = reassemble_patches(tensor, torch.from_numpy(np.asarray(positions, dtype=np.float64)), canvas_shape, w)
    return out.numpy().astype(np.complex64 if out.is_complex() else np.float32)
