"""PtychoPINN against the iterative reference (ePIE, Poisson PIE): SSIM against wall time.

Scored with the project's honest evaluator (:func:`ptycho.evaluation.score_reconstruction`:
registered, well-illuminated region only, amplitude mean-matched, global phase removed, strict
phase SSIM), the flat-image floor printed beside.

For each dose (1e9, 1e4, 1e3 photons per pattern by default) two scans of the canonical kind are
simulated: scan A (the canonical object) and scan B (same probe and raster, another object), the
"second scan of the same kind". Printed:

1. SSIM (amplitude and strict phase, inside the scanned area, against the ground truth) after
   given wall times for each iterative variant on scan A, with the median seconds per sweep and
   the flat-image baseline (a constant object: what "no information" scores).
2. The amortised case on scan B: the time each iterative variant needs to reach given amplitude
   SSIMs, and, where the PyTorch backend is available, the network trained on scan A (with a
   training preset, ``nightly-quality`` by default): training time, inference time on scan B, its
   SSIM there and the iterative time to match that SSIM.
3. Equal wall time: the network's training + inference time on scan A against the best iterative
   variant's estimate at that time (the last one it had by then; a run whose budget ended sooner
   is taken at its end, which flatters it only if it would not have over-fitted since), and the
   network's inference time per 1,000 patterns against one iterative sweep per 1,000 patterns.

SSIM after k sweeps is deterministic for a seed; the wall time of a point is measured in the same
run (the time spent scoring is excluded). Run: ``.venv/bin/python benchmarks/pinn_vs_iterative.py``
(``--help`` for doses, budgets, and ``--skip-network``). Takes about 3 x (variants x seconds) plus
the network's training budget per dose.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ptycho.evaluation import illuminated_region, score_reconstruction  # noqa: E402
from ptycho.iterative import (  # noqa: E402
    SweepReport,
    compare_to_reference,
    object_in_input_frame,
    recommended_alpha,
    reference_reconstruction,
)
from ptycho.iterative.reference import DEFAULT_MOMENTUM  # noqa: E402
from ptycho.raw_data import RawData  # noqa: E402
from ptycho.simulate import CanonicalSpec, simulate_spec  # noqa: E402

SCAN_A_SEED = 1084  # the canonical fixture's object, probe and scan
SCAN_B_SEED = 2084  # same kind, another object
REPORT_TIMES = (1.0, 3.0, 10.0, 30.0)
TARGET_SSIMS = (0.7, 0.8, 0.9, 0.95)


@dataclass(frozen=True)
class Variant:
    """One iterative configuration as the benchmark names it."""

    label: str
    method: str
    alpha: float | None  # None: the dose-dependent default of reference_reconstruction
    momentum: float


VARIANTS = (
    Variant("ePIE a=1 (textbook)", "epie", 1.0, 0.0),
    Variant("ePIE a=1 +momentum", "epie", 1.0, 0.9),
    Variant("ePIE a=0.1 +momentum", "epie", 0.1, 0.9),
    Variant("Poisson PIE (default a) +mom", "poisson-pie", None, 0.9),
)


@dataclass
class Trajectory:
    """SSIM of one run at the sweeps it was scored, against the run's own clock."""

    label: str
    dose: float
    scan: str
    sweeps: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    amplitude_ssim: list[float] = field(default_factory=list)
    phase_ssim: list[float] = field(default_factory=list)
    median_sweep_seconds: float = math.nan
    alpha: float = math.nan
    final_object: np.ndarray | None = field(default=None, repr=False)

    def at(self, t: float) -> tuple[float, float] | None:
        """SSIMs of the last scored estimate available by wall time ``t`` (None: not yet one, or
        the run's budget ended before ``t``)."""
        idx = [i for i, s in enumerate(self.seconds) if s <= t]
        if not idx or t > self.seconds[-1] + self.median_sweep_seconds:
            return None
        return self.amplitude_ssim[idx[-1]], self.phase_ssim[idx[-1]]

    def time_to(self, amplitude_ssim: float) -> float | None:
        """Wall time of the first scored estimate reaching ``amplitude_ssim`` (None: never)."""
        for s, a in zip(self.seconds, self.amplitude_ssim):
            if a >= amplitude_ssim:
                return s
        return None

    def until(self, t: float) -> tuple[float, float, float]:
        """(amplitude, phase, seconds) of the last scored estimate by wall time ``t``; the run's
        final one when its budget ended sooner, its first when ``t`` is before any."""
        idx = [i for i, s in enumerate(self.seconds) if s <= t] or [0]
        i = idx[-1]
        return self.amplitude_ssim[i], self.phase_ssim[i], self.seconds[i]

    @property
    def best(self) -> tuple[float, float, float]:
        i = int(np.argmax(self.amplitude_ssim))
        return self.amplitude_ssim[i], self.phase_ssim[i], self.seconds[i]


