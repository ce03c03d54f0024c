"""The legacy data container ``ptycho.loader.load`` and the legacy Keras input layout (ptychodus).

ptychodus's PtychoPINN reconstructor groups a scan with ``RawData.generate_grouped_data``, wraps
it with :func:`load`, and feeds ``model.predict([X * intensity_scale, local_offsets])``. This
module is that edge over the library's :class:`~ptycho.raw_data.GroupedData`: the same arrays in
the legacy channel-last layout, and their conversion back to the model's (B, C, N, N) layout.

Legacy layout (C = gridsize**2 patches per group, B groups):

- ``X`` (B, N, N, C) float32: normalised diffraction amplitudes (the model's input scale);
- ``local_offsets`` (B, 1, 2, C) float64: each patch's (x, y) offset from its group's centre;
- ``global_offsets`` (B, 1, 2, C) float64: each patch's (x, y) scan position in object pixels
  (absolute, so :func:`ptycho.tf_backend.reassembly.reassemble_position` places every patch of every group).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ptycho.probe import single_probe
from ptycho.raw_data import GroupedData

__all__ = ["PtychoDataContainer", "load", "model_inputs_from_legacy", "legacy_patches"]


@dataclass(frozen=True)
class PtychoDataContainer:
    """One grouped scan in the legacy layout (see the module docstring), with its source."""

    X: np.ndarray
    local_offsets: np.ndarray
    global_offsets: np.ndarray
    probe: np.ndarray
    grouped: GroupedData

    def __len__(self) -> int:
        return int(self.X.shape[0])


def load(
    cb: Callable[[], GroupedData],
    probeGuess: np.ndarray,
    which: str | None = None,
    create_split: bool = False,
) -> PtychoDataContainer:
    """Wrap the grouped data ``cb()`` returns (from ``RawData.generate_grouped_data``).

    ``create_split`` (a train/test split of one scan) is not implemented and is refused, as is a
    ``which`` other than None without it; ptychodus passes ``which=None, create_split=False``.
    """
    if create_split:
        raise ValueError("load: create_split=True (splitting one scan into train/test) is not implemented; pass False")
    if which is not None:
        raise ValueError(f"load: which={which!r} applies only with create_split=True; pass which=None")
    grouped = cb()
    if not isinstance(grouped, GroupedData):
        raise TypeError(
            f"load: the callback must return RawData.generate_grouped_data(...)'s GroupedData, got {type(grouped).__name__}"
        )
    probe = single_probe(probeGuess)
    if probe.shape != (grouped.N, grouped.N):
        raise ValueError(f"probeGuess: shape {probe.shape} does not match the {grouped.N} x {grouped.N} patterns")
    local = np.transpose(grouped.offsets, (0, 2, 1))[:, None]  # (B, C, 2) -> (B, 1, 2, C)
    absolute = grouped.centers[:, None, :] + grouped.offsets  # (B, C, 2)
    return PtychoDataContainer(
        X=np.ascontiguousarray(np.transpose(grouped.X, (0, 2, 3, 1))),
        local_offsets=np.ascontiguousarray(local, dtype=np.float64),
        global_offsets=np.ascontiguousarray(np.transpose(absolute, (0, 2, 1))[:, None], dtype=np.float64),
        probe=probe,
        grouped=grouped,
    )


def model_inputs_from_legacy(inputs: Sequence[Any] | Any) -> tuple[np.ndarray, np.ndarray]:
    """``[X (B, N, N, C), local_offsets (B, 1, 2, C)]`` -> ``(x (B, C, N, N), offsets (B, C, 2))``."""
    if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
        raise ValueError(
            "predict: expected the legacy input [X (B, N, N, C), local_offsets (B, 1, 2, C)], "
            f"got {type(inputs).__name__}{'' if not isinstance(inputs, (list, tuple)) else f' of {len(inputs)}'}"
        )
    x = np.asarray(inputs[0], dtype=np.float32)
    offsets = np.asarray(inputs[1], dtype=np.float64)
    if x.ndim != 4 or x.shape[1] != x.shape[2]:
        raise ValueError(f"predict: X: expected (B, N, N, C), got shape {x.shape}")
    b, _, _, c = x.shape
    if offsets.shape != (b, 1, 2, c):
        raise ValueError(f"predict: local_offsets: expected shape ({b}, 1, 2, {c}) to match X {x.shape}, got {offsets.shape}")
    return np.ascontiguousarray(np.transpose(x, (0, 3, 1, 2))), np.ascontiguousarray(np.transpose(offsets[:, 0], (0, 2, 1)))


def legacy_patches(amplitude: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """Object patches (B, C, N, N) amplitude and phase -> complex64 (B, N, N, C), the legacy output."""
    return np.transpose(amplitude * np.exp(1j * phase), (0, 2, 3, 1)).astype(np.complex64)
