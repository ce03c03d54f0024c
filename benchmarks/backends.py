"""TensorFlow against PyTorch on the canonical fixture, side by side in one run.

1. Training step and epoch time, same architecture, same batch (16 groups of 64 x 64), same
   thread count, same optimiser rule: each backend in its own fresh process (its own imports and
   thread settings), the processes alternated over ``--rounds`` rounds; medians and the TF/torch
   ratio (target: TF within 1.5x of torch).
2. Reassembly of the 1087 true object patches into the 272 x 272 canvas with the inference's
   weights (probe intensity on the central N/2 window): TensorFlow (``ptycho.tf_backend.reassembly.reassemble_position``),
   native torch (``ptycho_torch.inference.stitch_reconstruction``) and the numpy reference, each
   backend's ratio against numpy measured in the same process.
3. Reconstruction quality of the integration workflow's settings (``--epochs`` epochs on
   ``--train-groups`` groups, gridsize 1, then the full scan stitched): amplitude and phase SSIM of
   each backend against the ground truth (target: within 0.05 of each other), with the flat-image
   baseline.

    .venv/bin/python benchmarks/backends.py [--rounds 3] [--threads 1] [--epochs 3] [--skip-quality] [--json]

Wall times depend on the machine's load (printed); run on an otherwise idle machine for figures to
compare with other runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

BATCH = 16
STEP_REPEATS = 5
STEPS_PER_REPEAT = 10
WARMUP_STEPS = 3


# --------------------------------------------------------------------------- workers (own process)


def _grouped(gridsize: int):
    from ptycho import params
    from ptycho.config.config import ModelConfig, TrainingConfig, update_legacy_dict
    from ptycho.raw_data import RawData, generate_grouped_data
    from ptycho.simulate import ensure_canonical_dataset

    raw = RawData.from_file(ensure_canonical_dataset())
    config = TrainingConfig(model=ModelConfig(N=raw.N, gridsize=gridsize), batch_size=BATCH)
    update_legacy_dict(params.cfg, config)
    return raw, config, generate_grouped_data(raw, seed=42)


def _time_loop(step, batches) -> dict[str, float]:
    """Median seconds per step over repeats of STEPS_PER_REPEAT steps, then one full epoch."""
    import numpy as np

    for i in range(WARMUP_STEPS):
        step(*batches[i])
    per_step = []
    for r in range(STEP_REPEATS):
        start = time.perf_counter()
        for i in range(STEPS_PER_REPEAT):
            step(*batches[(r * STEPS_PER_REPEAT + i) % len(batches)])
        per_step.append((time.perf_counter() - start) / STEPS_PER_REPEAT)
    start = time.perf_counter()
    for batch in batches:
        step(*batch)
    epoch = time.perf_counter() - start
    return {"step_s": float(np.median(per_step)), "epoch_s": epoch, "steps_per_epoch": len(batches)}


def worker_tf_steps(gridsize: int, threads: int) -> dict:
    import numpy as np
    from ptycho.tf_backend.runtime import tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    import keras

    from ptycho.tf_backend.network import build_model
    from ptycho.tf_backend.adam import TorchAdam
    from ptycho.tf_backend.workflows.components import _compiled_steps

    raw, config, grouped = _grouped(gridsize)
    keras.utils.set_random_seed(42)
    model = build_model(config.model, raw.probeGuess)
    optimizer = TorchAdam(model.trainable_variables, learning_rate=config.learning_rate)
    train_step, _ = _compiled_steps(model, optimizer, config)
    order = np.random.default_rng(42).permutation(len(grouped.X))
    batches = [
        (tf.constant(grouped.X[order[i : i + BATCH]]), tf.constant(grouped.offsets[order[i : i + BATCH]]))
        for i in range(0, len(order), BATCH)
    ]
    start = time.perf_counter()
    train_step(*batches[0])
    trace = time.perf_counter() - start
    return {**_time_loop(lambda x, o: train_step(x, o), batches), "first_step_s": trace,
            "threads": tf.config.threading.get_intra_op_parallelism_threads()}


def worker_torch_steps(gridsize: int, threads: int) -> dict:
    import numpy as np
    import torch

    if threads:
        torch.set_num_threads(threads)
    torch.set_flush_denormal(True)  # as the torch training does on a CPU

    from ptycho_torch.model import training_loss
    from ptycho_torch.network import PtychoPINN

    raw, config, grouped = _grouped(gridsize)
    torch.manual_seed(42)
    net = PtychoPINN(config.model, torch.from_numpy(raw.probeGuess))
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    order = np.random.default_rng(42).permutation(len(grouped.X))
    batches = [
        (torch.from_numpy(grouped.X[order[i : i + BATCH]]), torch.from_numpy(grouped.offsets[order[i : i + BATCH]]))
        for i in range(0, len(order), BATCH)
    ]

    def step(x, offsets):
        optimizer.zero_grad(set_to_none=True)
        loss = training_loss(net(x, offsets).amplitude, x, config.nll_weight, config.mae_weight)
        loss.backward()
        optimizer.step()
        return loss

    start = time.perf_counter()
    step(*batches[0])
    first = time.perf_counter() - start
    return {**_time_loop(step, batches), "first_step_s": first, "threads": torch.get_num_threads()}


_PROBE: list = [None]


def _reassembly_inputs():
    from ptycho import physics, stitching
    from ptycho.raw_data import RawData
    from ptycho.simulate import ensure_canonical_dataset

    raw = RawData.from_file(ensure_canonical_dataset())
    _PROBE[0] = raw.probeGuess
    patches = physics.extract_patches(raw.objectGuess, raw.positions, raw.N)
    weights = stitching.patch_weights(raw.N, raw.probeGuess, crop=raw.N // 2)
    return raw, patches, weights


def _median_time(fn, repeats: int):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _reassembly_figures(run_backend, threads_used: int, repeats: int) -> dict:
    import numpy as np

    from ptycho import stitching

    raw, patches, weights = _reassembly_inputs()
    shape = raw.objectGuess.shape
    run_backend(patches, raw.positions, shape, weights)  # warm-up
    t_numpy, ref = _median_time(lambda: stitching.reassemble_patches(patches, raw.positions, shape, weights), repeats)
    t_backend, out = _median_time(lambda: run_backend(patches, raw.positions, shape, weights), repeats)
    return {"numpy_s": t_numpy, "backend_s": t_backend, "threads": threads_used,
            "max_abs_diff": float(np.max(np.abs(out - ref)))}


def worker_tf_reassembly(threads: int, repeats: int) -> dict:
    from ptycho.tf_backend.runtime import tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from ptycho.tf_backend.reassembly import reassemble_position

    return _reassembly_figures(
        lambda p, pos, shape, w: reassemble_position(p, pos, shape, w).numpy(),
        tf.config.threading.get_intra_op_parallelism_threads(), repeats,
    )


def worker_torch_reassembly(threads: int, repeats: int) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    from ptycho_torch.inference import stitch_reconstruction

    # The torch inference's own stitching path (native index_add on the weighted window), without the
    # phase synchronisation before it: TensorFlow's side and the numpy reference time the reassembly alone.
    return _reassembly_figures(
        lambda p, pos, shape, w: stitch_reconstruction(p, pos, _PROBE[0], shape, p.shape[-1] // 2, synchronise_phases=False),
        torch.get_num_threads(), repeats,
    )


def _quality(obj, raw) -> dict:
    import numpy as np

    from ptycho.evaluation import evaluate_reconstruction, scanned_region

    region = scanned_region(raw.positions, obj.shape, margin=8)
    got = evaluate_reconstruction(obj, raw.objectGuess, region)
    flat = evaluate_reconstruction(np.ones_like(obj), raw.objectGuess, region)
    return {"amplitude_ssim": got.amplitude_ssim, "phase_ssim": got.phase_ssim,
            "flat_amplitude_ssim": flat.amplitude_ssim, "flat_phase_ssim": flat.phase_ssim}


def worker_tf_quality(epochs: int, groups: int, threads: int, out: str) -> dict:
    from ptycho.tf_backend.runtime import tf

    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.raw_data import RawData
    from ptycho.simulate import ensure_canonical_dataset
    from ptycho.tf_backend import inference
    from ptycho.tf_backend.workflows import components

    raw = RawData.from_file(ensure_canonical_dataset())
    config = TrainingConfig(model=ModelConfig(N=raw.N), nepochs=epochs, n_groups=groups, output_dir=Path(out))
    epoch_s: list[float] = []
    start = time.perf_counter()
    results = components.train_cdi_model(raw, None, config, progress=lambda e, n, l, v, s: epoch_s.append(s))
    train_s = time.perf_counter() - start
    recon, _ = inference.reconstruct(results["models"]["diffraction_to_obj"], raw, with_deviance=False)
    return {**_quality(recon.obj, raw), "train_s": train_s, "epoch_s": epoch_s,
            "final_loss": results["history"]["train_loss"][-1]}


def worker_torch_quality(epochs: int, groups: int, threads: int, out: str) -> dict:
    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho.raw_data import RawData
    from ptycho.simulate import ensure_canonical_dataset
    from ptycho_torch.inference import reconstruct
    from ptycho_torch.workflows.components import TorchExecution, train_cdi_model_torch

    raw = RawData.from_file(ensure_canonical_dataset())
    config = TrainingConfig(model=ModelConfig(N=raw.N), nepochs=epochs, n_groups=groups, output_dir=Path(out), backend="pytorch")
    execution = TorchExecution(seed=42, progress_bar=False, num_threads=threads)
    start = time.perf_counter()
    results = train_cdi_model_torch(raw, None, config, execution)
    train_s = time.perf_counter() - start
    network = results["models"]["diffraction_to_obj"].network
    recon, _ = reconstruct(network, raw, with_deviance=False)
    return {**_quality(recon.obj, raw), "train_s": train_s, "epoch_s": [results["timings"]["training"] / epochs],
            "final_loss": results["history"]["train_loss"][-1]}


WORKERS = {
    "tf_steps": worker_tf_steps, "torch_steps": worker_torch_steps,
    "tf_reassembly": worker_tf_reassembly, "torch_reassembly": worker_torch_reassembly,
    "tf_quality": worker_tf_quality, "torch_quality": worker_torch_quality,
}


# --------------------------------------------------------------------------- orchestration


def _spawn(name: str, **kwargs) -> dict:
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--worker-args", json.dumps(kwargs)],
        capture_output=True, text=True, env=env, cwd=REPO,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmark worker {name} failed (rc {proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median(runs: list[dict], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3, help="alternating TF/torch processes per measurement (medians)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads for both backends (0: each backend's default)")
    p.add_argument("--gridsize", type=int, nargs="+", default=[1, 2], help="gridsizes of the step benchmark")
    p.add_argument("--epochs", type=int, default=3, help="training epochs of the quality comparison")
    p.add_argument("--train-groups", type=int, default=512, help="training groups of the quality comparison")
    p.add_argument("--skip-quality", action="store_true", help="only the timings")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--worker-args", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](**json.loads(args.worker_args))))
        return 0
    if args.rounds < 1:
        p.error("--rounds: at least 1")

    load_before = os.getloadavg()[0]
    figures: dict = {"threads": args.threads, "rounds": args.rounds, "cpus": os.cpu_count(), "steps": {}}
    for gridsize in args.gridsize:
        tf_runs, torch_runs = [], []
        for r in range(args.rounds):
            tf_runs.append(_spawn("tf_steps", gridsize=gridsize, threads=args.threads))
            torch_runs.append(_spawn("torch_steps", gridsize=gridsize, threads=args.threads))
            print(f"steps gridsize {gridsize}: round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
        entry = {}
        for key in ("step_s", "epoch_s", "first_step_s"):
            entry[f"tf_{key}"] = _median(tf_runs, key)
            entry[f"torch_{key}"] = _median(torch_runs, key)
        entry["steps_per_epoch"] = tf_runs[0]["steps_per_epoch"]
        entry["step_ratio_tf_over_torch"] = entry["tf_step_s"] / entry["torch_step_s"]
        entry["epoch_ratio_tf_over_torch"] = entry["tf_epoch_s"] / entry["torch_epoch_s"]
        figures["steps"][f"gridsize_{gridsize}"] = entry

    tf_r = [_spawn("tf_reassembly", threads=args.threads, repeats=3) for _ in range(args.rounds)]
    torch_r = [_spawn("torch_reassembly", threads=args.threads, repeats=3) for _ in range(args.rounds)]
    figures["reassembly"] = {
        "tf_s": _median(tf_r, "backend_s"), "numpy_s_in_tf_process": _median(tf_r, "numpy_s"),
        "torch_s": _median(torch_r, "backend_s"), "numpy_s_in_torch_process": _median(torch_r, "numpy_s"),
        "tf_speedup_vs_numpy": statistics.median(r["numpy_s"] / r["backend_s"] for r in tf_r),
        "torch_speedup_vs_numpy": statistics.median(r["numpy_s"] / r["backend_s"] for r in torch_r),
        "tf_max_abs_diff": max(r["max_abs_diff"] for r in tf_r),
        "torch_max_abs_diff": max(r["max_abs_diff"] for r in torch_r),
    }

    if not args.skip_quality:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="bench_backends_") as tmp:
            common = dict(epochs=args.epochs, groups=args.train_groups, threads=args.threads)
            q_tf = _spawn("tf_quality", out=str(Path(tmp) / "tf"), **common)
            q_torch = _spawn("torch_quality", out=str(Path(tmp) / "torch"), **common)
        figures["quality"] = {
            "settings": {"epochs": args.epochs, "train_groups": args.train_groups, "gridsize": 1},
            "tensorflow": q_tf, "pytorch": q_torch,
            "amplitude_ssim_diff": abs(q_tf["amplitude_ssim"] - q_torch["amplitude_ssim"]),
            "phase_ssim_diff": abs(q_tf["phase_ssim"] - q_torch["phase_ssim"]),
        }
    figures["load_average"] = {"before": load_before, "after": os.getloadavg()[0]}

    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    print(f"TensorFlow vs PyTorch on the canonical fixture ({figures['cpus']} CPUs, {args.threads or 'default'} "
          f"thread(s) each, medians of {args.rounds} alternating rounds; load average {load_before:.1f} -> "
          f"{figures['load_average']['after']:.1f})")
    for name, e in figures["steps"].items():
        print(f"  training, {name.replace('_', ' ')}, batch {BATCH}:")
        print(f"    step   TF {1000 * e['tf_step_s']:7.1f} ms   torch {1000 * e['torch_step_s']:7.1f} ms   "
              f"TF/torch {e['step_ratio_tf_over_torch']:.2f}  [target <= 1.5]")
        print(f"    epoch  TF {e['tf_epoch_s']:7.2f} s    torch {e['torch_epoch_s']:7.2f} s    "
              f"TF/torch {e['epoch_ratio_tf_over_torch']:.2f}  ({e['steps_per_epoch']} steps)")
        print(f"    first step (TF: tracing)  TF {e['tf_first_step_s']:.2f} s   torch {e['torch_first_step_s']:.2f} s")
    ra = figures["reassembly"]
    print("  reassembly, 1087 patches -> 272 x 272 (probe weights, 32 x 32 window):")
    print(f"    TF     {ra['tf_s']:7.3f} s   x{ra['tf_speedup_vs_numpy']:.2f} vs numpy {ra['numpy_s_in_tf_process']:.3f} s "
          f"(same process), max |diff| {ra['tf_max_abs_diff']:.1e}")
    print(f"    torch  {ra['torch_s']:7.3f} s   x{ra['torch_speedup_vs_numpy']:.2f} vs numpy {ra['numpy_s_in_torch_process']:.3f} s "
          f"(same process), max |diff| {ra['torch_max_abs_diff']:.1e}")
    if "quality" in figures:
        q = figures["quality"]
        s = q["settings"]
        print(f"  quality, {s['epochs']} epochs on {s['train_groups']} groups, full scan stitched (SSIM in the scanned area):")
        for name in ("tensorflow", "pytorch"):
            r = q[name]
            print(f"    {name:<10} amplitude {r['amplitude_ssim']:.3f} (flat {r['flat_amplitude_ssim']:.3f})   "
                  f"phase {r['phase_ssim']:.3f} (flat {r['flat_phase_ssim']:.3f})   training {r['train_s']:.1f} s, "
                  f"final loss {r['final_loss']:.5f}")
        print(f"    |TF - torch|  amplitude {q['amplitude_ssim_diff']:.3f}   phase {q['phase_ssim_diff']:.3f}   [target <= 0.05]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
