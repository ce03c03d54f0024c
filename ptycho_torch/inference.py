"""Inference with a trained torch model, and the ``python -m ptycho_torch.inference`` CLI.

The model directory (manifest + ``checkpoints/last.ckpt``) is loaded without Lightning (plain torch
is enough to run a network, and saves seconds per process); :func:`reconstruct` predicts object
patches for the scan and stitches them into one complex object. The CLI is ``ptycho-infer
--backend pytorch`` (:func:`ptycho.cli.run_infer`), which writes ``reconstruction.npz`` plus the
amplitude and phase PNGs (one image pixel per array element, no figure chrome).

Exit codes: 0 success; 2 a user's mistake (missing or invalid file, bad value, a model of the other
backend), reported as one line on stderr; 1 an unexpected internal error (with traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

_T_START = time.perf_counter()

import numpy as np  # noqa: E402  (after the start stamp: the CLI reports its import time)

from ptycho.workflows.reconstruction import (  # noqa: E402 - one writer for every backend
    Reconstruction,
    canvas_shape_of,
    reconstruction_metadata,
    write_reconstruction,
)
from ptycho.cli_arguments import UsageError  # noqa: E402
from ptycho.workflows.reconstruction import stitch_positions as transform_positions  # noqa: E402

__all__ = [
    "UsageError",
    "select_device",
    "predict_object_patches",
    "predict_diffraction",
    "poisson_deviance_on",
    "stitch_reconstruction",
    "canvas_shape_of",
    "Reconstruction",
    "reconstruct",
    "write_reconstruction",
    "main",
]


def select_device(accelerator: str) -> "torch.device":  # noqa: F821
    """The torch device for ``accelerator`` (cpu, cuda, gpu, auto); never a GPU unless asked for.

    ``auto`` takes a visible CUDA device, so ``CUDA_VISIBLE_DEVICES=""`` always means the CPU.
    """
    import torch

    accelerator = accelerator.lower()
    if accelerator == "cpu":
        return torch.device("cpu")
    if accelerator in ("cuda", "gpu"):
        if not torch.cuda.is_available():
            raise UsageError(
                f"--accelerator {accelerator}: no CUDA device is visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!r}); use --accelerator cpu"
            )
        return torch.device("cuda")
    if accelerator == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    raise UsageError(f"--accelerator: invalid value {accelerator!r}; expected cpu, cuda, gpu or auto")


def _batches(n: int, batch_size: int):
    for start in range(0, n, batch_size):
        yield slice(start, start + batch_size)


def predict_object_patches(
    network, x: np.ndarray, batch_size: int = 256, device=None, offsets: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Object amplitude and phase patches (B, C, N, N) for normalised diffraction ``x`` (B, C, N, N).

    With ``offsets`` the predicted diffraction amplitudes ``A_hat`` (B, C, N, N) come along from the
    same pass (the physics layer on the predicted patches), else None.
    """
    import torch

    device = device or torch.device("cpu")
    network = network.to(device).eval()
    amps, phases, diffraction = [], [], []
    with torch.inference_mode():
        for batch in _batches(len(x), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(x[batch])).to(device)
            a, p = network.predict_object(xb)
            amps.append(a.cpu().numpy())
            phases.append(p.cpu().numpy())
            if offsets is not None:
                ob = torch.from_numpy(np.ascontiguousarray(offsets[batch], dtype=np.float64)).to(device)
                diffraction.append(network.physics(a, p, ob).cpu().numpy())
    return np.concatenate(amps), np.concatenate(phases), (np.concatenate(diffraction) if offsets is not None else None)


def predict_diffraction(network, x: np.ndarray, offsets: np.ndarray, batch_size: int = 256, device=None) -> np.ndarray:
    """Predicted normalised diffraction amplitudes ``A_hat`` (B, C, N, N) through the physics layer."""
    return predict_object_patches(network, x, batch_size, device, offsets=offsets)[2]


def deviance_of_prediction(predicted: np.ndarray, grouped) -> float:
    """Mean Poisson deviance of predicted normalised amplitudes against the measured counts.

    In count units: ``lambda = (A_hat / scale)^2`` against ``k = counts_amplitude^2``. Zero for a
    perfect model; the figure by which "training did something" is judged.
    """
    from ptycho.physics import poisson_deviance

    lam = (np.asarray(predicted, dtype=np.float64) / grouped.scale) ** 2
    counts = grouped.counts_amplitude.astype(np.float64) ** 2
    return poisson_deviance(lam, counts)


def poisson_deviance_on(network, grouped, batch_size: int = 256, device=None) -> float:
    """:func:`deviance_of_prediction` of ``network`` on every group of ``grouped``."""
    return deviance_of_prediction(predict_diffraction(network, grouped.X, grouped.offsets, batch_size, device), grouped)


