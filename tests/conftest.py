"""Suite-wide rules: POLICY-001 collection gating per backend, and isolation of legacy global state.

A TensorFlow-only environment skips ``tests/torch/`` at collection, a torch-only one skips
``tests/tf/`` (brief §2.2); the header says which and why, so a skipped directory is never silent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


BACKEND_DIRS = {"torch": TESTS_DIR / "torch", "tensorflow": TESTS_DIR / "tf"}
UNAVAILABLE = {name: not _importable(name) for name in BACKEND_DIRS}


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = []
    for name, missing in UNAVAILABLE.items():
        if missing:
            rel = BACKEND_DIRS[name].relative_to(TESTS_DIR.parent)
            lines.append(f"POLICY-001: {name} is not importable; {rel}/ is skipped at collection")
    return lines


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    for name, directory in BACKEND_DIRS.items():
        if UNAVAILABLE[name] and (collection_path == directory or directory in collection_path.parents):
            return True
    return None


@pytest.fixture(autouse=True)
def _isolated_legacy_params():
    """Each test starts from the legacy defaults; CONFIG-001 tests must not leak into others."""
    from ptycho import params

    saved = dict(params.cfg)
    params.reset()
    yield
    params.cfg.clear()
    params.cfg.update(saved)


@pytest.fixture(scope="session")
def canonical_dataset() -> Path:
    """The canonical fixture (1087 positions, 64 x 64), generated on first use."""
    from ptycho.simulate import ensure_canonical_dataset

    return ensure_canonical_dataset()
