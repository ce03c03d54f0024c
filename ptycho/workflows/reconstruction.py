"""A stitched reconstruction and its files, the same for every producer (TensorFlow, PyTorch, the
iterative reference): ``reconstruction.npz`` plus the amplitude and phase PNGs.

Backend-neutral and free of TensorFlow and torch, so the TensorFlow CLI writes exactly the same
artifacts without importing torch (the torch package imports torch on import).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.raw_data import RawData, write_npz_deterministic
from ptycho.stitching import canvas_shape_for

__all__ = [
    "Reconstruction", "canvas_shape_of", "reconstruction_metadata", "stitch_positions", "write_reconstruction", "PNG_NAMES",
    "save_png", "amplitude_image", "phase_image",
]

PNG_NAMES = ("reconstruction_amplitude.png", "reconstruction_phase.png")


@dataclass
class Reconstruction:
    """A stitched object and what produced it."""

    obj: np.ndarray
    positions: np.ndarray
    indices: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def amplitude(self) -> np.ndarray:
        return np.abs(self.obj).astype(np.float32)

    @property
    def phase(self) -> np.ndarray:
        return np.angle(self.obj).astype(np.float32)


def reconstruction_metadata(grouped: Any, cfg: Any, canvas: tuple[int, int], *, flip_x: bool, flip_y: bool,
                            transpose: bool) -> dict[str, Any]:
    """What every backend records of how a reconstruction was made (``Reconstruction.metadata``);
    ``grouped`` is the grouped data the network saw, ``cfg`` its ModelConfig."""
    return {
        "n_groups": int(len(grouped.X)),
        "gridsize": cfg.gridsize,
        "N": cfg.N,
        "canvas_shape": list(canvas),
        "flip_x": flip_x,
        "flip_y": flip_y,
        "transpose": transpose,
        "normalization_scale": float(grouped.scale),
    }


def canvas_shape_of(raw: RawData, n: int, M: int | None = None) -> tuple[int, int]:
    """Canvas of the stitched object: ``M x M`` if given, else the ground truth's shape when the data
    carry one (so the two compare pixel for pixel), else the smallest canvas holding every patch."""
    if M is not None:
        if M < n:
            raise ValueError(f"M: canvas side {M} is smaller than the patch size {n}")
        return (int(M), int(M))
    if raw.objectGuess is not None:
        return (int(raw.objectGuess.shape[0]), int(raw.objectGuess.shape[1]))
    return canvas_shape_for(raw.positions, n)


def stitch_positions(positions: np.ndarray, flip_x: bool = False, flip_y: bool = False) -> np.ndarray:
    """Scan positions mirrored within their own extent (``x -> x_min + x_max - x``, and y) for
    instruments whose axes run the other way; unchanged without flips."""
    out = np.array(positions, dtype=np.float64, copy=True)
    flat = out.reshape(-1, 2)
    if flip_x:
        flat[:, 0] = flat[:, 0].min() + flat[:, 0].max() - flat[:, 0]
    if flip_y:
        flat[:, 1] = flat[:, 1].min() + flat[:, 1].max() - flat[:, 1]
    return out


def save_png(path: Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 image as PNG, one pixel per array element (no axes, no figure),
    aside then renamed."""
    from PIL import Image

    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(rgb, mode="RGB").save(tmp, format="PNG")
    tmp.replace(path)


def amplitude_image(amplitude: np.ndarray) -> np.ndarray:
    """Grey levels from 0 to the largest amplitude."""
    hi = float(amplitude.max()) if amplitude.size else 0.0
    grey = np.clip(amplitude / (hi or 1.0), 0.0, 1.0)
    return np.repeat((grey * 255 + 0.5).astype(np.uint8)[..., None], 3, axis=-1)


def phase_image(phase: np.ndarray) -> np.ndarray:
    """Cyclic colours (hue = phase, -pi and pi meet), so wrapping shows no false edge."""
    from PIL import Image

    hue = ((np.asarray(phase, dtype=np.float64) + np.pi) / (2 * np.pi)) % 1.0
    hsv = np.stack([(hue * 255).astype(np.uint8), np.full(hue.shape, 200, np.uint8), np.full(hue.shape, 230, np.uint8)], -1)
    return np.asarray(Image.fromarray(hsv, mode="HSV").convert("RGB"))


def write_reconstruction(output_dir: Path, recon: Reconstruction, timings: dict[str, float] | None = None) -> dict[str, Path]:
    """``reconstruction.npz`` (complex object, amplitude, phase, positions, indices, metadata JSON),
    ``reconstruction_amplitude.png`` and ``reconstruction_phase.png``."""
    output_dir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    npz = write_npz_deterministic(
        output_dir / "reconstruction.npz",
        {
            "reconstruction": recon.obj.astype(np.complex64),
            "amplitude": recon.amplitude,
            "phase": recon.phase,
            "positions": recon.positions.astype(np.float64),
            "indices": recon.indices.astype(np.int64),
            "_metadata": np.array(json.dumps(recon.metadata, sort_keys=True)),
        },
    )
    amp_png = output_dir / PNG_NAMES[0]
    phase_png = output_dir / PNG_NAMES[1]
    save_png(amp_png, amplitude_image(recon.amplitude))
    save_png(phase_png, phase_image(recon.phase))
    if timings is not None:
        timings["png"] = time.perf_counter() - t
    return {"npz": npz, "amplitude_png": amp_png, "phase_png": phase_png}
