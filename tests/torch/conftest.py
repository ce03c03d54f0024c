"""Fixtures of the PyTorch backend tests: CPU only (brief §2.1.1), isolated ``params.cfg``, and small
simulated scans generated on the fly (the canonical fixture is generated on first use)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from ptycho import params
from ptycho.simulate import CanonicalSpec, ensure_canonical_dataset, simulate_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def cpu_only(request, monkeypatch):
    """``CUDA_VISIBLE_DEVICES=""`` for every test (and its subprocesses), except the CUDA smoke."""
    if request.node.get_closest_marker("cuda") is None:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    yield


@pytest.fixture(autouse=True)
def params_cfg_snapshot():
    """Each test starts from the legacy defaults and leaves no global state behind (CONFIG-001)."""
    saved = dict(params.cfg)
    params.reset()
    yield params.cfg
    params.cfg.clear()
    params.cfg.update(saved)


@pytest.fixture(autouse=True)
def no_module_stand_ins_left_behind():
    """A test may serve stand-in modules for the project's packages (the backend-selection suite
    does, through an import hook); none may outlive it, or later tests import the stand-in
    instead of the real module ("cannot import name ... (unknown location)")."""
    before = {n for n in sys.modules if n.startswith("ptycho")}
    yield
    for name in [n for n in sys.modules if n.startswith("ptycho") and n not in before]:
        module = sys.modules[name]
        if module is not None and getattr(module, "__file__", None) is None and getattr(module, "__path__", None) is None:
            del sys.modules[name]
            parent, _, child = name.rpartition(".")
            if parent in sys.modules and getattr(sys.modules[parent], child, None) is module:
                delattr(sys.modules[parent], child)


@pytest.fixture(scope="session")
def canonical_npz() -> Path:
    """The canonical fixture: 1087 positions, 64 x 64 patterns, 272 x 272 object."""
    return ensure_canonical_dataset()


TINY_SPEC = CanonicalSpec(seed=5, n=32, grid=8, count=64, step=4.0, jitter=0.3, nphotons=1e6, object_kind="mixed")


@pytest.fixture(scope="session")
def tiny_npz(tmp_path_factory) -> Path:
    """A small scan for unit tests: 64 positions, 32 x 32 patterns."""
    path = tmp_path_factory.mktemp("tiny") / "tiny_n32.npz"
    simulate_spec(TINY_SPEC).to_file(path)
    return path


@pytest.fixture
def cli_env():
    """Environment for CLI subprocesses: CPU only, the repository importable, quiet TensorFlow."""

    def build(**extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        env.update(extra)
        return env

    return build


@pytest.fixture
def python_exe() -> str:
    return sys.executable


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory, tiny_npz):
    """One real Lightning training on the tiny scan (2 epochs, gridsize 2), shared by the checkpoint
    and workflow tests: ``(results, config, execution)``."""
    from ptycho.config.config import ModelConfig, TrainingConfig
    from ptycho_torch.workflows.components import TorchExecution, train_cdi_model_torch

    saved = dict(params.cfg)
    out = tmp_path_factory.mktemp("tiny_trained")
    config = TrainingConfig(
        model=ModelConfig(N=32, gridsize=2), train_data_file=tiny_npz, batch_size=16, nepochs=2,
        n_groups=48, output_dir=out, backend="pytorch",
    )
    execution = TorchExecution(seed=3, progress_bar=False)
    try:
        results = train_cdi_model_torch(tiny_npz, None, config, execution)
    finally:
        params.cfg.clear()
        params.cfg.update(saved)
    return results, config, execution


@pytest.fixture(scope="session", autouse=True)
def one_cpu_thread():
    """In-process torch work on one intra-op thread: on the shared 2-core machine oversubscribed
    OpenMP threads made steps several times slower (see TorchExecution.num_threads)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
