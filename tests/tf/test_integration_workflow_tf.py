"""The TensorFlow train -> save -> load -> infer workflow through ``ptycho-train`` / ``ptycho-infer``
as subprocesses on the canonical fixture, CPU only, with the torch integration test's artifact and
quality checks (tests/integration_evidence.py, shared with tests/torch/test_integration_workflow_torch.py):
same training settings, PNGs of the object's shape over 1 KB, SSIM above the flat image's by a
margin, Poisson deviance clearly below the untrained model's. Figures are recorded with
``record_property`` under the same names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ptycho.tf_backend.runtime", reason="TensorFlow is not installed")

from integration_evidence import (  # noqa: E402
    TRAIN_EPOCHS,
    TRAIN_IMAGES,
    TrainingEvidence,
    checked_reconstruction,
    deviance_pair,
    failed_checks,
    quality_of,
    record_evidence,
)

from ptycho import params  # noqa: E402
from ptycho.config.config import update_legacy_dict  # noqa: E402
from ptycho.model_manifest import MANIFEST_NAME, TF_ARCHIVE_NAME  # noqa: E402
from ptycho.raw_data import RawData  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


def _deviance_pair(trained, untrained, raw: RawData) -> tuple[float, float]:
    from ptycho.tf_backend.inference import poisson_deviance_on

    return deviance_pair(poisson_deviance_on, trained, untrained, raw, trained.cfg)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _run(args: list[str]) -> tuple[subprocess.CompletedProcess, float]:
    """``python -m ptycho.cli {train,infer} ...``: the console scripts, installed or not."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ptycho.cli", *args], capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    return proc, time.perf_counter() - start


@pytest.mark.integration
@pytest.mark.slow
def test_run_tensorflow_train_save_load_infer(canonical_dataset, tmp_path, record_property):
    from ptycho.tf_backend.workflows.components import initial_model, load_inference_bundle

    train_dir = tmp_path / "training_outputs"
    infer_dir = tmp_path / "tensorflow_output"
    data = str(canonical_dataset)

    # train -> save
    train, train_s = _run([
        "train", "--backend", "tensorflow", "--train_data_file", data, "--test_data_file", data,
        "--output_dir", str(train_dir), "--max_epochs", str(TRAIN_EPOCHS), "--n_images", str(TRAIN_IMAGES),
        "--gridsize", "1", "--batch_size", "16", "--accelerator", "cpu", "--val_images", "32", "--json",
    ])
    record_property("train_seconds", round(train_s, 2))
    assert train.returncode == 0, f"training failed (rc {train.returncode}):\n{train.stderr[-4000:]}"
    summary = json.loads(train.stdout.strip().splitlines()[-1])
    assert summary["backend"] == "tensorflow" and summary["epochs"] == TRAIN_EPOCHS
    assert summary["global_step"] == TRAIN_EPOCHS * TRAIN_IMAGES // 16
    assert len(summary["history"]["train_loss"]) == len(summary["history"]["val_loss"]) == TRAIN_EPOCHS

    archive = train_dir / TF_ARCHIVE_NAME
    record_property("checkpoint_path", str(archive))
    assert archive.is_file(), f"missing model archive {archive} (ARTIF-001)"
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read(MANIFEST_NAME))
        assert not [n for n in zf.namelist() if n.endswith((".pkl", ".pickle"))]
    assert manifest["backend"] == "tensorflow"
    assert {"model", "training", "inference"} <= set(manifest["configs"])
    assert manifest["configs"]["training"]["nepochs"] == TRAIN_EPOCHS

    # load -> infer
    infer, infer_s = _run([
        "infer", "--backend", "tensorflow", "--model_path", str(train_dir), "--test_data", data,
        "--output_dir", str(infer_dir), "--accelerator", "cpu", "--json",
    ])
    record_property("infer_seconds", round(infer_s, 2))
    assert infer.returncode == 0, f"inference failed (rc {infer.returncode}):\n{infer.stderr[-4000:]}"

    raw = RawData.from_file(canonical_dataset)
    recon = checked_reconstruction(infer_dir, raw, record_property)
    with np.load(infer_dir / "reconstruction.npz", allow_pickle=False) as npz:
        assert json.loads(str(npz["_metadata"]))["backend"] == "tensorflow"

    # did training do something real?
    figures, flat = quality_of(recon, raw)
    model, saved = load_inference_bundle(train_dir)
    dev_trained, dev_untrained = _deviance_pair(model, initial_model(model, saved["manifest"]), raw)
    evidence = TrainingEvidence(figures, flat, dev_trained, dev_untrained)
    record_evidence(evidence, record_property)
    assert not failed_checks(evidence), failed_checks(evidence)


def test_untrained_model_fails_the_training_checks(canonical_dataset):
    """The checks above are not vacuous: the untrained Keras model fails both SSIM and deviance."""
    import keras

    from ptycho.config.config import ModelConfig
    from ptycho.tf_backend.network import build_model
    from ptycho.tf_backend.inference import reconstruct

    raw = RawData.from_file(canonical_dataset)
    cfg = ModelConfig(N=raw.N, gridsize=1)
    update_legacy_dict(params.cfg, cfg)
    keras.utils.set_random_seed(42)
    untrained = build_model(cfg, raw.probeGuess)
    recon, _ = reconstruct(untrained, raw, with_deviance=False)
    figures, flat = quality_of(recon.obj, raw)
    dev, dev_ref = _deviance_pair(untrained, untrained, raw)
    failures = failed_checks(TrainingEvidence(figures, flat, dev, dev_ref))
    assert any("deviance" in f for f in failures) and any("SSIM" in f for f in failures), failures