def _score_sweeps(limit: int = 10_000) -> set[int]:
    """Every sweep up to 12, then about 15 % apart: dense where SSIM moves fast."""
    marks, k = set(range(1, 13)), 12.0
    while k < limit:
        k *= 1.15
        marks.add(int(k))
    return marks


def simulate_scan(dose: float, seed: int) -> RawData:
    return simulate_spec(CanonicalSpec(seed=seed, nphotons=dose))


_REGIONS: dict[int, np.ndarray] = {}


def truth_ssims(recon: np.ndarray, raw: RawData) -> tuple[float, float]:
    """Amplitude and strict phase SSIM by the honest evaluator (registered, well-lit region)."""
    if id(raw) not in _REGIONS:
        _REGIONS[id(raw)] = illuminated_region(raw.probeGuess, raw.positions, raw.objectGuess.shape)
    figures = score_reconstruction(recon, raw.objectGuess, raw.probeGuess, raw.positions, region=_REGIONS[id(raw)]).figures
    return figures.amplitude_ssim, figures.phase_ssim


def run_iterative(raw: RawData, variant: Variant, seconds: float, scan: str, dose: float) -> Trajectory:
    marks = _score_sweeps()
    traj = Trajectory(variant.label, dose, scan)
    truth_shape = raw.objectGuess.shape

    def score(report: SweepReport) -> None:
        if report.iteration in marks:
            # the object is on the solver's canvas; the canonical scans need no offset
            amp, phase = truth_ssims(report.object[: truth_shape[0], : truth_shape[1]], raw)
            traj.sweeps.append(report.iteration)
            traj.seconds.append(report.seconds)
            traj.amplitude_ssim.append(amp)
            traj.phase_ssim.append(phase)

    result = reference_reconstruction(
        raw, variant.method, seconds=seconds, seed=0, alpha=variant.alpha, momentum=variant.momentum, progress=score
    )
    traj.final_object = object_in_input_frame(result, truth_shape)
    amp, phase = truth_ssims(traj.final_object, raw)
    traj.sweeps.append(int(result.iterations))
    traj.seconds.append(result.seconds)
    traj.amplitude_ssim.append(amp)
    traj.phase_ssim.append(phase)
    per_sweep = np.diff(np.concatenate([[0.0], result.history_seconds[result.history_iteration == np.floor(result.history_iteration)]]))
    traj.median_sweep_seconds = float(np.median(per_sweep)) if per_sweep.size else math.nan
    traj.alpha = float(result.settings["alpha"])
    return traj


def flat_ssims(raw: RawData) -> tuple[float, float]:
    """A constant object (amplitude 1, zero phase) on the same pixels: the no-information floor."""
    flat = score_reconstruction(np.ones_like(raw.objectGuess), raw.objectGuess, raw.probeGuess, raw.positions).flat
    return flat.amplitude_ssim, flat.phase_ssim


# --------------------------------------------------------------------------- the network half


def network_available() -> str | None:
    """None if the PyTorch backend's workflow can be imported, else why not."""
    try:
        from ptycho_torch.workflows.components import run_cdi_example_torch  # noqa: F401
    except Exception as exc:  # ImportError, or a backend still being written
        return f"{type(exc).__name__}: {exc}"
    return None


