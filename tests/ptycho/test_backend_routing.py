"""Routing through the backend dispatcher (brief §1.4), end to end and from the command line.

- Real routing on a tiny scan: each backend trains, saves, reloads and reconstructs, and returns the
  same ``(amplitude, phase, results)`` structure. The TensorFlow path runs in a fresh interpreter
  that must end without torch, Lightning or ``ptycho_torch`` in ``sys.modules``.
- ``ptycho-train`` / ``ptycho-infer`` go through the dispatcher: the CONFIG-001 sync comes before a
  backend module is imported, only the selected backend is imported, the summary names the backend
  the results came from, and ``--backend pytorch`` without torch fails with the dispatcher's
  POLICY-001 error. In-process and fast: an import hook serves a recording adapter in place of a
  backend's workflow module (the boundary between the shared workflow and a framework), noting
  ``params.cfg`` when the dispatcher imports it.

The dispatcher's own unit contract (the brief's selector) is ``tests/torch/test_backend_selection.py``.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import numpy as np
import pytest

from ptycho import cli, params
from ptycho.backend_interface import TORCH_UNAVAILABLE_MESSAGE, LoadedModel
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho.model_manifest import make_manifest, write_manifest
from ptycho.raw_data import GroupedData
from ptycho.simulate import CanonicalSpec, simulate_spec
from ptycho.workflows.reconstruction import Reconstruction

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


# --------------------------------------------------------------------------- the command lines

MODULES = {"tensorflow": "ptycho.workflows.components", "pytorch": "ptycho_torch.workflows.components"}


@pytest.fixture
def restore_legacy_dict():
    saved = dict(params.cfg)
    yield
    params.cfg.clear()
    params.cfg.update(saved)


class RecordingAdapter:
    """A Backend that records its calls and answers with minimal well-formed results."""

    training_imports: tuple[str, ...] = ()

    def __init__(self, name: str):
        self.name = name
        self.calls: list[tuple[str, tuple, dict]] = []

    def train(self, train_data, test_data, config, options):
        self.calls.append(("train", (train_data, test_data, config, options), {}))
        grouped = types.SimpleNamespace(X=np.zeros((7, config.model.channels, 32, 32), np.float32))
        return {
            "config": config, "history": {"train_loss": [1.0], "val_loss": None}, "checkpoint_path": config.output_dir / "model",
            "epochs": 1, "global_step": 1, "train_container": grouped, "accelerator": "cpu", "devices": 1,
            "strategy": "auto", "is_global_zero": True, "timings": {"grouping": 0.0, "training": 0.0, "checkpoint": 0.0},
        }

    def load(self, model_path, accelerator="cpu", num_threads=1):
        self.calls.append(("load", (model_path, accelerator, num_threads), {}))
        config = InferenceConfig(model=ModelConfig(N=32, gridsize=2), model_path=model_path, neighbor_count=6, backend=self.name)
        return LoadedModel(model="model", config=config, checkpoint=Path(model_path) / "weights", manifest={},
                           device="dev", device_label="cpu")

    def reconstruct(self, model, raw, *, neighbor_count, **request):
        self.calls.append(("reconstruct", (model, raw), {"neighbor_count": neighbor_count, **request}))
        grouped = GroupedData(
            X=np.zeros((3, 4, 32, 32), np.float32), counts_amplitude=np.zeros((3, 4, 32, 32), np.float32),
            indices=np.zeros((3, 4), int), offsets=np.zeros((3, 4, 2)), centers=np.zeros((3, 2)), scale=1.0, gridsize=2, N=32,
        )
        meta = {"n_groups": 3, "canvas_shape": [40, 40], "poisson_deviance": 0.5}
        return Reconstruction(np.ones((40, 40), np.complex64), np.zeros((12, 2)), np.zeros(12, int), meta), grouped


class ServeRecorder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves a module holding ``BACKEND = RecordingAdapter(backend)`` for one workflow module."""

    def __init__(self, backend: str):
        self.name = MODULES[backend]
        self.adapter = RecordingAdapter(backend)
        self.cfg_at_import: dict | None = None

    def find_spec(self, fullname, path=None, target=None):
        return importlib.util.spec_from_loader(fullname, self) if fullname == self.name else None

    def create_module(self, spec):
        return types.ModuleType(spec.name)

    def exec_module(self, module):
        self.cfg_at_import = dict(params.cfg)
        module.BACKEND = self.adapter


@pytest.fixture
def recorders(monkeypatch, restore_legacy_dict):
    served = {}
    absent = [name for name in MODULES.values() if name not in sys.modules]
    for backend, name in MODULES.items():
        monkeypatch.delitem(sys.modules, name, raising=False)
        parent, _, child = name.rpartition(".")
        if parent in sys.modules and hasattr(sys.modules[parent], child):
            monkeypatch.delattr(sys.modules[parent], child)
        served[backend] = ServeRecorder(backend)
    monkeypatch.setattr(sys, "meta_path", [*served.values(), *sys.meta_path])
    yield served
    # monkeypatch puts back the modules that were imported before; a stand-in imported in place of
    # one that was not must go too, or every later import of that path gets the recorder.
    for name in absent:
        stand_in = sys.modules.pop(name, None)
        parent, _, child = name.rpartition(".")
        if stand_in is not None and getattr(sys.modules.get(parent), child, None) is stand_in:
            delattr(sys.modules[parent], child)


