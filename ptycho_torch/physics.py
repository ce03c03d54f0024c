"""The PtychoPINN forward model in torch, operator for operator the same as :mod:`ptycho.physics`.

Same names, same conventions (positions ``(x, y)`` in object pixels, x the column; pixel ``(r, c)`` of
an N x N patch centred at ``(x, y)`` samples the object at row ``y - N/2 + r`` and column
``x - N/2 + c``, bilinear, zero outside), differentiable, and batched: an object may carry leading
batch dimensions ``(G, H, W)`` with positions ``(G, P, 2)``. Tests hold every operator against the
numpy oracle to float32 tolerance.
"""

from __future__ import annotations

import torch

__all__ = [
    "bilinear_taps",
    "extract_patches",
    "illuminate",
    "propagate",
    "intensity",
    "forward_intensity",
    "forward_amplitude",
    "poisson_nll",
    "poisson_deviance",
    "TAPS",
]

# The four bilinear taps as (row step, column step); extraction and its adjoint (reassembly) share them.
TAPS: tuple[tuple[int, int], ...] = ((0, 0), (0, 1), (1, 0), (1, 1))


def bilinear_taps(
    positions: torch.Tensor, n: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integer top-left corners and fractional weights of every patch pixel.

    ``positions`` (..., 2) as (x, y). Returns ``(row0, col0, frac_row, frac_col)`` with ``row0`` and
    ``col0`` int64 of shape (..., N) and the fractions of shape (...). Computed in float64 so the
    floor agrees with the numpy oracle at exact integers.
    """
    if positions.shape[-1] != 2:
        raise ValueError(f"positions: expected shape (..., 2) as (x, y), got {tuple(positions.shape)}")
    pos = positions.to(torch.float64)
    start_col = pos[..., 0] - n / 2
    start_row = pos[..., 1] - n / 2
    base_col = torch.floor(start_col)
    base_row = torch.floor(start_row)
    offsets = torch.arange(n, device=positions.device)
    row0 = base_row.to(torch.int64)[..., None] + offsets
    col0 = base_col.to(torch.int64)[..., None] + offsets
    return row0, col0, start_row - base_row, start_col - base_col


def tap_weight(frac_row: torch.Tensor, frac_col: torch.Tensor, d_row: int, d_col: int) -> torch.Tensor:
    """Bilinear weight of tap ``(d_row, d_col)`` (shape of the fractions, float64)."""
    return (frac_row if d_row else 1 - frac_row) * (frac_col if d_col else 1 - frac_col)


def window_index(
    row0: torch.Tensor, col0: torch.Tensor, shape: tuple[int, int], batch: int | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Flat canvas indices of the (N+1) x (N+1) window every patch's four taps touch.

    A patch shifts rigidly, so its taps read (or write) the window at rows ``row0[0] .. row0[0]+N``
    and columns ``col0[0] .. col0[0]+N``; tap ``(dr, dc)`` is the window slice ``[dr:dr+N, dc:dc+N]``.
    Returns ``(index (..., N+1, N+1), inside)`` with ``inside`` the mask of window pixels on the
    canvas, or None when every pixel is (out-of-canvas pixels index 0 and must be masked).
    """
    m_rows, m_cols = shape
    n1 = row0.shape[-1] + 1
    steps = torch.arange(n1, device=row0.device)
    rows = row0[..., :1] + steps
    cols = col0[..., :1] + steps
    row_ok = (rows >= 0) & (rows < m_rows)
    col_ok = (cols >= 0) & (cols < m_cols)
    all_inside = bool(row_ok.all()) and bool(col_ok.all())
    if not all_inside:
        rows = rows.clamp(0, m_rows - 1)
        cols = cols.clamp(0, m_cols - 1)
    if batch is not None:
        group = torch.arange(batch, device=row0.device).view(batch, *([1] * (rows.dim() - 1)))
        rows = rows + group * m_rows  # flat index of (g, r, c) is (g * H + r) * W + c
    index = rows[..., :, None] * m_cols + cols[..., None, :]
    inside = None if all_inside else (row_ok[..., :, None] & col_ok[..., None, :])
    return index, inside


def _tap_weights(fr: torch.Tensor, fc: torch.Tensor, dtype: torch.dtype) -> list[torch.Tensor]:
    return [tap_weight(fr, fc, dr, dc).to(dtype)[..., None, None] for dr, dc in TAPS]


def extract_patches(obj: torch.Tensor, positions: torch.Tensor, n: int) -> torch.Tensor:
    """Bilinearly sample one N x N patch per position.

    ``obj`` (H, W) with ``positions`` (P, 2) -> (P, N, N); or batched ``obj`` (G, H, W) with
    ``positions`` (G, P, 2) -> (G, P, N, N).
    """
    if obj.dim() not in (2, 3):
        raise ValueError(f"object: expected (H, W) or (G, H, W), got shape {tuple(obj.shape)}")
    batch = obj.shape[0] if obj.dim() == 3 else None
    if batch is not None and (positions.dim() != 3 or positions.shape[0] != batch):
        raise ValueError(f"positions: expected ({batch}, P, 2) for a batched object, got {tuple(positions.shape)}")
    shape = (int(obj.shape[-2]), int(obj.shape[-1]))
    row0, col0, fr, fc = bilinear_taps(positions, n)
    index, inside = window_index(row0, col0, shape, batch)
    window = obj.reshape(-1)[index]
    if inside is not None:
        window = window * inside
    w = _tap_weights(fr, fc, window.real.dtype)
    return (
        w[0] * window[..., :n, :n]
        + w[1] * window[..., :n, 1:]
        + w[2] * window[..., 1:, :n]
        + w[3] * window[..., 1:, 1:]
    )


def splat_window(values: torch.Tensor, frac_row: torch.Tensor, frac_col: torch.Tensor) -> torch.Tensor:
    """The adjoint of the tap combination in :func:`extract_patches`: (..., N, N) -> (..., N+1, N+1)."""
    pad = torch.nn.functional.pad
    w = _tap_weights(frac_row, frac_col, values.real.dtype)
    return (
        pad(w[0] * values, (0, 1, 0, 1))
        + pad(w[1] * values, (1, 0, 0, 1))
        + pad(w[2] * values, (0, 1, 1, 0))
        + pad(w[3] * values, (1, 0, 1, 0))
    )


def illuminate(probe: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """Exit waves ``psi_i = P * O_i``."""
    return probe * patches


def propagate(psi: torch.Tensor) -> torch.Tensor:
    """Far field ``fftshift(fft2(psi, norm='ortho'))`` over the last two axes."""
    return torch.fft.fftshift(torch.fft.fft2(psi, norm="ortho"), dim=(-2, -1))


def intensity(field: torch.Tensor) -> torch.Tensor:
    """``|Psi|^2`` as ``real^2 + imag^2`` (no square root, so its gradient is defined at zero)."""
    return field.real**2 + field.imag**2


def forward_intensity(obj: torch.Tensor, probe: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Noise-free diffraction intensities for every scan position -> (P, N, N)."""
    n = int(probe.shape[-1])
    return intensity(propagate(illuminate(probe, extract_patches(obj, positions, n))))


def forward_amplitude(obj: torch.Tensor, probe: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Noise-free diffraction amplitudes ``|Psi|``."""
    return torch.sqrt(forward_intensity(obj, probe, positions))


def poisson_nll(lam: torch.Tensor, counts: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Poisson negative log-likelihood ``mean(lambda - k log(lambda + eps))`` (constant dropped)."""
    return torch.mean(lam - counts * torch.log(lam + eps))


def poisson_deviance(lam: torch.Tensor, counts: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Mean Poisson deviance ``2 (k log(k/lambda) - (k - lambda))``: zero for a perfect model."""
    lam = lam + eps
    safe_k = torch.where(counts > 0, counts, torch.ones_like(counts))
    term = torch.where(counts > 0, counts * torch.log(safe_k / lam), torch.zeros_like(counts))
    return torch.mean(2.0 * (term - (counts - lam)))
