"""The brief's integration selector (§2.1.1): train -> save -> load -> infer through the two CLIs as
subprocesses on the canonical fixture, CPU only, with checks that training did something real.

Run: CUDA_VISIBLE_DEVICES="" pytest tests/torch/test_integration_workflow_torch.py::test_run_pytorch_train_save_load_infer -vv

Recorded with ``record_property`` for the harness: artifact paths (kept under pytest's basetemp),
the PNG shape, amplitude/phase SSIM and PSNR against the ground truth with the flat-image
baselines, and the Poisson deviance of the trained and the untrained model.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ptycho import params
from ptycho.config.config import update_legacy_dict
from ptycho.evaluation import QualityFigures, evaluate_reconstruction, scanned_region
from ptycho.raw_data import RawData, generate_grouped_data
from ptycho_torch.inference import poisson_deviance_on, reconstruct
from ptycho_torch.model_manager import initial_network, load_torch_bundle

# The short training of the selector: enough to beat a flat image clearly, small enough for the
# brief's runtime budget (two CLI processes, one of them importing Lightning).
TRAIN_IMAGES = 512
TRAIN_EPOCHS = 3
# The checks: SSIM above the flat image's by these margins; deviance below this fraction of the
# untrained model's (the deviance is zero for a perfect model).
SSIM_MARGIN = 0.05
DEVIANCE_RATIO = 0.9
# Groups the deviances are compared on (a fixed, seeded subset: same groups for both models).
DEVIANCE_GROUPS = 256


@dataclass(frozen=True)
class TrainingEvidence:
    figures: QualityFigures
    flat: QualityFigures
    deviance_trained: float
    deviance_untrained: float


def quality_of(recon: np.ndarray, raw: RawData) -> tuple[QualityFigures, QualityFigures]:
    """Figures of ``recon`` and of a flat image against the ground truth, inside the scanned area."""
    region = scanned_region(raw.positions, raw.objectGuess.shape)
    flat = np.ones_like(raw.objectGuess)
    return evaluate_reconstruction(recon, raw.objectGuess, region), evaluate_reconstruction(flat, raw.objectGuess, region)


def failed_checks(e: TrainingEvidence) -> list[str]:
    """What says the model did not learn; empty when training did something real."""
    failures = []
    if not e.figures.amplitude_ssim > e.flat.amplitude_ssim + SSIM_MARGIN:
        failures.append(f"amplitude SSIM {e.figures.amplitude_ssim:.3f} not above flat {e.flat.amplitude_ssim:.3f} + {SSIM_MARGIN}")
    if not e.figures.phase_ssim > e.flat.phase_ssim + SSIM_MARGIN:
        failures.append(f"phase SSIM {e.figures.phase_ssim:.3f} not above flat {e.flat.phase_ssim:.3f} + {SSIM_MARGIN}")
    if not e.deviance_trained < DEVIANCE_RATIO * e.deviance_untrained:
        failures.append(f"deviance {e.deviance_trained:.4g} not below {DEVIANCE_RATIO} x untrained {e.deviance_untrained:.4g}")
    return failures


def _deviance_pair(trained, untrained, raw: RawData, model_config) -> tuple[float, float]:
    update_legacy_dict(params.cfg, model_config)  # CONFIG-001 before grouping
    grouped = generate_grouped_data(raw, n_groups=DEVIANCE_GROUPS, seed=0)
    return poisson_deviance_on(trained, grouped), poisson_deviance_on(untrained, grouped)


def _run(cmd: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    return proc, time.perf_counter() - start


@pytest.mark.integration
@pytest.mark.slow
def test_run_pytorch_train_save_load_infer(tmp_path, canonical_npz, cli_env, python_exe, record_property):
    train_dir = tmp_path / "training_outputs"
    infer_dir = tmp_path / "pytorch_output"
    env = cli_env()
    assert env["CUDA_VISIBLE_DEVICES"] == ""

    # train -> save
    train, train_s = _run(
        [python_exe, "-m", "ptycho_torch.train", "--train_data_file", str(canonical_npz), "--test_data_file", str(canonical_npz),
         "--output_dir", str(train_dir), "--max_epochs", str(TRAIN_EPOCHS), "--n_images", str(TRAIN_IMAGES),
         "--gridsize", "1", "--batch_size", "16", "--accelerator", "cpu", "--val_images", "32", "--json"],
        env,
    )
    record_property("train_seconds", round(train_s, 2))
    assert train.returncode == 0, f"training failed (rc {train.returncode}):\n{train.stderr[-4000:]}"

    ckpt = train_dir / "checkpoints" / "last.ckpt"
    record_property("checkpoint_path", str(ckpt))
    assert ckpt.is_file(), f"missing checkpoint {ckpt} (ARTIF-001)"
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert checkpoint.get("hyper_parameters") is not None, "checkpoint lacks hyper_parameters (ARTIF-001)"
    assert set(checkpoint["hyper_parameters"]) == {"model_config", "data_config", "training_config", "inference_config"}
    assert json.loads((train_dir / "manifest.json").read_text())["backend"] == "pytorch"

    # load -> infer
    infer, infer_s = _run(
        [python_exe, "-m", "ptycho_torch.inference", "--model_path", str(train_dir), "--test_data", str(canonical_npz),
         "--output_dir", str(infer_dir), "--accelerator", "cpu", "--json"],
        env,
    )
    record_property("infer_seconds", round(infer_s, 2))
    assert infer.returncode == 0, f"inference failed (rc {infer.returncode}):\n{infer.stderr[-4000:]}"

    raw = RawData.from_file(canonical_npz)
    expected_shape = list(raw.objectGuess.shape)
    amp_png = infer_dir / "reconstruction_amplitude.png"
    phase_png = infer_dir / "reconstruction_phase.png"
    record_property("amplitude_png", str(amp_png))
    record_property("phase_png", str(phase_png))
    record_property("expected_png_shape", json.dumps(expected_shape))
    with np.load(infer_dir / "reconstruction.npz", allow_pickle=False) as npz:
        recon = npz["reconstruction"]
    assert list(recon.shape) == expected_shape
    for png in (amp_png, phase_png):
        assert png.is_file() and png.stat().st_size > 1024, f"{png}: missing or under 1 KB (ARTIF-002)"
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.format == "PNG" and [im.size[1], im.size[0]] == expected_shape

    # did training do something real?
    figures, flat = quality_of(recon, raw)
    bundle = load_torch_bundle(train_dir)
    dev_trained, dev_untrained = _deviance_pair(bundle.network, initial_network(bundle), raw, bundle.model_config)
    evidence = TrainingEvidence(figures, flat, dev_trained, dev_untrained)
    for name in ("amplitude_ssim", "phase_ssim", "amplitude_psnr", "phase_psnr", "amplitude_frc50", "phase_frc50"):
        record_property(name, round(float(getattr(figures, name)), 5))
    record_property("flat_amplitude_ssim", round(flat.amplitude_ssim, 5))
    record_property("flat_phase_ssim", round(flat.phase_ssim, 5))
    record_property("deviance_trained", round(dev_trained, 4))
    record_property("deviance_untrained", round(dev_untrained, 4))
    assert not failed_checks(evidence), failed_checks(evidence)


@pytest.mark.integration
@pytest.mark.slow
def test_broken_models_fail_the_training_checks(canonical_npz):
    """The checks above are not vacuous: an untrained model, and one trained with the physics taken
    out of its loss, both fail them."""
    from ptycho.config.config import ModelConfig
    from ptycho_torch.network import PtychoPINN
    from ptycho_torch.physics import poisson_nll

    raw = RawData.from_file(canonical_npz)
    cfg = ModelConfig(N=raw.N, gridsize=1)
    update_legacy_dict(params.cfg, cfg)

    def evidence(network, reference) -> TrainingEvidence:
        recon, _ = reconstruct(network, raw, with_deviance=False)
        figures, flat = quality_of(recon.obj, raw)
        trained, untrained = _deviance_pair(network, reference, raw, cfg)
        return TrainingEvidence(figures, flat, trained, untrained)

    def fresh() -> PtychoPINN:
        torch.manual_seed(42)
        return PtychoPINN(cfg, torch.from_numpy(raw.probeGuess))

    # 1. untrained weights
    untrained = evidence(fresh(), fresh())
    failures = failed_checks(untrained)
    assert any("deviance" in f for f in failures) and any("SSIM" in f for f in failures), failures

    # 2. physics removed from the loss: the object amplitude itself is fitted to the diffraction
    net = fresh()
    grouped = generate_grouped_data(raw, n_groups=TRAIN_IMAGES, seed=42)
    x_all = torch.from_numpy(grouped.X)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(TRAIN_EPOCHS):
        for idx in torch.randperm(len(x_all), generator=generator).split(16):
            x = x_all[idx]
            amplitude, _ = net.predict_object(x)
            loss = poisson_nll(amplitude**2, x**2)  # no illumination, no propagation
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    no_physics = evidence(net.eval(), fresh())
    assert failed_checks(no_physics), "a model trained without the physics passed the checks"
