"""env.txt describes the interpreter under test, asked of that interpreter, never the harness's own."""

from __future__ import annotations

import sys
from pathlib import Path

from sample_projects import pytest_only_environment

from harness import environment


def test_env_txt_describes_a_second_venv_on_the_same_base_python_not_the_harness(tmp_path: Path) -> None:
    python = pytest_only_environment(tmp_path / "target-env")
    # The case a path comparison gets wrong: both interpreters are the same file once resolved.
    assert python.resolve() == Path(sys.executable).resolve()
    text = environment.env_text(str(python), tmp_path, full=True)
    shown = text.split("$ pip show", 1)[1].split("\n\n$ pip freeze", 1)
    assert "WARNING: Package(s) not found: torch" in shown[0] and "Name: torch" not in shown[0]
    frozen = {line.split("==")[0].lower() for line in shown[1].split("# CPU")[0].splitlines()[1:] if "==" in line}
    assert {"pytest", "pytest-json-report", "pytest-timeout"} <= frozen
    assert not frozen & {"torch", "pydantic", "ptychopinn", "jinja2"}, sorted(frozen)


def test_env_txt_of_the_harness_own_interpreter_still_names_its_packages(tmp_path: Path) -> None:
    text = environment.env_text(sys.executable, tmp_path, full=True)
    assert "$ python -V\nPython 3." in text
    assert "pydantic==" in text.lower() or "pydantic ==" in text.lower()
