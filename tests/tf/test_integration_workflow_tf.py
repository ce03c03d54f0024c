"""The TensorFlow train -> save -> load -> infer workflow through ``ptycho-train`` / ``ptycho-infer``
as subprocesses on the canonical fixture, CPU only, with the torch integration test's artifact and
quality checks (tests/torch/test_integration_workflow_torch.py): same training settings, PNGs of
the object's shape over 1 KB, SSIM above the flat image's by a margin, Poisson deviance clearly
below the untrained model's. Figures are recorded with ``record_property`` under the same names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ptycho.tf_runtime", reason="TensorFlow is not installed")

from ptycho import params  # noqa: E402
from ptycho.config.config import update_legacy_dict  # noqa: E402
from ptycho.evaluation import QualityFigures, evaluate_reconstruction, scanned_region  # noqa: E402
from ptycho.model_manifest import MANIFEST_NAME, TF_ARCHIVE_NAME  # noqa: E402
from ptycho.raw_data import RawData, generate_grouped_data  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# Same settings and thresholds as the torch integration test.
TRAIN_IMAGES = 512
TRAIN_EPOCHS = 3
SSIM_MARGIN = 0.05
DEVIANCE_RATIO = 0.9
DEVIANCE_GROUPS = 256

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


@dataclass(frozen=True)
class TrainingEvidence:
    figures: QualityFigures
    flat: QualityFigures
    deviance_trained: float
    deviance_untrained: float


def quality_of(recon: np.ndarray, raw: RawData) -> tuple[QualityFigures, QualityFigures]:
    region = scanned_region(raw.positions, raw.objectGuess.shape)
    flat = np.ones_like(raw.objectGuess)
    return evaluate_reconstruction(recon, raw.objectGuess, region), evaluate_reconstruction(flat, raw.objectGuess, region)


def failed_checks(e: TrainingEvidence) -> list[str]:
    failures = []
    if not e.figures.amplitude_ssim > e.flat.amplitude_ssim + SSIM_MARGIN:
        failures.append(f"amplitude SSIM {e.figures.amplitude_ssim:.3f} not above flat {e.flat.amplitude_ssim:.3f} + {SSIM_MARGIN}")
    if not e.figures.phase_ssim > e.flat.phase_ssim + SSIM_MARGIN:
        failures.append(f"phase SSIM {e.figures.phase_ssim:.3f} not above flat {e.flat.phase_ssim:.3f} + {SSIM_MARGIN}")
    if not e.deviance_trained < DEVIANCE_RATIO * e.deviance_untrained:
        failures.append(f"deviance {e.deviance_trained:.4g} not below {DEVIANCE_RATIO} x untrained {e.deviance_untrained:.4g}")
    return failures


def _deviance_pair(trained, untrained, raw: RawData) -> tuple[float, float]:
    from ptycho.workflows.components import poisson_deviance_on

    update_legacy_dict(params.cfg, trained.cfg)  # CONFIG-001 before grouping
    grouped = generate_grouped_data(raw, n_groups=DEVIANCE_GROUPS, seed=0)
    return poisson_deviance_on(trained, grouped), poisson_deviance_on(untrained, grouped)


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
    from ptycho.workflows.components import initial_model, load_inference_bundle

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
    expected_shape = list(raw.objectGuess.shape)
    amp_png = infer_dir / "reconstruction_amplitude.png"
    phase_png = infer_dir / "reconstruction_phase.png"
    record_property("amplitude_png", str(amp_png))
    record_property("phase_png", str(phase_png))
    record_property("expected_png_shape", json.dumps(expected_shape))
    with np.load(infer_dir / "reconstruction.npz", allow_pickle=False) as npz:
        recon = npz["reconstruction"]
        assert json.loads(str(npz["_metadata"]))["backend"] == "tensorflow"
    assert list(recon.shape) == expected_shape
    for png in (amp_png, phase_png):
        assert png.is_file() and png.stat().st_size > 1024, f"{png}: missing or under 1 KB (ARTIF-002)"
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.format == "PNG" and [im.size[1], im.size[0]] == expected_shape

    # did training do something real?
    figures, flat = quality_of(recon, raw)
    model, saved = load_inference_bundle(train_dir)
    dev_trained, dev_untrained = _deviance_pair(model, initial_model(model, saved["manifest"]), raw)
    evidence = TrainingEvidence(figures, flat, dev_trained, dev_untrained)
    for name in ("amplitude_ssim", "phase_ssim", "amplitude_psnr", "phase_psnr", "amplitude_frc50", "phase_frc50"):
        record_property(name, round(float(getattr(figures, name)), 5))
    record_property("flat_amplitude_ssim", round(flat.amplitude_ssim, 5))
    record_property("flat_phase_ssim", round(flat.phase_ssim, 5))
    record_property("deviance_trained", round(dev_trained, 4))
    record_property("deviance_untrained", round(dev_untrained, 4))
    assert not failed_checks(evidence), failed_checks(evidence)


def test_untrained_model_fails_the_training_checks(canonical_dataset):
    """The checks above are not vacuous: the untrained Keras model fails both SSIM and deviance."""
    import keras

    from ptycho.config.config import ModelConfig
    from ptycho.model import build_model
    from ptycho.workflows.components import reconstruct

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
