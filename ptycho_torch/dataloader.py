"""Data access for the PyTorch backend: the FORMAT-001 guarded entry points of the brief (§4.2)
and a ``Dataset`` over grouped patterns. The layout logic itself lives in :mod:`ptycho.raw_data`,
shared with every other reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ptycho.npz_limits import check_npz
from ptycho.raw_data import DIFFRACTION_KEYS, DataContractError, GroupedData, canonical_diffraction
from ptycho.raw_data import npz_headers as _npz_headers

__all__ = ["npz_headers", "_get_diffraction_stack", "GroupedDiffractionDataset", "grouped_loader"]


def npz_headers(path: Path | str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Array shapes and dtypes of an NPZ without loading the data (for large files)."""
    return _npz_headers(path)


def _get_diffraction_stack(path: Path | str) -> np.ndarray:
    """The diffraction stack of ``path`` as canonical (n, H, W) float32, legacy layouts transposed."""
    path = Path(path)
    headers = check_npz(path)  # bounded: np.load below allocates what the headers declare
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


class GroupedDiffractionDataset(torch.utils.data.Dataset):
    """Groups of normalised diffraction amplitudes and their offsets, as the network consumes them.

    Item ``i`` is ``(x (C, N, N) float32, offsets (C, 2) float64)`` of group ``i`` of a
    :class:`ptycho.raw_data.GroupedData`; the offsets stay float64 for the sub-pixel tap arithmetic.
    """

    def __init__(self, grouped: GroupedData):
        self.x = torch.from_numpy(np.ascontiguousarray(grouped.X, dtype=np.float32))
        self.offsets = torch.from_numpy(np.ascontiguousarray(grouped.offsets, dtype=np.float64))
        if self.x.shape[:2] != self.offsets.shape[:2]:
            raise ValueError(f"grouped data: X {tuple(self.x.shape)} and offsets {tuple(self.offsets.shape)} disagree")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index], self.offsets[index]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # Batched fetch (one indexing op per batch instead of a per-item collate).
        idx = torch.as_tensor(indices, dtype=torch.long)
        return self.x[idx], self.offsets[idx]


def _keep_batch(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return batch


def grouped_loader(
    grouped: GroupedData, batch_size: int, shuffle: bool, seed: int | None = None
) -> torch.utils.data.DataLoader:
    """A single-process loader over :class:`GroupedDiffractionDataset` (the data sit in memory; worker
    processes would only add start-up time), shuffled with a seeded generator when asked."""
    generator = None
    if shuffle:
        generator = torch.Generator()
        generator.manual_seed(0 if seed is None else int(seed))
    return torch.utils.data.DataLoader(
        GroupedDiffractionDataset(grouped),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        num_workers=0,
        collate_fn=_keep_batch,
        drop_last=False,
    )
