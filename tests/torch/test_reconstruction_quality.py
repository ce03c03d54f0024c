"""Reconstruction quality gate (nightly; beyond the brief): a model can keep passing the integration
selector while its reconstructions silently get worse.

A longer, seeded training on the canonical fixture (gridsize 2, overlap constraint on), the whole
scan stitched, and amplitude/phase SSIM, PSNR and FRC-0.5 against the ground truth (inside the
scanned area, after scale and phase alignment) held against ``tests/fixtures/quality_baseline.json``
minus its stated tolerance. The training runs a fixed number of epochs (not a time budget), so the
figures do not depend on the machine's load, only on the platform's arithmetic.

Refresh the baseline (after an intended change, from a real run) with the command stored in it:

    PTYCHO_WRITE_QUALITY_BASELINE=1 CUDA_VISIBLE_DEVICES="" .venv/bin/pytest tests/torch/test_reconstruction_quality.py -v
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.evaluation import evaluate_reconstruction, scanned_region
from ptycho.raw_data import RawData

BASELINE = Path(__file__).resolve().parents[1] / "fixtures" / "quality_baseline.json"
WRITE_COMMAND = (
    'PTYCHO_WRITE_QUALITY_BASELINE=1 CUDA_VISIBLE_DEVICES="" .venv/bin/pytest '
    "tests/torch/test_reconstruction_quality.py -v"
)
# The training the baseline was measured with; the test refuses a baseline made with another.
QUALITY_RUN = {
    "dataset": "canonical (ptycho.simulate.CANONICAL: 1087 positions, 64 x 64, 272 x 272 object)",
    "gridsize": 2,
    "n_filters_scale": 1,
    "nepochs": 32,
    "n_groups": None,
    "batch_size": 16,
    "learning_rate": 1e-3,
    "seed": 42,
}
REFERENCE_SWEEPS = 30  # ePIE sweeps of the iterative reference (about 10 s here; SSIM ~1.0 at this dose)
METRICS = ("amplitude_ssim", "phase_ssim", "amplitude_psnr", "phase_psnr", "amplitude_frc50", "phase_frc50")
# Allowed drop below the baseline (platform arithmetic differs slightly; a real regression is larger).
TOLERANCE = {"ssim": 0.03, "psnr": 1.0, "frc50": 0.05}


def _tolerance(metric: str) -> float:
    return TOLERANCE[metric.split("_", 1)[1]]


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_reconstruction_quality_against_baseline(canonical_npz, tmp_path, record_property):
    from ptycho_torch.workflows.components import TorchExecution, run_cdi_example_torch

    writing = os.environ.get("PTYCHO_WRITE_QUALITY_BASELINE") == "1"
    baseline = None
    if not writing:
        assert BASELINE.is_file(), f"{BASELINE}: missing; create it with: {WRITE_COMMAND}"
        baseline = json.loads(BASELINE.read_text())
        assert baseline["run"] == QUALITY_RUN, (
            f"{BASELINE} was measured with {baseline['run']}, the test trains {QUALITY_RUN}; refresh it: {WRITE_COMMAND}"
        )

    config = TrainingConfig(
        model=ModelConfig(N=64, gridsize=QUALITY_RUN["gridsize"], n_filters_scale=QUALITY_RUN["n_filters_scale"]),
        train_data_file=canonical_npz, batch_size=QUALITY_RUN["batch_size"], nepochs=QUALITY_RUN["nepochs"],
        n_groups=QUALITY_RUN["n_groups"], learning_rate=QUALITY_RUN["learning_rate"], output_dir=tmp_path / "model",
        backend="pytorch",
    )
    start = time.perf_counter()
    _, _, results = run_cdi_example_torch(
        canonical_npz, canonical_npz, config, do_stitching=True,
        execution=TorchExecution(seed=QUALITY_RUN["seed"], val_images=0, progress_bar=False),
    )
    seconds = time.perf_counter() - start
    raw = RawData.from_file(canonical_npz)
    region = scanned_region(raw.positions, raw.objectGuess.shape)
    figures = evaluate_reconstruction(results["obj_tensor_full"], raw.objectGuess, region).as_dict()
    flat = evaluate_reconstruction(raw.objectGuess * 0 + 1, raw.objectGuess, region)

    for metric in METRICS:
        record_property(metric, round(figures[metric], 5))
    record_property("flat_amplitude_ssim", round(flat.amplitude_ssim, 5))
    record_property("flat_phase_ssim", round(flat.phase_ssim, 5))
    record_property("train_and_reconstruct_seconds", round(seconds, 1))
    record_property("final_train_loss", results["history"]["train_loss"][-1])
    record_property("checkpoint_path", str(results["checkpoint_path"]))

    # Issue 9 §2: the absolute yardstick. An iterative reconstruction (ePIE, known probe, a fixed
    # sweep count so the figure does not depend on the machine's load) of the same scan: the
    # network's SSIM as a fraction of the reference's, and the network against the registered
    # reference itself -- the only figure that exists for experimental data (no ground truth).
    from ptycho.iterative import compare_to_reference, reference_reconstruction, truth_figures

    reference = reference_reconstruction(raw, "epie", iterations=REFERENCE_SWEEPS, seed=0)
    reference_truth = truth_figures(reference, raw)
    versus_reference, registration = compare_to_reference(results["obj_tensor_full"], reference, raw.positions)
    reference_figures = {
        "reference_amplitude_ssim": reference_truth.amplitude_ssim,
        "reference_phase_ssim": reference_truth.phase_ssim,
        "amplitude_ssim_fraction_of_reference": figures["amplitude_ssim"] / reference_truth.amplitude_ssim,
        "phase_ssim_fraction_of_reference": figures["phase_ssim"] / reference_truth.phase_ssim,
        "amplitude_ssim_vs_reference": versus_reference.amplitude_ssim,
        "phase_ssim_vs_reference": versus_reference.phase_ssim,
    }
    for name, value in reference_figures.items():
        record_property(name, round(value, 5))
    record_property("reference_registration_shift_px", [round(float(v), 3) for v in registration.shift])
    # The reference itself must be trustworthy for the fractions to mean anything.
    assert reference_truth.amplitude_ssim > 0.9, f"iterative reference too poor to judge by: {reference_truth}"
    # Without ground truth the comparison must still tell the network's quality: it tracks the
    # truth figure (measured within ~0.05 on this scan, see benchmarks/pinn_vs_iterative.py).
    assert abs(versus_reference.amplitude_ssim - figures["amplitude_ssim"]) < 0.1, (
        f"network vs reference {versus_reference.amplitude_ssim:.3f} does not track network vs truth "
        f"{figures['amplitude_ssim']:.3f}"
    )

    if writing:
        BASELINE.write_text(json.dumps({
            "run": QUALITY_RUN,
            "figures": {m: round(figures[m], 5) for m in METRICS},
            "flat_image": {"amplitude_ssim": round(flat.amplitude_ssim, 5), "phase_ssim": round(flat.phase_ssim, 5)},
            "tolerance": TOLERANCE,
            "tolerance_rule": "fail when a figure < baseline - tolerance (ssim/frc50 absolute, psnr in dB)",
            "command": WRITE_COMMAND,
            "measured": {
                "utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "seconds": round(seconds, 1),
                "load_average": round(os.getloadavg()[0], 2),
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_implementation()} {platform.python_version()}",
            },
        }, indent=2) + "\n")
        return

    failures = [
        f"{m} {figures[m]:.4f} < baseline {baseline['figures'][m]:.4f} - {_tolerance(m)}"
        for m in METRICS
        if figures[m] < baseline["figures"][m] - _tolerance(m)
    ]
    assert not failures, "reconstruction quality regressed: " + "; ".join(failures)