def _summary(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    return json.loads(out[-1])


@pytest.mark.parametrize("backend, other", [("tensorflow", "pytorch"), ("pytorch", "tensorflow")])
def test_the_commands_route_through_the_dispatcher(recorders, backend, other, tiny_npz, tmp_path, capsys):
    if backend == "pytorch":
        pytest.importorskip("torch")  # the dispatcher's POLICY-001 check imports it
    params.cfg.update(N=64, gridsize=1)  # stale values a missing sync would leave
    code = cli.train_main([
        "--backend", backend, "--train_data_file", str(tiny_npz), "--output_dir", str(tmp_path / "model"),
        "--gridsize", "2", "--neighbor_count", "6", "--seed", "3", "--json",
    ])
    assert code == 0, capsys.readouterr().err
    rec = recorders[backend]
    # CONFIG-001: the CLI's configuration reached params.cfg before the backend module was imported.
    assert rec.cfg_at_import is not None, f"{backend} workflow module was not imported"
    assert (rec.cfg_at_import["N"], rec.cfg_at_import["gridsize"], rec.cfg_at_import["backend"]) == (32, 2, backend)
    [(name, (train, test, config, options), _)] = rec.adapter.calls
    assert name == "train" and config.backend == backend and config.model.gridsize == 2 and config.neighbor_count == 6
    assert train.N == 32 and test is None and options.seed == 3 and options.val_images == 0
    summary = _summary(capsys)
    assert summary["backend"] == backend  # results['backend'], set by the dispatcher
    assert json.loads((tmp_path / "model" / "train_summary.json").read_text())["backend"] == backend

    model_dir = tmp_path / "saved"
    write_manifest(model_dir, make_manifest(backend, {}))
    params.cfg.update(N=64, gridsize=1)
    code = cli.infer_main([
        "--backend", backend, "--model_path", str(model_dir), "--test_data", str(tiny_npz),
        "--output_dir", str(tmp_path / "infer"), "--n_images", "3", "--json",
    ])
    assert code == 0, capsys.readouterr().err
    load, reconstruct = rec.adapter.calls[1:]
    assert load[0] == "load" and load[1][0] == model_dir
    # Grouping takes the loaded model's neighbour count explicitly; params.cfg holds the model in use.
    assert reconstruct[0] == "reconstruct" and reconstruct[2]["neighbor_count"] == 6 and reconstruct[2]["n_images"] == 3
    assert (params.cfg["N"], params.cfg["gridsize"], params.cfg["backend"]) == (32, 2, backend)
    summary = _summary(capsys)
    assert summary["backend"] == backend and summary["n_groups"] == 3
    with np.load(tmp_path / "infer" / "reconstruction.npz") as npz:
        assert json.loads(str(npz["_metadata"]))["backend"] == backend
    assert recorders[other].cfg_at_import is None, f"{other} was imported on the {backend} path"


def test_pytorch_without_torch_is_the_dispatchers_error(recorders, monkeypatch, tiny_npz, tmp_path, capsys):
    """POLICY-001 on the command line: ``import torch`` fails, so the dispatcher raises the brief's
    RuntimeError after its CONFIG-001 sync; the command prints it as one line and exits 2, with no
    fallback to TensorFlow and nothing written."""
    for name in [m for m in sys.modules if m == "torch" or m.startswith(("torch.", "ptycho_torch"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    expected = " ".join(TORCH_UNAVAILABLE_MESSAGE.splitlines())
    model_dir = tmp_path / "torch_model"
    write_manifest(model_dir, make_manifest("pytorch", {}))
    for prog, main, argv, synced_gridsize in (
        ("ptycho-train", cli.train_main, ["--backend", "pytorch", "--train_data_file", str(tiny_npz), "--gridsize", "2",
                                          "--output_dir", str(tmp_path / "t")], 2),
        ("ptycho-infer", cli.infer_main, ["--backend", "pytorch", "--model_path", str(model_dir), "--test_data", str(tiny_npz),
                                          "--output_dir", str(tmp_path / "i")], 1),
    ):
        params.cfg.update(N=64, gridsize=3, backend="tensorflow")
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and err.splitlines() == [f"{prog}: error: {expected}"], err
        # The sync came first, as the dispatcher promises (inference: the default model until one is loaded).
        assert params.cfg["backend"] == "pytorch" and params.cfg["gridsize"] == synced_gridsize
    assert all(r.cfg_at_import is None for r in recorders.values())  # no backend module, TensorFlow's neither
    assert not (tmp_path / "t").exists() and not (tmp_path / "i").exists()
