"""The TensorFlow train -> save -> load -> infer workflow through the command line (subprocesses),
with the artifact and quality checks of the torch integration test (brief §2.1.1, §3.1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from ptycho.evaluation import evaluate_reconstruction, scanned_region  # noqa: E402
from ptycho.model_manifest import MANIFEST_NAME, TF_ARCHIVE_NAME  # noqa: E402
from ptycho.raw_data import RawData  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 3
TRAIN_GROUPS = 512


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _run(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "ptycho.cli", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_env(), cwd=REPO, timeout=300)
    assert result.returncode == 0, f"{args[0]} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")  # (rows, cols)


@pytest.mark.integration
@pytest.mark.slow
def test_run_tensorflow_train_save_load_infer(canonical_dataset, tmp_path):
    train_dir = tmp_path / "training_outputs"
    infer_dir = tmp_path / "inference_outputs"
    data = str(canonical_dataset)

    trained = _run([
        "train", "--backend", "tensorflow", "--train_data_file", data, "--output_dir", str(train_dir),
        "--max_epochs", str(EPOCHS), "--n_images", str(TRAIN_GROUPS), "--gridsize", "1", "--batch_size", "16", "--json",
    ])
    summary = json.loads(trained.stdout.strip().splitlines()[-1])
    assert summary["backend"] == "tensorflow" and summary["epochs"] == EPOCHS
    assert summary["global_step"] == EPOCHS * TRAIN_GROUPS // 16
    losses = summary["history"]["train_loss"]
    assert len(losses) == EPOCHS and all(np.isfinite(losses)) and losses[-1] < losses[0]

    # The model archive: Keras weights + a manifest naming the backend (no pickles).
    archive = train_dir / TF_ARCHIVE_NAME
    assert archive.is_file() and archive.stat().st_size > 10_000
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read(MANIFEST_NAME))
        assert not [n for n in zf.namelist() if n.endswith((".pkl", ".pickle"))]
    assert manifest["backend"] == "tensorflow"
    assert manifest["configs"]["model"]["gridsize"] == 1 and manifest["configs"]["training"]["nepochs"] == EPOCHS
    assert (train_dir / "train_summary.json").is_file()

    inferred = _run([
        "infer", "--backend", "tensorflow", "--model_path", str(train_dir), "--test_data", data,
        "--output_dir", str(infer_dir), "--json",
    ])
    info = json.loads(inferred.stdout.strip().splitlines()[-1])
    raw = RawData.from_file(canonical_dataset)
    assert info["backend"] == "tensorflow" and info["n_groups"] == raw.n_positions
    assert info["canvas_shape"] == list(raw.objectGuess.shape)

    # Reconstruction artifacts (brief §3.1, ARTIF-002): PNGs over 1 KB, one pixel per object pixel.
    for name in ("reconstruction_amplitude.png", "reconstruction_phase.png"):
        png = infer_dir / name
        assert png.is_file() and png.stat().st_size > 1024, f"{name} missing or < 1 KB"
        assert _png_size(png) == raw.objectGuess.shape
    with np.load(infer_dir / "reconstruction.npz", allow_pickle=False) as npz:
        obj = npz["reconstruction"]
        assert json.loads(str(npz["_metadata"]))["backend"] == "tensorflow"
    assert obj.shape == raw.objectGuess.shape and np.all(np.isfinite(obj))

    # Quality: the stitched amplitude beats a flat image inside the scanned area, and the model
    # explains the data (finite Poisson deviance, reported by inference).
    region = scanned_region(raw.positions, obj.shape, margin=8)
    figures = evaluate_reconstruction(obj, raw.objectGuess, region)
    flat = evaluate_reconstruction(np.ones_like(obj), raw.objectGuess, region)
    assert figures.amplitude_ssim > flat.amplitude_ssim + 0.05, (figures, flat)
    assert np.isfinite(info["poisson_deviance"]) and info["poisson_deviance"] > 0