@dataclass
class NetworkRun:
    """The network trained on scan A: training and inference timed apart, scored on A and B."""

    dose: float
    epochs: int
    gridsize: int
    patterns_b: int
    train_seconds: float
    inference_seconds_a: float
    inference_seconds_b: float
    forward_seconds_b: float
    amplitude_ssim_a: float
    phase_ssim_a: float
    amplitude_ssim_b: float
    phase_ssim_b: float
    vs_reference_amplitude_ssim_b: float
    vs_reference_phase_ssim_b: float
    reference_label: str
    timings: dict[str, Any] = field(default_factory=dict)


def reference_index(raw: RawData, variants: list[Variant]) -> int | None:
    """The variant reference_reconstruction's defaults pick for this dose (ePIE, momentum 0.9)."""
    alpha = recommended_alpha(raw)
    for i, v in enumerate(variants):
        if v.method == "epie" and v.momentum == DEFAULT_MOMENTUM and v.alpha in (None, alpha):
            return i
    return None


def network_config(scan: RawData, dose: float, preset: str | None, epochs: int | None, workdir: Path):
    """The TrainingConfig and TrainingOptions of the network half, resolved by ``ptycho-train``'s own
    parser (so every value of ``preset`` applies, as it would on the command line), ``epochs``
    overriding its epoch count; N is the scan's, the dose the scan's."""
    import dataclasses

    from ptycho.cli import train_parser, training_config_from_args, training_options_from_args
    from ptycho.cli_arguments import parse_training_args

    argv = ["--backend", "pytorch", "--train_data_file", "unused.npz", "--output_dir", str(workdir / f"pinn_{dose:g}")]
    argv += ["--preset", preset] if preset else []
    argv += ["--max_epochs", str(epochs)] if epochs is not None else []
    args = parse_training_args(train_parser(), argv)
    args.N = scan.N  # what ptycho-train reads from its data file
    config = dataclasses.replace(training_config_from_args(args), nphotons=dose, train_data_file=None)
    return config, training_options_from_args(args)


def run_network(
    scan_a: RawData, scan_b: RawData, dose: float, epochs: int | None, workdir: Path, reference_b: Trajectory | None,
    accelerator: str = "cpu", preset: str | None = "nightly-quality",
) -> NetworkRun:
    """Train on scan A (no validation), reconstruct A and B; also score B against the iterative
    reference of B after registration, the figure that exists without ground truth."""
    import dataclasses

    from ptycho_torch.workflows.components import TorchBackend, _reassemble_cdi_image_torch, train_cdi_model_torch

    config, options = network_config(scan_a, dose, preset, epochs, workdir)
    # Training takes the preset's threads (its epochs were chosen for them); inference stays on one.
    execution = TorchBackend.execution(dataclasses.replace(options, accelerator=accelerator, val_images=0, progress=False))
    trained = train_cdi_model_torch(scan_a, None, config, execution)
    recon: dict[str, np.ndarray] = {}
    wall: dict[str, float] = {}
    timings: dict[str, Any] = {"accelerator": accelerator, "training": {k: float(v) for k, v in trained["timings"].items()}}
    from ptycho_torch.workflows.components import cpu_threads

    for name, scan in (("a", scan_a), ("b", scan_b)):
        start = time.perf_counter()
        # one thread, as the CLIs and as the (single-threaded numpy) iterative solvers: on a shared
        # machine a second OpenMP thread mostly contends (measured several-fold slower under load)
        with cpu_threads(1):
            _amp, _phase, stitched = _reassemble_cdi_image_torch(scan, config, train_results=trained)
        wall[name] = time.perf_counter() - start
        recon[name] = np.asarray(stitched["obj_tensor_full"]).reshape(scan.objectGuess.shape)
        timings[f"reassembly_{name}"] = {k: float(v) for k, v in stitched["reassembly_timings"].items()}
    amp_a, phase_a = truth_ssims(recon["a"], scan_a)
    amp_b, phase_b = truth_ssims(recon["b"], scan_b)
    vs_ref = (math.nan, math.nan)
    if reference_b is not None and reference_b.final_object is not None:
        figures, _ = compare_to_reference(recon["b"], reference_b.final_object, scan_b.positions)
        vs_ref = (figures.amplitude_ssim, figures.phase_ssim)
    return NetworkRun(
        dose=dose, epochs=config.nepochs, gridsize=config.model.gridsize, patterns_b=int(scan_b.diffraction.shape[0]),
        train_seconds=timings["training"]["training"],
        inference_seconds_a=wall["a"], inference_seconds_b=wall["b"],
        forward_seconds_b=timings["reassembly_b"].get("inference", math.nan),
        amplitude_ssim_a=amp_a, phase_ssim_a=phase_a, amplitude_ssim_b=amp_b, phase_ssim_b=phase_b,
        vs_reference_amplitude_ssim_b=vs_ref[0], vs_reference_phase_ssim_b=vs_ref[1],
        reference_label=reference_b.label if reference_b is not None else "", timings=timings,
    )


