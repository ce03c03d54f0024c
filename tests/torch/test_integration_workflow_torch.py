"""The brief's integration selector (§2.1.1): train -> save -> load -> infer through the two CLIs as
subprocesses on the canonical fixture, CPU only, with checks that training did something real.

Run: CUDA_VISIBLE_DEVICES="" pytest tests/torch/test_integration_workflow_torch.py::test_run_pytorch_train_save_load_infer -vv

Recorded with ``record_property`` for the harness: artifact paths (kept under pytest's basetemp),
the PNG shape, amplitude/phase SSIM and PSNR against the ground truth with the flat-image
baselines, and the Poisson deviance of the trained and the untrained model. The settings, checks
and recorded names are tests/integration_evidence.py's, shared with the TensorFlow test.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import torch
from integration_evidence import (
    TRAIN_EPOCHS,
    TRAIN_IMAGES,
    TrainingEvidence,
    checked_reconstruction,
    deviance_pair,
    failed_checks,
    quality_of,
    record_evidence,
)

from ptycho import params
from ptycho.config.config import update_legacy_dict
from ptycho.raw_data import RawData, generate_grouped_data
from ptycho_torch.inference import poisson_deviance_on, reconstruct
from ptycho_torch.model_manager import initial_network, load_torch_bundle


def _deviance_pair(trained, untrained, raw: RawData, model_config) -> tuple[float, float]:
    return deviance_pair(poisson_deviance_on, trained, untrained, raw, model_config)


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
    recon = checked_reconstruction(infer_dir, raw, record_property)

    # did training do something real?
    figures, flat = quality_of(recon, raw)
    bundle = load_torch_bundle(train_dir)
    dev_trained, dev_untrained = _deviance_pair(bundle.network, initial_network(bundle), raw, bundle.model_config)
    evidence = TrainingEvidence(figures, flat, dev_trained, dev_untrained)
    record_evidence(evidence, record_property)
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
