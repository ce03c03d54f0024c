"""The integration selector's train -> save -> load -> infer cycle, timed by phase.

Runs ``tests/torch/test_integration_workflow_torch.py::test_run_pytorch_train_save_load_infer``
under pytest several times (each with its own basetemp), and prints the median wall time of the
test and of each phase, read from what the two CLI processes report (``train_summary.json``,
``inference_summary.json``) and what the test records (SSIMs, deviances):

- train process: start-up + imports (interpreter, torch, Lightning), data, training, checkpoint
- inference process: start-up + imports, model load, data + grouping, inference, stitching, PNG
- the test's own checks (quality figures, deviances of the trained and untrained model)

    .venv/bin/python benchmarks/integration_workflow.py [--runs 3] [--json]

Wall times depend on the machine's load: run it on an otherwise idle machine for the brief's
baseline comparison (target: median at most 30 s on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SELECTOR = "tests/torch/test_integration_workflow_torch.py::test_run_pytorch_train_save_load_infer"


def _run_once(index: int, workdir: Path) -> dict[str, float]:
    junit = workdir / f"run{index}.xml"
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", SELECTOR, "-q", "-p", "no:cacheprovider", "-o", "junit_family=legacy",
         f"--junitxml={junit}", f"--basetemp={workdir / f'bt{index}'}"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    pytest_wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"run {index}: the selector failed (rc {proc.returncode}):\n{proc.stdout[-3000:]}")
    case = next(ET.parse(junit).iter("testcase"))
    props = {p.get("name"): p.get("value") for p in case.iter("property")}
    train_dir = Path(props["checkpoint_path"]).parents[1]
    infer_dir = Path(props["amplitude_png"]).parent
    t = json.loads((train_dir / "train_summary.json").read_text())["timings_s"]
    i = json.loads((infer_dir / "inference_summary.json").read_text())["timings_s"]
    train_s, infer_s, test_s = float(props["train_seconds"]), float(props["infer_seconds"]), float(case.get("time"))
    figures = {
        "pytest_process_s": pytest_wall,
        "test_s": test_s,
        "train_process_s": train_s,
        "train_startup_imports_s": train_s - t["data"] - t["training"] - t["checkpoint"],
        "train_data_s": t["data"],
        "training_s": t["training"],
        "checkpoint_s": t["checkpoint"],
        "infer_process_s": infer_s,
        "infer_startup_imports_s": infer_s - sum(i[k] for k in ("load_model", "data", "grouping", "inference", "stitching", "png")),
        "load_model_s": i["load_model"],
        "infer_data_s": i["data"] + i["grouping"],
        "inference_s": i["inference"],
        "stitching_s": i["stitching"],
        "png_s": i["png"],
        "test_checks_s": test_s - train_s - infer_s,
    }
    for key in ("amplitude_ssim", "phase_ssim", "flat_amplitude_ssim", "flat_phase_ssim", "amplitude_psnr", "phase_psnr",
                "deviance_trained", "deviance_untrained"):
        figures[key] = float(props[key])
    return figures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="repetitions (at least 3)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.runs < 3:
        p.error("--runs: at least 3 (the figures are medians)")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_integration_") as tmp:
        runs = []
        for index in range(args.runs):
            runs.append(_run_once(index, Path(tmp)))
            print(f"run {index + 1}/{args.runs}: test {runs[-1]['test_s']:.1f} s", file=sys.stderr, flush=True)
    medians = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    result = {"runs": args.runs, "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
              "cpus": os.cpu_count(), "median": medians, "all": runs}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    m = medians
    print(f"integration selector, median of {args.runs} runs ({os.cpu_count()} CPUs, load average "
          f"{load_before:.1f} before, {result['load_average_after']:.1f} after)")
    print(f"  test (pytest duration)           {m['test_s']:7.2f} s   [brief: 36 +- 5 s baseline, warn > 60, fail > 90]")
    print(f"  pytest process incl. collection  {m['pytest_process_s']:7.2f} s")
    print(f"  train process                    {m['train_process_s']:7.2f} s")
    for key, label in (("train_startup_imports_s", "start-up + imports (torch, Lightning)"), ("train_data_s", "data load + grouping"),
                       ("training_s", "training"), ("checkpoint_s", "checkpoint + manifest")):
        print(f"    {label:<34}{m[key]:7.2f} s")
    print(f"  inference process                {m['infer_process_s']:7.2f} s")
    for key, label in (("infer_startup_imports_s", "start-up + imports (torch)"), ("load_model_s", "model load"),
                       ("infer_data_s", "data load + grouping"), ("inference_s", "inference (+ deviance)"),
                       ("stitching_s", "stitching"), ("png_s", "npz + PNG")):
        print(f"    {label:<34}{m[key]:7.2f} s")
    print(f"  the test's checks (in-process)   {m['test_checks_s']:7.2f} s")
    print(f"  amplitude SSIM {m['amplitude_ssim']:.3f} (flat {m['flat_amplitude_ssim']:.3f}), "
          f"phase SSIM {m['phase_ssim']:.3f} (flat {m['flat_phase_ssim']:.3f}), "
          f"PSNR {m['amplitude_psnr']:.2f} / {m['phase_psnr']:.2f} dB")
    print(f"  Poisson deviance trained {m['deviance_trained']:.4g} vs untrained {m['deviance_untrained']:.4g} "
          f"(ratio {m['deviance_trained'] / m['deviance_untrained']:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
