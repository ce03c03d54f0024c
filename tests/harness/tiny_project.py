"""A tiny pytest project with its own catalog, for tests that run the harness for real.

Its selectors carry the brief's names (``integration``, ``backend_selection``, ...) so the
repository's real ``alerts/rules.yaml`` applies to them unchanged; their tests take well under a
second each. Used by the dashboard, serve and shard/merge tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "alerts" / "rules.yaml"

TESTS = {
    "tests/test_integration.py": (
        "import os\n"
        "def test_run_pytorch_train_save_load_infer():\n"
        "    if os.environ.get('TINY_FAIL_INTEGRATION'):\n"
        "        raise RuntimeError('decoder output shape mismatch: expected (4, 64, 64)')\n"
    ),
    "tests/test_backend.py": (
        "import os, time\n"
        "import pytest\n"
        "def test_default_is_tensorflow(): assert True\n"
        "def test_pytorch_routing():\n"
        "    marker = os.environ.get('TINY_SLOW_AFTER_FIRST')\n"  # every execution but the first sleeps
        "    if marker:\n"
        "        seen = os.path.exists(marker)\n"
        "        open(marker, 'a').close()\n"
        "        if seen:\n"
        "            open(marker + '.sleeping', 'a').close()\n"
        "            time.sleep(50)\n"
        "def test_invalid_backend_raises(): assert True\n"
        "@pytest.mark.skip(reason='no torch here')\n"
        "def test_pytorch_unavailable_raises_runtime_error(): pass\n"
    ),
    "tests/suite/test_one.py": "".join(f"def test_one_{i}(): assert {i} >= 0\n" for i in range(5)),
    "tests/suite/test_two.py": (
        "import os\n"
        + "".join(f"def test_two_{i}(): assert True\n" for i in range(4))
        + "def test_two_flag():\n"
        "    assert not os.environ.get('TINY_FAIL_SUITE'), 'suite failure requested'\n"
    ),
    "tests/suite/test_three.py": "".join(f"def test_three_{i}(): assert True\n" for i in range(3)),
}

CATALOG = """\
version = 1
root = "."
rules = "{rules}"
pass_env = ["TINY_*"]

[defaults]
test_timeout_s = 60
timeout_s = 120
env = {{ CUDA_VISIBLE_DEVICES = "" }}

[selectors.integration]
title = "Integration workflow (tiny)"
owner = "TEST-PYTORCH-001"
args = ["tests/test_integration.py::test_run_pytorch_train_save_load_infer"]
[selectors.integration.runtime]
critical_s = 90
warning_s = 60

[selectors.backend_selection]
title = "Backend selection suite (tiny)"
owner = "INTEGRATE-PYTORCH-001"
args = ["tests/test_backend.py"]
[selectors.backend_selection.runtime]
measure = "tests"
warning_s = 5

[selectors.torch_full]
title = "Full suite (tiny)"
owner = "TEST-PYTORCH-001"
args = ["tests/suite/"]

[selectors.model_manager_cross_backend]
title = "Cross-backend (tiny)"
owner = "INTEGRATE-PYTORCH-001"
args = ["tests/test_backend.py::test_pytorch_routing"]

[cadences.pr]
selectors = ["integration", "backend_selection"]

[cadences.nightly]
selectors = ["backend_selection"]
{nightly_schedule}
[cadences.weekly]
selectors = ["torch_full", "model_manager_cross_backend", "integration", "backend_selection"]
{weekly_schedule}
[cadences.manual]
selectors = ["integration"]
any_selector = true
"""


def make_project(root: Path, *, nightly_schedule: str | None = None, weekly_schedule: str | None = None) -> Path:
    """Write the project under ``root``; returns its catalog path."""
    for relative, text in TESTS.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    catalog = root / "catalog.toml"
    catalog.write_text(CATALOG.format(
        rules=RULES.as_posix(),
        nightly_schedule=f'schedule = "{nightly_schedule}"\n' if nightly_schedule else "",
        weekly_schedule=f'schedule = "{weekly_schedule}"\n' if weekly_schedule else "",
    ), encoding="utf-8")
    return catalog


def harness_env(**extra: str) -> dict[str, str]:
    """The environment a harness subprocess gets in tests: no CI variables leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "HARNESS_", "TINY_"))}
    env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def harness(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """``harness ARGS`` as a subprocess of this interpreter (argv list)."""
    return subprocess.run(
        [sys.executable, "-m", "harness", *args], capture_output=True, text=True, timeout=timeout,
        env=env or harness_env(), cwd=REPO, check=False,
    )


def harness_main(*args: str) -> int:
    """``harness ARGS`` in this process (no interpreter start-up): the exit code; output via capsys."""
    from harness import cli

    return cli.main(list(args))