def stitch_reconstruction(
    patches: np.ndarray,
    positions: np.ndarray,
    probe: np.ndarray,
    canvas_shape: tuple[int, int],
    crop: int | None,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    device=None,
    synchronise_phases: bool = True,
) -> np.ndarray:
    """Stitch complex ``patches`` (..., N, N) placed at global ``positions`` (..., 2) into one object.

    Weights: probe intensity, zero outside the central ``crop`` window (the predicted region).
    ``transpose`` swaps each patch's rows and columns; ``flip_x``/``flip_y`` mirror the positions.
    With ``synchronise_phases`` each patch's own phase offset is removed first
    (:func:`ptycho.stitching.synchronise_patch_phases`). Native torch (``index_add``), float64
    accumulation.
    """
    import torch

    from ptycho.stitching import patch_weights, synchronise_patch_phases
    from ptycho_torch.reassembly import reassemble_patches

    n = patches.shape[-1]
    flat = np.asarray(patches).reshape(-1, n, n)
    if transpose:
        flat = np.swapaxes(flat, -1, -2)
    pos = transform_positions(np.asarray(positions).reshape(-1, 2), flip_x, flip_y)
    weights = patch_weights(n, probe, crop=crop)
    if synchronise_phases:
        flat = synchronise_patch_phases(flat, pos, weights)
    if crop is not None and (n - crop) % 2 == 0:
        # Outside the crop window the weight is zero: splat only the window. Its pixel r' is the full
        # patch's pixel r' + (n - crop)/2, so with the same centre the taps land on the same pixels.
        lo = (n - crop) // 2
        flat = flat[:, lo : lo + crop, lo : lo + crop]
        weights = weights[lo : lo + crop, lo : lo + crop]
    device = device or torch.device("cpu")
    out = reassemble_patches(
        torch.from_numpy(np.ascontiguousarray(flat)).to(device=device, dtype=torch.complex128),
        torch.from_numpy(pos).to(device),
        canvas_shape,
        torch.from_numpy(weights).to(device),
    )
    return out.cpu().numpy().astype(np.complex64)


def reconstruct(
    network,
    raw,
    n_images: int | None = None,
    seed: int = 0,
    batch_size: int = 256,
    device=None,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int | None = None,
    timings: dict[str, float] | None = None,
    with_deviance: bool = True,
    neighbor_count: int | None = None,
) -> tuple[Reconstruction, Any]:
    """Group ``raw`` with the model's N and gridsize from ``neighbor_count`` nearest neighbours
    (None: the legacy ``params.cfg['neighbor_count']``), predict, stitch. Returns the
    reconstruction and the grouped data."""
    from ptycho.raw_data import generate_grouped_data
    from ptycho_torch.network import predicted_size

    timings = timings if timings is not None else {}
    t = time.perf_counter()
    cfg = network.cfg
    try:
        grouped = generate_grouped_data(
            raw, n_groups=n_images, neighbor_count=neighbor_count, seed=seed, N=cfg.N, gridsize=cfg.gridsize
        )
    except ValueError as exc:  # too few positions for the model's gridsize, N mismatch
        raise UsageError(f"{raw.source or 'data'}: {exc}") from None
    timings["grouping"] = time.perf_counter() - t
    t = time.perf_counter()
    amp, phase, predicted = predict_object_patches(
        network, grouped.X, batch_size, device, offsets=grouped.offsets if with_deviance else None
    )
    timings["inference"] = time.perf_counter() - t
    t = time.perf_counter()
    positions = grouped.centers[:, None, :] + grouped.offsets
    try:
        canvas = canvas_shape_of(raw, cfg.N, M)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    obj = stitch_reconstruction(
        amp * np.exp(1j * phase), positions, raw.probeGuess, canvas, predicted_size(cfg), flip_x, flip_y, transpose, device
    )
    timings["stitching"] = time.perf_counter() - t
    meta = reconstruction_metadata(grouped, cfg, canvas, flip_x=flip_x, flip_y=flip_y, transpose=transpose)
    if with_deviance:
        meta["poisson_deviance"] = deviance_of_prediction(predicted, grouped)
    return Reconstruction(obj, positions.reshape(-1, 2), grouped.indices.reshape(-1), meta), grouped


# --------------------------------------------------------------------------- CLI

PROG = "python -m ptycho_torch.inference"


def _parser(prog: str = PROG) -> argparse.ArgumentParser:
    from ptycho.cli import infer_parser

    return infer_parser(prog, backend=False)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``ptycho-infer --backend pytorch`` under this module's name (one workflow,
    :func:`ptycho.cli.run_infer`, through the backend dispatcher). ``prog``: the command the user
    typed, for errors."""
    from ptycho.cli import run_infer

    return run_infer(argv, prog=prog or PROG, backend="pytorch")


if __name__ == "__main__":
    sys.exit(main())
