"""A network's reconstruction of a scan, written once for both backends, and its files.

:func:`reconstruct_scan` is the sequence every backend runs: group the scan, predict object patches
(the backend's :class:`PatchModel` hook), stitch them (:func:`stitch_patches`: weights, each patch's
phase offset synchronised, then the backend's reassembly) and record how it was made. The backends
supply only what needs their framework, the network forward and the reassembly on the canvas.

A :class:`Reconstruction` has the same files whatever produced it (TensorFlow, PyTorch, the iterative
reference): ``reconstruction.npz`` plus the amplitude and phase PNGs.

Backend-neutral and free of TensorFlow and torch, so the TensorFlow CLI writes exactly the same
artifacts without importing torch (the torch package imports torch on import).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from ptycho.raw_data import GroupedData, RawData, generate_grouped_data, write_npz_deterministic
from ptycho.stitching import canvas_shape_for, correct_phase_ramp, patch_weights, synchronise_patch_phases

__all__ = [
    "PatchModel", "reconstruct_scan", "stitch_patches", "deviance_of_prediction",
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


class PatchModel(Protocol):
    """What :func:`reconstruct_scan` needs of a backend: a trained network's forward pass and the
    framework's reassembly. ``cfg`` is the network's ModelConfig (its N and gridsize)."""

    cfg: Any

    def predict(self, x: np.ndarray, offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Object amplitude and phase patches (B, C, N, N) float32 for normalised diffraction ``x``
        (B, C, N, N); with the group ``offsets`` (B, C, 2) also the predicted normalised diffraction
        amplitudes ``A_hat`` (B, C, N, N) from the same pass, else None."""
        ...

    def reassemble(self, patches: np.ndarray, positions: np.ndarray, canvas_shape: tuple[int, int],
                   weights: np.ndarray) -> np.ndarray:
        """``reassemble_patches``: the weighted average of ``patches`` (P, m, m) complex placed at
        ``positions`` (P, 2) float64 (x, y) on a ``canvas_shape`` canvas with ``weights`` (m, m),
        accumulated in double precision -> complex64 (H, W)."""
        ...


def stitch_patches(
    patches: np.ndarray,
    positions: np.ndarray,
    probe: np.ndarray,
    canvas_shape: tuple[int, int],
    crop: int | None,
    reassemble: Callable[[np.ndarray, np.ndarray, tuple[int, int], np.ndarray], np.ndarray],
    *,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    synchronise_phases: bool = True,
) -> np.ndarray:
    """Stitch complex ``patches`` (..., N, N) at global ``positions`` (..., 2) into one object (H, W)
    complex64 with a backend's ``reassemble`` (:meth:`PatchModel.reassemble`).

    Weights: :func:`ptycho.stitching.patch_weights` (probe intensity, zero outside the central
    ``crop`` window, the predicted region). ``transpose`` swaps each patch's rows and columns;
    ``flip_x``/``flip_y`` mirror the positions. With ``synchronise_phases`` each patch's own phase
    offset is removed first (:func:`ptycho.stitching.synchronise_patch_phases`). Corrections of the
    individual patches belong here, before the reassembly, so both backends make them.
    """
    n = patches.shape[-1]
    flat = np.asarray(patches).reshape(-1, n, n)
    if transpose:
        flat = np.swapaxes(flat, -1, -2)
    pos = stitch_positions(np.asarray(positions).reshape(-1, 2), flip_x, flip_y)
    weights = patch_weights(n, probe, crop=crop)
    if synchronise_phases:
        flat = synchronise_patch_phases(flat, pos, weights)
    if crop is not None and (n - crop) % 2 == 0:
        # Outside the crop window the weight is zero: reassemble only the window. Its pixel r' is the
        # full patch's pixel r' + (n - crop)/2, so with the same centre the taps land on the same pixels.
        lo = (n - crop) // 2
        flat = flat[:, lo : lo + crop, lo : lo + crop]
        weights = weights[lo : lo + crop, lo : lo + crop]
    return reassemble(np.ascontiguousarray(flat), pos, canvas_shape, weights)


