"""Small pytest projects, built in a temporary folder, that the harness runs for real.

A ``SampleProject`` writes test files and a catalog (its selectors get the brief's names where a
trigger is scoped to one, so the repository's real ``alerts/rules.yaml`` applies unchanged) and
runs ``python -m harness`` on it as a user would. ``make_project`` builds one fixed such project
(the tiny project) that many tests share; ``harness`` / ``harness_main`` run the harness on it.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import venv
import zipfile
import zlib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "alerts" / "rules.yaml"
HOST = "sample-host"


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{key} = {toml_value(item)}" for key, item in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


# Sample tests read these from the environment the test sets for the harness; a selector only
# gets the variables the catalog passes through (harness.selector_env).
SAMPLE_PASS_ENV = ("SAMPLE_*", "FIXTURE_MODE")


def catalog_text(selectors: dict[str, dict[str, Any]], cadences: dict[str, dict[str, Any]] | None = None,
                 rules: Path | None = RULES, pass_env: tuple[str, ...] = SAMPLE_PASS_ENV, **top: Any) -> str:
    """A catalog whose root is its own folder; selectors default to owner TEST-PYTORCH-001."""
    lines = ['version = 1', 'root = "."']
    if rules is not None:
        lines.append(f"rules = {toml_value(str(rules))}")
    if pass_env:
        lines.append(f"pass_env = {toml_value(list(pass_env))}")
    for key, value in top.items():
        lines.append(f"{key} = {toml_value(value)}")
    for name, fields in selectors.items():
        lines.append(f"\n[selectors.{name}]")
        body = {"title": name.replace("_", " "), "owner": "TEST-PYTORCH-001", "test_timeout_s": 30, "timeout_s": 60, **fields}
        for key, value in body.items():
            lines.append(f"{key} = {toml_value(value)}")
    cadences = cadences or {"pr": {"selectors": list(selectors)}}
    for name, fields in cadences.items():
        lines.append(f"\n[cadences.{name}]")
        for key, value in fields.items():
            lines.append(f"{key} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


@dataclass
class HarnessResult:
    returncode: int
    stdout: str
    stderr: str
    reports_dir: Path

    @property
    def run_dirs(self) -> list[Path]:
        return sorted(p for p in self.reports_dir.iterdir() if p.is_dir() and not p.name.startswith("."))

    @property
    def report(self) -> dict[str, Any]:
        """report.json of the newest run directory."""
        return json.loads((self.run_dirs[-1] / "report.json").read_text())

    def selector(self, name: str) -> dict[str, Any]:
        return next(s for s in self.report["selectors"] if s["name"] == name)

    def alerts(self, trigger: str | None = None, selector: str | None = None) -> list[dict[str, Any]]:
        return [a for a in self.report["alerts"]
                if (trigger is None or a["trigger"] == trigger) and (selector is None or a["selector"] == selector)]

    def triggers_by_node(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for alert in self.report["alerts"]:
            if alert["nodeid"]:
                found.setdefault(alert["nodeid"], set()).add(alert["trigger"])
        return found


class SampleProject:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.reports = root / "reports"
        self.history = self.reports / "history.sqlite"

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def catalog(self, selectors: dict[str, dict[str, Any]], cadences: dict[str, dict[str, Any]] | None = None,
                name: str = "catalog.toml", **top: Any) -> Path:
        """``top``: top-level catalog keys (``python``, ``pass_env``)."""
        return self.write(name, catalog_text(selectors, cadences, **top))

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "HARNESS_", "PYTEST_"))}
        # Notifications are not what these projects test; they would only wait on webhooks.
        env.update({"HARNESS_HOST": HOST, "PYTHONDONTWRITEBYTECODE": "1", "HARNESS_NOTIFY": "off"}, **extra)
        return env

    def command(self, *args: str, catalog: str = "catalog.toml") -> list[str]:
        argv = [sys.executable, "-m", "harness", *args]
        if args and args[0] in ("run", "evaluate", "calibrate", "catalog", "rules"):
            argv += ["--catalog", str(self.root / catalog)]
        if args and args[0] in ("run", "evaluate", "calibrate", "history"):
            argv += ["--reports-dir", str(self.reports)]
        return argv

    def harness(self, *args: str, catalog: str = "catalog.toml", timeout: float = 120, **env: str) -> HarnessResult:
        done = subprocess.run(self.command(*args, catalog=catalog), cwd=self.root, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout, check=False)
        return HarnessResult(done.returncode, done.stdout, done.stderr, self.reports)

    def run(self, *args: str, cadence: str = "pr", **kwargs: Any) -> HarnessResult:
        return self.harness("run", "--cadence", cadence, "--progress", "plain", *args, **kwargs)


# -- artifacts the sample tests write -----------------------------------------------------------


def png_bytes(height: int, width: int, pad_to: int = 0) -> bytes:
    """A valid greyscale PNG of height x width; ``pad_to`` adds noise so the file reaches that size."""
    raw = b"".join(b"\x00" + bytes((x * 7 + y * 13) % 256 for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
    data += chunk(b"IDAT", zlib.compress(raw))
    if pad_to > len(data) + 12:
        data += chunk(b"tEXt", b"pad\x00" + os.urandom(pad_to - len(data) - 16).hex().encode()[: pad_to - len(data) - 16])
    return data + chunk(b"IEND", b"")


def checkpoint_bytes(content_pickle: bytes) -> bytes:
    """A torch-style zip checkpoint (``archive/data.pkl``) around a given pickle."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", content_pickle)
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


