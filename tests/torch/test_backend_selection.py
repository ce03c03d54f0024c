"""Backend selection suite (brief §1, §2.1.2): defaults, routing, invalid literals, POLICY-001.

Unit-level and fast (< 5 s): the backend workflow modules are the boundary here. An import hook
serves a recording module in place of ``ptycho.workflows.components`` /
``ptycho_torch.workflows.components``, noting the legacy ``params.cfg`` at the moment the dispatcher
imports it, so the CONFIG-001 order (sync first, then import) is checked where it matters. Real
end-to-end routing through both backends is covered by ``tests/ptycho/test_backend_routing.py``.
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from ptycho import params
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho.workflows import backend_selector
from ptycho.workflows.backend_selector import (
    TORCH_UNAVAILABLE_MESSAGE,
    load_inference_bundle_with_backend,
    run_cdi_example_with_backend,
)

TF_MODULE = "ptycho.workflows.components"
TORCH_MODULE = "ptycho_torch.workflows.components"

BRIEF_MESSAGE = (
    "PyTorch backend selected but torch module unavailable.\n"
    "Install PyTorch: pip install torch>=2.2\n"
    "See docs/workflows/pytorch.md for installation guidance."
)


class _RecordingBackend(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves a recording stand-in for one backend module and notes when it is imported."""

    def __init__(self, name: str, functions: dict[str, object]):
        self.name = name
        self.functions = functions
        self.cfg_at_import: dict | None = None
        self.calls: list[tuple[str, tuple, dict]] = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname == self.name:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return types.ModuleType(spec.name)

    def exec_module(self, module):
        self.cfg_at_import = dict(params.cfg)
        for fn_name, result in self.functions.items():
            setattr(module, fn_name, self._recorder(fn_name, result))

    def _recorder(self, fn_name, result):
        def fn(*args, **kwargs):
            self.calls.append((fn_name, args, kwargs))
            return result

        return fn


SENTINEL = (object(), object())
TORCH_BUNDLE = types.SimpleNamespace(
    network="torch-model",
    inference_config=InferenceConfig(model=ModelConfig(N=32, gridsize=2), backend="pytorch"),
    model_config=ModelConfig(N=32, gridsize=2),
    manifest={"backend": "pytorch"},
    hyper_parameters={},
)


@pytest.fixture
def recording_backends(monkeypatch):
    """The backend modules served by recorders (whatever the session imported before)."""
    served = {
        "tensorflow": (TF_MODULE, {
            "run_cdi_example": (*SENTINEL, {"history": [1.0]}),
            "load_inference_bundle": ("tf-model", {"N": 32}),
        }),
        "pytorch": (TORCH_MODULE, {"run_cdi_example_torch": (*SENTINEL, {"history": [1.0]})}),
        "pytorch_models": ("ptycho_torch.model_manager", {"load_torch_bundle": TORCH_BUNDLE}),
    }
    recorders = {}
    for key, (name, functions) in served.items():
        monkeypatch.delitem(sys.modules, name, raising=False)
        parent, _, child = name.rpartition(".")
        if parent in sys.modules and hasattr(sys.modules[parent], child):
            monkeypatch.delattr(sys.modules[parent], child)
        recorders[key] = _RecordingBackend(name, functions)
    monkeypatch.setattr(sys, "meta_path", [*recorders.values(), *sys.meta_path])
    return recorders


def _training_config(backend: str) -> TrainingConfig:
    # gridsize 2 and N 32 differ from the legacy defaults, so a missing sync shows.
    return TrainingConfig(model=ModelConfig(N=32, gridsize=2), nepochs=3, backend=backend)


def test_backend_field_defaults_to_tensorflow():
    assert TrainingConfig().backend == "tensorflow"
    assert InferenceConfig().backend == "tensorflow"
    assert params.cfg["backend"] == "tensorflow"