# --------------------------------------------------------------------------- printing


def _fmt_pair(pair: tuple[float, float] | None) -> str:
    return "   --   " if pair is None else f"{pair[0]:.2f}/{pair[1]:.2f}"


def _fmt_time(t: float | None) -> str:
    return "never" if t is None else f"{t:.1f}s"


def print_dose(dose: float, trajs_a: list[Trajectory], trajs_b: list[Trajectory], flat_a: tuple[float, float],
               network: NetworkRun | None, network_note: str | None) -> None:
    print(f"\n=== {dose:g} photons/pattern: scan A (canonical object), SSIM amplitude/strict phase vs ground truth")
    print(f"flat image scores {flat_a[0]:.2f}/{flat_a[1]:.2f}")
    head = f"{'method':32s} {'alpha':>5s} {'s/sweep':>8s} " + " ".join(f"{f'@{t:g}s':>9s}" for t in REPORT_TIMES)
    print(head + f" {'best amp (phase) at':>24s} {'final':>9s}")
    for tr in trajs_a:
        best = tr.best
        cells = " ".join(f"{_fmt_pair(tr.at(t)):>9s}" for t in REPORT_TIMES)
        print(f"{tr.label:32s} {tr.alpha:5.2g} {tr.median_sweep_seconds:8.3f} {cells} "
              f"{f'{best[0]:.2f} ({best[1]:.2f}) at {best[2]:.1f}s':>24s} "
              f"{_fmt_pair((tr.amplitude_ssim[-1], tr.phase_ssim[-1])):>9s}")
    print(f"--- scan B (second scan, same kind): iterative time to reach amplitude SSIM")
    print(f"{'method':32s} " + " ".join(f"{f'>={s:g}':>8s}" for s in TARGET_SSIMS) + f" {'final amp/phase':>16s}")
    for tr in trajs_b:
        print(f"{tr.label:32s} " + " ".join(f"{_fmt_time(tr.time_to(s)):>8s}" for s in TARGET_SSIMS)
              + f" {_fmt_pair((tr.amplitude_ssim[-1], tr.phase_ssim[-1])):>16s}")
    if network is None:
        print(f"network: not measured ({network_note})")
        return
    n = network
    print(f"--- network (PyTorch on {n.timings.get('accelerator', 'cpu')}, gridsize {n.gridsize}, trained {n.epochs} epochs on scan A): "
          f"training {n.train_seconds:.1f}s")
    print(f"  scan A (its own scan): inference {n.inference_seconds_a:.2f}s, SSIM {n.amplitude_ssim_a:.2f}/{n.phase_ssim_a:.2f}; "
          f"training + inference {n.train_seconds + n.inference_seconds_a:.1f}s")
    for tr in trajs_a:
        t = tr.time_to(n.amplitude_ssim_a)
        print(f"    {tr.label:30s} " + ("never matches its amplitude SSIM" if t is None else f"matches its amplitude SSIM after {t:.1f}s"))
    wall = n.train_seconds + n.inference_seconds_a
    at_wall = [(tr,) + tr.until(wall) for tr in trajs_a]
    best = max(at_wall, key=lambda row: row[1])
    ended = " (its budget ended sooner)" if best[0].seconds[-1] < wall else ""
    print(f"  equal wall time ({wall:.1f}s): network {n.amplitude_ssim_a:.2f}/{n.phase_ssim_a:.2f}, best iterative "
          f"{best[0].label.strip()} {best[1]:.2f}/{best[2]:.2f} (estimate at {best[3]:.1f}s{ended})")
    per_k = 1000.0 / max(n.patterns_b, 1)
    sweep = best[0].median_sweep_seconds * per_k
    print(f"  per 1,000 patterns: network inference {n.inference_seconds_b * per_k:.2f}s (forward pass "
          f"{n.forward_seconds_b * per_k:.2f}s) vs one {best[0].label.strip()} sweep {sweep:.2f}s")
    print(f"  scan B (amortised): inference {n.inference_seconds_b:.2f}s (network forward {n.forward_seconds_b:.2f}s), "
          f"SSIM {n.amplitude_ssim_b:.2f}/{n.phase_ssim_b:.2f} vs truth, "
          f"{n.vs_reference_amplitude_ssim_b:.2f}/{n.vs_reference_phase_ssim_b:.2f} vs the iterative reference ({n.reference_label}, registered)")
    for tr in trajs_b:
        t = tr.time_to(n.amplitude_ssim_b)
        if t is None:
            print(f"    {tr.label:30s} never matches its amplitude SSIM")
        else:
            print(f"    {tr.label:30s} matches its amplitude SSIM after {t:.1f}s = {t / n.inference_seconds_b:.2g}x the network's inference")


