"""``ptycho-reconstruct``: iterative reference reconstruction (ePIE, Poisson PIE) of an NPZ scan.

Writes ``reconstruction.npz`` and the amplitude/phase PNGs into ``--output_dir`` the way the
network's inference does, so the harness's artifact checks and a reader's scripts treat both
alike. Exit codes: 0 success; 2 a user mistake (bad option value, missing or invalid data file,
unusable output directory), one line on stderr; 1 the reconstruction diverged (nothing written).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

PROG = "ptycho-reconstruct"
NPZ_NAME = "reconstruction.npz"
AMPLITUDE_PNG = "reconstruction_amplitude.png"
PHASE_PNG = "reconstruction_phase.png"

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage dump) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    from ptycho.iterative.reference import DEFAULT_ITERATIONS, DEFAULT_MOMENTUM, LOW_DOSE_COUNTS, METHODS

    p = _Parser(
        prog=PROG,
        description=(
            "Reconstruct a ptychographic scan (NPZ data contract) with an iterative solver and the "
            "known probe, writing reconstruction.npz, reconstruction_amplitude.png and "
            "reconstruction_phase.png. Exit codes: 0 ok, 1 the reconstruction diverged, 2 bad input."
        ),
    )
    p.add_argument("--method", choices=METHODS, default="epie", help="solver (default: epie)")
    p.add_argument("--test_data", type=Path, required=True, help="input NPZ (diffraction, probeGuess, xcoords, ycoords)")
    p.add_argument("--output_dir", type=Path, required=True, help="directory for the outputs (created if needed)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--iterations", type=_positive_int, help=f"full sweeps over all positions (default {DEFAULT_ITERATIONS})")
    budget.add_argument("--seconds", type=_positive_float, help="wall-time budget in seconds instead of a sweep count")
    p.add_argument(
        "--alpha", type=_positive_float,
        help=f"object step (default: 1, or 0.1 below {LOW_DOSE_COUNTS:g} mean counts per pattern)",
    )
    p.add_argument("--momentum", type=float, default=DEFAULT_MOMENTUM, help=f"momentum between sweeps, 0 <= m < 1 (default {DEFAULT_MOMENTUM}; 0 is textbook ePIE)")
    p.add_argument("--update-probe", action="store_true", help="refine the probe too (default: the probe is known)")
    p.add_argument("--probe-step", type=_positive_float, default=1.0, help="probe step with --update-probe (default 1)")
    p.add_argument("--step", type=_positive_float, help="poisson-pie: far-field gradient step, <= 1 (default 0.5)")
    p.add_argument("--cap", type=_positive_float, help="poisson-pie: cap on counts / model intensity (default 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of the update order (default 0)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--quiet", action="store_true", help="no live progress bar (shown only on a terminal anyway)")
    return p


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def write_outputs(output_dir: Path, result: Any, metadata: dict[str, Any]) -> dict[str, Path]:
    """Write the NPZ (complex reconstruction, positions, probe, cost history, metadata JSON) and
    the two PNGs; each file appears complete or not at all."""
    from ptycho.raw_data import write_npz_deterministic
    from ptycho.workflows.reconstruction import amplitude_image, phase_image, save_png

    npz = write_npz_deterministic(
        output_dir / NPZ_NAME,
        {
            "reconstruction": result.object.astype(np.complex64),
            "positions": result.positions.astype(np.float64),
            "probe": result.probe.astype(np.complex64),
            "cost": result.history_cost.astype(np.float64),
            "cost_iteration": result.history_iteration.astype(np.float64),
            "cost_seconds": result.history_seconds.astype(np.float64),
            "_metadata": np.array(json.dumps(metadata, sort_keys=True)),
        },
    )
    amplitude = output_dir / AMPLITUDE_PNG
    phase = output_dir / PHASE_PNG
    save_png(amplitude, amplitude_image(np.abs(result.object)))
    save_png(phase, phase_image(np.angle(result.object)))
    return {"npz": npz, "amplitude_png": amplitude, "phase_png": phase}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from ptycho.iterative.reference import reference_reconstruction, truth_figures
    from ptycho.raw_data import RawData

    options: dict[str, Any] = {}
    for name in ("step", "cap"):
        value = getattr(args, name)
        if value is not None:
            if args.method != "poisson-pie":
                return _fail(f"--{name}: only applies to --method poisson-pie")
            options[name] = value
    if not (0 <= args.momentum < 1):
        return _fail(f"--momentum: expected 0 <= momentum < 1, got {args.momentum}")
    if args.output_dir.exists() and not args.output_dir.is_dir():
        return _fail(f"--output_dir: {args.output_dir} exists and is not a directory")
    try:
        raw = RawData.from_file(args.test_data)
    except (ValueError, OSError) as exc:  # DataContractError is a ValueError naming file and key
        return _fail(str(exc))

    progress_bar = None
    task = None
    if not args.quiet and sys.stderr.isatty():  # a live bar only where someone watches
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        progress_bar = Progress(
            TextColumn(f"{args.method}"), BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
            console=Console(stderr=True), transient=True,
        )
        total = args.seconds if args.seconds is not None else float(args.iterations or 0) or None
        task = progress_bar.add_task("starting", total=total)

    def on_sweep(report: Any) -> None:
        if progress_bar is not None:
            done = report.seconds if args.seconds is not None else report.iteration
            progress_bar.update(task, completed=done, description=f"sweep {report.iteration}  cost {report.cost:.4g}")

    started = time.perf_counter()
    try:
        if progress_bar is not None:
            progress_bar.start()
        try:
            result = reference_reconstruction(
                raw, args.method, iterations=args.iterations, seconds=args.seconds, seed=args.seed,
                alpha=args.alpha, momentum=args.momentum, update_probe=args.update_probe,
                probe_step=args.probe_step, progress=on_sweep, **options,
            )
        finally:
            if progress_bar is not None:
                progress_bar.stop()
    except ValueError as exc:
        return _fail(str(exc))
    if not np.all(np.isfinite(result.object)):
        return _fail(f"{args.method} diverged (non-finite object); try a smaller --alpha", EXIT_FAILED)

    figures = truth_figures(result, raw)
    metadata = {
        **result.metadata(),
        "source": str(args.test_data),
        "generator": PROG,
        "quality_vs_ground_truth": figures.as_dict() if figures is not None else None,
    }
    try:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        paths = write_outputs(args.output_dir, result, metadata)
    except OSError as exc:
        return _fail(f"--output_dir: cannot write {args.output_dir}: {exc}")

    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps({**metadata, "outputs": {k: str(v) for k, v in paths.items()}, "wall_seconds": elapsed}, sort_keys=True))
    else:
        quality = (
            f"; amplitude SSIM {figures.amplitude_ssim:.3f}, phase SSIM {figures.phase_ssim:.3f} vs ground truth"
            if figures is not None else ""
        )
        print(
            f"{args.method}: {result.iterations:g} sweeps in {result.seconds:.2f} s, "
            f"{result.cost_name} {result.history_cost[-1]:.4g}{quality} -> {args.output_dir / NPZ_NAME}"
        )
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