def deviance_of_prediction(predicted: np.ndarray, grouped: GroupedData) -> float:
    """Mean Poisson deviance of predicted normalised amplitudes (B, C, N, N) against the measured
    counts: ``lambda = (A_hat / scale)^2`` against ``k = counts_amplitude^2``. Zero for a perfect
    model; the figure by which "training did something" is judged."""
    from ptycho.physics import poisson_deviance

    lam = (np.asarray(predicted, dtype=np.float64) / grouped.scale) ** 2
    counts = grouped.counts_amplitude.astype(np.float64) ** 2
    return poisson_deviance(lam, counts)


def reconstruct_scan(
    model: PatchModel,
    raw: RawData,
    *,
    neighbor_count: int | None = None,
    n_images: int | None = None,
    seed: int = 0,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int | None = None,
    timings: dict[str, float] | None = None,
    with_deviance: bool = True,
    correct_ramp: bool = True,
) -> tuple[Reconstruction, GroupedData]:
    """Group ``raw`` with the model's N and gridsize from ``neighbor_count`` nearest neighbours
    (None: the legacy ``params.cfg['neighbor_count']``), predict, stitch (docs/architecture.md §10),
    and record how (:func:`reconstruction_metadata`, the Poisson deviance of the prediction with
    ``with_deviance``). Returns the reconstruction and the grouped data the network saw. With
    ``correct_ramp`` the stitched object's phase ramp is removed as the measured patterns show it
    (:func:`ptycho.stitching.correct_phase_ramp`), the gradient recorded in the metadata.

    ``timings`` receives ``grouping``, ``inference`` and ``stitching`` seconds. A scan the model
    cannot group (too few positions for its gridsize, another N) or a canvas ``M`` smaller than a
    patch raises :class:`ptycho.cli_arguments.UsageError` (a ValueError) naming them.
    """
    from ptycho.architecture import predicted_size
    from ptycho.cli_arguments import UsageError

    timings = timings if timings is not None else {}
    cfg = model.cfg
    t = time.perf_counter()
    try:
        grouped = generate_grouped_data(
            raw, n_groups=n_images, neighbor_count=neighbor_count, seed=seed, N=cfg.N, gridsize=cfg.gridsize
        )
    except ValueError as exc:
        raise UsageError(f"{raw.source or 'data'}: {exc}") from None
    timings["grouping"] = time.perf_counter() - t
    t = time.perf_counter()
    amp, phase, predicted = model.predict(grouped.X, grouped.offsets if with_deviance else None)
    timings["inference"] = time.perf_counter() - t
    t = time.perf_counter()
    positions = grouped.centers[:, None, :] + grouped.offsets
    try:
        canvas = canvas_shape_of(raw, cfg.N, M)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    obj = stitch_patches(
        amp * np.exp(1j * phase), positions, raw.probeGuess, canvas, predicted_size(cfg), model.reassemble,
        flip_x=flip_x, flip_y=flip_y, transpose=transpose,
    )
    # Corrections of the stitched object as a whole (both backends) belong here, after stitch_patches.
    # The phase ramp the overlaps cannot see, measured by the patterns' centroids (docs/architecture.md §10).
    ramp = None
    if correct_ramp:
        obj, ramp = correct_phase_ramp(
            obj, raw.probeGuess, stitch_positions(positions.reshape(-1, 2), flip_x, flip_y), grouped.X, transpose=transpose
        )
        obj = obj.astype(np.complex64)
    timings["stitching"] = time.perf_counter() - t
    meta = reconstruction_metadata(grouped, cfg, canvas, flip_x=flip_x, flip_y=flip_y, transpose=transpose)
    if ramp is not None:
        meta["phase_ramp_removed_rad_per_px"] = [round(float(g), 7) for g in ramp]
    if with_deviance:
        meta["poisson_deviance"] = deviance_of_prediction(predicted, grouped)
    return Reconstruction(obj, positions.reshape(-1, 2), grouped.indices.reshape(-1), meta), grouped


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