@pytest.mark.parametrize("backend, other", [("tensorflow", "pytorch"), ("pytorch", "tensorflow")])
def test_routes_to_selected_backend_after_config_sync(recording_backends, backend, other):
    """Each backend gets the call with the caller's objects; CONFIG-001 sync precedes its import;
    the other backend is never imported; results carry ``backend``."""
    config = _training_config(backend)
    train, test = object(), object()
    amplitude, phase, results = run_cdi_example_with_backend(train, test, config, do_stitching=True)

    rec = recording_backends[backend]
    assert rec.cfg_at_import is not None, f"{backend} workflow module was not imported"
    assert rec.cfg_at_import["gridsize"] == 2 and rec.cfg_at_import["N"] == 32
    assert rec.cfg_at_import["backend"] == backend
    expected_fn = "run_cdi_example" if backend == "tensorflow" else "run_cdi_example_torch"
    assert [c[0] for c in rec.calls] == [expected_fn]
    _, args, kwargs = rec.calls[0]
    assert args[0] is train and args[1] is test and args[2] is config
    assert kwargs == {"do_stitching": True}
    assert (amplitude, phase) == SENTINEL
    assert results == {"history": [1.0], "backend": backend}
    assert recording_backends[other].cfg_at_import is None, f"{other} was imported on the {backend} path"

    infer = InferenceConfig(model=ModelConfig(N=32, gridsize=2), backend=backend)
    model, saved = load_inference_bundle_with_backend(Path("bundle"), infer)
    if backend == "tensorflow":
        assert model == "tf-model" and saved == {"N": 32, "backend": "tensorflow"}
        assert recording_backends["pytorch_models"].cfg_at_import is None
    else:
        loader = recording_backends["pytorch_models"]
        assert loader.cfg_at_import["gridsize"] == 2 and loader.calls == [("load_torch_bundle", (Path("bundle"),), {})]
        assert model == "torch-model"
        assert saved["backend"] == "pytorch" and saved["gridsize"] == 2 and saved["model_config"].N == 32
    assert recording_backends[other].cfg_at_import is None


def test_invalid_backend_raises_value_error(recording_backends):
    for bad in ("torch", "tf", None, "TensorFlow"):
        with pytest.raises(ValueError, match="'tensorflow'.*'pytorch'"):
            TrainingConfig(backend=bad)
        with pytest.raises(ValueError, match="'tensorflow'.*'pytorch'"):
            InferenceConfig(backend=bad)
        # A config mutated past its validation is refused again by the dispatcher, nothing is
        # imported, and the legacy dict is left as it was.
        config = _training_config("tensorflow")
        object.__setattr__(config, "backend", bad)
        before = dict(params.cfg)
        with pytest.raises(ValueError, match="backend: invalid value"):
            run_cdi_example_with_backend(object(), object(), config)
        with pytest.raises(ValueError, match="backend: invalid value"):
            load_inference_bundle_with_backend("bundle", config)
        assert params.cfg == before
    assert all(r.cfg_at_import is None for r in recording_backends.values())


def test_pytorch_unavailable_raises_runtime_error(recording_backends, monkeypatch):
    """POLICY-001: torch missing -> the brief's actionable RuntimeError, no silent TF fallback."""
    assert TORCH_UNAVAILABLE_MESSAGE == BRIEF_MESSAGE
    for name in [m for m in sys.modules if m == "torch" or m.startswith(("torch.", "ptycho_torch"))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError

    config = _training_config("pytorch")
    with pytest.raises(RuntimeError) as excinfo:
        run_cdi_example_with_backend(object(), object(), config)
    assert str(excinfo.value) == BRIEF_MESSAGE
    assert isinstance(excinfo.value.__cause__, ImportError)
    assert params.cfg["gridsize"] == 2  # the CONFIG-001 sync still came first
    with pytest.raises(RuntimeError, match="torch module unavailable"):
        load_inference_bundle_with_backend("bundle", dataclasses.replace(InferenceConfig(), backend="pytorch"))
    # TensorFlow was not used as a fallback.
    assert recording_backends["tensorflow"].cfg_at_import is None
    assert backend_selector.backend_components("tensorflow") is sys.modules[TF_MODULE]