# -- the tiny project: fixed tests and catalog with the brief's selector names ----------------------
# Its selectors carry the brief's names (``integration``, ``backend_selection``, ...) so the
# repository's real ``alerts/rules.yaml`` applies to them unchanged; their tests take well under a
# second each. Used by the dashboard, serve, shard/merge, doctor, GitHub and history tests; the
# TINY_* variables make a test fail or sleep on demand.

TINY_TESTS = {
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

TINY_CATALOG = """\
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
    """Write the tiny project under ``root``; returns its catalog path."""
    project = SampleProject(root)
    for relative, text in TINY_TESTS.items():
        project.write(relative, text)
    return project.write("catalog.toml", TINY_CATALOG.format(
        rules=RULES.as_posix(),
        nightly_schedule=f'schedule = "{nightly_schedule}"\n' if nightly_schedule else "",
        weekly_schedule=f'schedule = "{weekly_schedule}"\n' if weekly_schedule else "",
    ))


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


# -- a second virtual environment on this interpreter's base Python, without the network -------------


def _with_dependencies(names: tuple[str, ...]) -> list[metadata.Distribution]:
    """The installed distributions ``names`` need on this platform (their requirements, recursively)."""
    from packaging.requirements import Requirement

    found: dict[str, metadata.Distribution] = {}
    pending = list(names)
    while pending:
        name = pending.pop().lower().replace("_", "-")
        if name in found:
            continue
        found[name] = dist = metadata.distribution(name)
        for text in dist.requires or ():
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return list(found.values())


def pytest_only_environment(target: Path) -> Path:
    """A venv (same base Python as this one) that sees only pytest, pytest-json-report and
    pytest-timeout (with their own dependencies) of this interpreter, linked, not copied."""
    venv.EnvBuilder(with_pip=False, symlinks=True).create(target)
    python = target / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    shelf = target / "pytest-only"
    shelf.mkdir()
    for dist in _with_dependencies(("pytest", "pytest-json-report", "pytest-timeout")):
        info = Path(dist._path)  # type: ignore[attr-defined] - the .dist-info folder (entry points live there)
        (shelf / info.name).symlink_to(info)
        for top in {Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith((info.name, ".."))}:
            source = info.parent / top
            if top.endswith(".pth") or "__pycache__" in top or not source.exists() or (shelf / top).exists():
                continue
            (shelf / top).symlink_to(source)
    (site / "pytest_only.pth").write_text(f"{shelf}\n")
    return python