def _jsonable(traj: Trajectory) -> dict[str, Any]:
    out = asdict(traj)
    out.pop("final_object")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--doses", type=float, nargs="+", default=[1e9, 1e4, 1e3], help="photons per pattern")
    p.add_argument("--seconds", type=float, default=30.0, help="wall-time budget of each iterative run (scan A)")
    p.add_argument("--seconds-b", type=float, default=15.0, help="wall-time budget of each iterative run on scan B")
    p.add_argument("--variants", type=int, nargs="+", help=f"indices into {[v.label for v in VARIANTS]} (default all)")
    p.add_argument("--preset", default="nightly-quality", help="training preset of the network (ptycho/presets.toml; default nightly-quality)")
    p.add_argument("--epochs", type=int, default=None, help="network training epochs on scan A (default: the preset's)")
    p.add_argument("--skip-network", action="store_true", help="iterative half only")
    p.add_argument("--accelerator", choices=("cpu", "cuda", "auto"), default="cpu", help="where the network trains and infers (default cpu)")
    p.add_argument("--json", type=Path, help="also write every trajectory and network run to this JSON file")
    args = p.parse_args(argv)
    variants = [VARIANTS[i] for i in args.variants] if args.variants else list(VARIANTS)
    note = "skipped (--skip-network)" if args.skip_network else network_available()
    workdir = Path(os.environ.get("TMPDIR", "/tmp")) / "pinn_vs_iterative"
    dump: dict[str, Any] = {"doses": {}}
    print(f"iterative variants: {', '.join(v.label for v in variants)}; budget {args.seconds:g}s (scan A), "
          f"{args.seconds_b:g}s (scan B); CPU threads: {os.cpu_count()}; load average {os.getloadavg()[0]:.2f} at start")
    for dose in args.doses:
        scan_a, scan_b = simulate_scan(dose, SCAN_A_SEED), simulate_scan(dose, SCAN_B_SEED)
        trajs_a = [run_iterative(scan_a, v, args.seconds, "A", dose) for v in variants]
        trajs_b = [run_iterative(scan_b, v, args.seconds_b, "B", dose) for v in variants]
        network = None
        if note is None:
            ref = reference_index(scan_b, variants)
            network = run_network(scan_a, scan_b, dose, args.epochs, workdir, trajs_b[ref] if ref is not None else None,
                                  args.accelerator, args.preset)
        print_dose(dose, trajs_a, trajs_b, flat_ssims(scan_a), network, note)
        print(f"(load average {os.getloadavg()[0]:.2f} after this dose: wall times on a shared machine are inflated)")
        sys.stdout.flush()
        dump["doses"][f"{dose:g}"] = {
            "scan_a": [_jsonable(t) for t in trajs_a], "scan_b": [_jsonable(t) for t in trajs_b],
            "flat_a": flat_ssims(scan_a), "network": asdict(network) if network else None, "network_note": note,
        }
    if args.json:
        args.json.write_text(json.dumps(dump, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
