"""Inference with a trained torch model, and the ``python -m ptycho_torch.inference`` CLI.

Loads the saved model directory (manifest + ``checkpoints/last.ckpt``) without Lightning (plain
torch is enough to run a network, and saves seconds per process), predicts object patches for the
scan, stitches them into one complex object, and writes ``reconstruction.npz`` plus the amplitude
and phase PNGs (one image pixel per array element, no figure chrome).

Exit codes: 0 success; 2 a user's mistake (missing or invalid file, bad value, a model of the other
backend), reported as one line on stderr; 1 an unexpected internal error (with traceback).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
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
from ptycho.run_summary import finish, inference_line, write_inference_summary  # noqa: E402
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
) -> tuple[Reconstruction, Any]:
    """Group ``raw`` as the model was configured (CONFIG-001: ``params.cfg`` must hold the model's
    N and gridsize), predict, stitch. Returns the reconstruction and the grouped data."""
    from ptycho.raw_data import generate_grouped_data
    from ptycho_torch.network import predicted_size

    timings = timings if timings is not None else {}
    t = time.perf_counter()
    cfg = network.cfg
    try:
        grouped = generate_grouped_data(raw, n_groups=n_images, seed=seed)
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


def _parser(prog: str = "python -m ptycho_torch.inference") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Reconstruct an object with a trained PyTorch PtychoPINN model.",
        epilog="Exit codes: 0 success, 2 a usage or input error (one line on stderr), 1 an internal error.",
    )
    from ptycho.cli_arguments import add_inference_arguments

    add_inference_arguments(p)
    return p


def _check_args(args: argparse.Namespace) -> None:
    from ptycho.raw_data import npz_headers

    if args.num_threads < 0:
        raise UsageError(f"--num_threads: invalid value {args.num_threads}; expected an integer >= 0")
    for name in ("n_images", "batch_size", "M"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name}: invalid value {value}; expected an integer >= 1")
    if args.seed < 0:
        raise UsageError(f"--seed: invalid value {args.seed}; expected an integer >= 0")
    if not args.model_path.exists():
        raise UsageError(f"--model_path: {args.model_path}: no such file or directory")
    npz_headers(args.test_data)  # DataContractError names the file when it is missing or not an NPZ
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise UsageError(f"--output_dir: {args.output_dir} exists and is not a directory")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The inference CLI's work; returns the JSON summary."""
    timings: dict[str, float] = {}
    t = time.perf_counter()
    import torch

    from ptycho import params
    from ptycho.config.config import update_legacy_dict
    from ptycho.raw_data import RawData
    from ptycho_torch.model_manager import load_torch_bundle

    timings["imports"] = time.perf_counter() - t
    device = select_device(args.accelerator)
    if device.type == "cpu":
        torch.set_flush_denormal(True)
        if args.num_threads:
            torch.set_num_threads(args.num_threads)
    t = time.perf_counter()
    bundle = load_torch_bundle(args.model_path, map_location=device)
    timings["load_model"] = time.perf_counter() - t
    update_legacy_dict(params.cfg, bundle.inference_config)  # CONFIG-001: before grouping
    t = time.perf_counter()
    raw = RawData.from_file(args.test_data)
    timings["data"] = time.perf_counter() - t
    if raw.N != bundle.model_config.N:
        raise UsageError(
            f"--test_data: {args.test_data}: patterns are {raw.N} x {raw.N} but the model at {args.model_path} "
            f"was trained for N = {bundle.model_config.N}"
        )
    recon, _ = reconstruct(
        bundle.network, raw, n_images=args.n_images, seed=args.seed, batch_size=args.batch_size, device=device,
        flip_x=args.flip_x, flip_y=args.flip_y, transpose=args.transpose, M=args.M, timings=timings,
        with_deviance=not args.no_deviance,
    )
    recon.metadata.update(
        backend="pytorch",
        model_path=str(args.model_path),
        checkpoint=str(bundle.checkpoint_path),
        test_data=str(args.test_data),
        device=str(device),
    )
    paths = write_reconstruction(args.output_dir, recon, timings)
    timings["total"] = time.perf_counter() - _T_START
    return write_inference_summary(args.output_dir, backend="pytorch", device=str(device), metadata=recon.metadata,
                                   paths=paths, timings=timings)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``prog``: the command the user typed (``ptycho-infer`` when it handed over), for errors."""
    parser = _parser(prog) if prog else _parser()
    args = parser.parse_args(argv)

    def work() -> dict[str, Any]:
        _check_args(args)
        return run(args)

    return finish(parser.prog, work, lambda summary: inference_line(summary, args.output_dir),
                  as_json=args.json)


if __name__ == "__main__":
    sys.exit(main())
