"""Real end-to-end routing through the dispatcher on a tiny scan (brief §1.4): each backend trains,
saves, reloads and reconstructs, and returns the same ``(amplitude, phase, results)`` structure.
The TensorFlow path runs in a fresh interpreter that must end without torch, Lightning or
``ptycho_torch`` in ``sys.modules``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.simulate import CanonicalSpec, simulate_spec

# Keras' Variable.numpy() trips numpy 2's __array__ copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

REPO = Path(__file__).resolve().parents[2]
TINY = CanonicalSpec(seed=5, n=32, grid=8, count=64, step=4.0, jitter=0.3, nphotons=1e6, object_kind="mixed")


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("routing") / "tiny_n32.npz"
    simulate_spec(TINY).to_file(path)
    return path


TF_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig
    from ptycho.workflows.backend_selector import load_inference_bundle_with_backend, run_cdi_example_with_backend
    from ptycho.cli import infer_main

    data, out = Path(sys.argv[1]), Path(sys.argv[2])
    config = TrainingConfig(model=ModelConfig(N=32, gridsize=2), nepochs=1, batch_size=16, output_dir=out / "model")
    amplitude, phase, results = run_cdi_example_with_backend(data, data, config, do_stitching=True)
    model, saved = load_inference_bundle_with_backend(out / "model", InferenceConfig(model=config.model))
    code = infer_main(["--model_path", str(out / "model"), "--test_data", str(data), "--output_dir", str(out / "infer"), "--no_deviance"])
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "ptycho_torch", "lightning", "lightning_fabric", "torchmetrics"))
    print(json.dumps({
        "backend": results["backend"], "saved_backend": saved["backend"], "shape": list(amplitude.shape),
        "phase_shape": list(phase.shape), "finite": bool((amplitude == amplitude).all()), "archive": str(results["checkpoint_path"]),
        "deviance": results["poisson_deviance"], "cli": code, "gridsize": saved["gridsize"], "leaked": leaked,
    }))
    """
)


@pytest.mark.slow
def test_tensorflow_route_trains_reconstructs_and_never_imports_torch(tiny_npz, tmp_path):
    pytest.importorskip("tensorflow")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run(
        [sys.executable, "-c", TF_SCRIPT, str(tiny_npz), str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["leaked"] == [], f"the TensorFlow path imported {report['leaked']}"
    assert report["backend"] == "tensorflow" and report["saved_backend"] == "tensorflow"
    obj_shape = list(simulate_spec(TINY).objectGuess.shape)
    assert report["shape"] == obj_shape and report["phase_shape"] == obj_shape and report["finite"]
    assert Path(report["archive"]).name == "wts.h5.zip" and Path(report["archive"]).is_file()
    assert report["gridsize"] == 2 and report["cli"] == 0 and report["deviance"] > 0
    assert (tmp_path / "infer" / "reconstruction_amplitude.png").stat().st_size > 1024


@pytest.mark.slow
def test_pytorch_route_returns_the_same_structure(tiny_npz, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("lightning")
    from ptycho.workflows.backend_selector import run_cdi_example_with_backend

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    config = TrainingConfig(
        model=ModelConfig(N=32, gridsize=2), nepochs=1, batch_size=16, output_dir=tmp_path / "model", backend="pytorch"
    )
    amplitude, phase, results = run_cdi_example_with_backend(tiny_npz, tiny_npz, config, do_stitching=True)
    assert results["backend"] == "pytorch"
    obj_shape = simulate_spec(TINY).objectGuess.shape
    assert amplitude.shape == phase.shape == obj_shape and np.isfinite(amplitude).all()
    assert (tmp_path / "model" / "checkpoints" / "last.ckpt").is_file()
    # The keys both backends promise (TensorFlow's are checked in the subprocess above).
    for key in ("history", "models", "checkpoint_path", "obj_tensor_full", "recon_amp", "recon_phase", "global_offsets"):
        assert key in results, key
