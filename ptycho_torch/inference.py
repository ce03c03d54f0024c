"""Inference with a trained torch model, and the ``python -m ptycho_torch.inference`` CLI.

The model directory (manifest + ``checkpoints/last.ckpt``) is loaded without Lightning (plain torch
is enough to run a network, and saves seconds per process); :func:`reconstruct` predicts object
patches for the scan and stitches them into one complex object: the shared
:func:`ptycho.workflows.reconstruction.reconstruct_scan` over :class:`TorchPatchModel` (the
network's forward pass and the native torch reassembly). The CLI is ``ptycho-infer
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

from ptycho.workflows.reconstruction import (  # noqa: E402 - one reconstruction and one writer for every backend
    Reconstruction,
    canvas_shape_of,
    deviance_of_prediction,
    reconstruct_scan,
    stitch_patches,
    write_reconstruction,
)
from ptycho.cli_arguments import UsageError  # noqa: E402

__all__ = [
    "UsageError",
    "select_device",
    "predict_object_patches",
    "predict_diffraction",
    "poisson_deviance_on",
    "TorchPatchModel",
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


def poisson_deviance_on(network, grouped, batch_size: int = 256, device=None) -> float:
    """:func:`deviance_of_prediction` of ``network`` on every group of ``grouped``."""
    return deviance_of_prediction(predict_diffraction(network, grouped.X, grouped.offsets, batch_size, device), grouped)


def reassemble_on_device(
    patches: np.ndarray, positions: np.ndarray, canvas_shape: tuple[int, int], weights: np.ndarray, device=None
) -> np.ndarray:
    """:func:`ptycho_torch.reassembly.reassemble_patches` of numpy ``patches`` (P, m, m) at
    ``positions`` (P, 2) with ``weights`` (m, m) on ``device``: native torch (``index_add``),
    complex128 accumulation -> complex64 (H, W)."""
    import torch

    from ptycho_torch.reassembly import reassemble_patches

    device = device or torch.device("cpu")
    out = reassemble_patches(
        torch.from_numpy(np.ascontiguousarray(patches)).to(device=device, dtype=torch.complex128),
        torch.from_numpy(np.asarray(positions, dtype=np.float64)).to(device),
        canvas_shape,
        torch.from_numpy(np.asarray(weights)).to(device),
    )
    return out.cpu().numpy().astype(np.complex64)


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
    """Stitch complex ``patches`` (..., N, N) placed at global ``positions`` (..., 2) into one object:
    :func:`ptycho.workflows.reconstruction.stitch_patches` (probe-intensity weights zero outside
    the central ``crop`` window, phase offsets synchronised unless ``synchronise_phases`` is False,
    ``transpose``, ``flip_x``/``flip_y``) with the native torch reassembly on ``device``."""
    return stitch_patches(
        patches, positions, probe, canvas_shape, crop,
        lambda p, pos, shape, w: reassemble_on_device(p, pos, shape, w, device),
        flip_x=flip_x, flip_y=flip_y, transpose=transpose, synchronise_phases=synchronise_phases,
    )


class TorchPatchModel:
    """:class:`ptycho.workflows.reconstruction.PatchModel` of a torch network: predictions in
    batches of ``batch_size`` groups and the reassembly on ``device``."""

    def __init__(self, network, batch_size: int = 256, device=None):
        self.network = network
        self.cfg = network.cfg
        self.batch_size = batch_size
        self.device = device

    def predict(self, x: np.ndarray, offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        return predict_object_patches(self.network, x, self.batch_size, self.device, offsets=offsets)

    def reassemble(self, patches: np.ndarray, positions: np.ndarray, canvas_shape: tuple[int, int],
                   weights: np.ndarray) -> np.ndarray:
        return reassemble_on_device(patches, positions, canvas_shape, weights, self.device)


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
    (None: the legacy ``params.cfg['neighbor_count']``), predict, stitch
    (:func:`ptycho.workflows.reconstruction.reconstruct_scan`). Returns the reconstruction and the
    grouped data."""
    return reconstruct_scan(
        TorchPatchModel(network, batch_size, device), raw, neighbor_count=neighbor_count, n_images=n_images,
        seed=seed, flip_x=flip_x, flip_y=flip_y, transpose=transpose, M=M, timings=timings,
        with_deviance=with_deviance,
    )


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
