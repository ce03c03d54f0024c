"""What the harness process does around its tests: start them before its own post-run imports,
capture the environment (git asked once) beside them, and exit without the interpreter's
teardown while still finishing what a normal exit would (threads, atexit, flushed output)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
import threading

import pytest
from sample_projects import REPO, SampleProject

from harness.catalog import load_catalog
from harness.runner import ProgressSink, Runner, plan_selector


def test_the_console_script_finishes_threads_atexit_and_output_before_its_prompt_exit(tmp_path):
    marker = tmp_path / "marks.txt"
    script = textwrap.dedent(f"""
        import atexit, sys, threading, time
        from harness.cli import run_and_exit
        def mark(text):
            with open({str(marker)!r}, "a") as handle:
                handle.write(text + "\\n")
        atexit.register(mark, "atexit")
        def slow():
            time.sleep(0.3)
            mark("thread")
        threading.Thread(target=slow).start()
        sys.stdout.write("x" * 300_000)  # more than a pipe holds: must be flushed, not lost
        sys.argv = ["harness", *sys.argv[1:]]
        run_and_exit()
    """)
    done = subprocess.run([sys.executable, "-c", script, "--version"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("x" * 300_000) and done.stdout.rstrip().endswith("harness 0.1.0")
    assert marker.read_text().splitlines() == ["thread", "atexit"]  # threads first, as at a normal exit

    usage = subprocess.run([sys.executable, "-c", script, "run"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "--cadence" in usage.stderr and "Traceback" not in usage.stderr


def test_python_dash_m_harness_keeps_exit_codes(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_fails.py", "def test_fails(): assert 1 == 2\n")
    project.catalog({"fails": {"args": ["tests/test_fails.py"]}})
    result = project.run("--json", "--no-history")
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["exit_code"] == 1


class _Recorder(ProgressSink):
    def __init__(self) -> None:
        self.started_names: list[str] = []

    def started(self, plan) -> None:
        self.started_names.append(plan.name)


def test_work_beside_the_tests_starts_once_after_the_first_process_started(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_a.py", "def test_a(): pass\n")
    project.catalog({"one": {"args": ["tests/test_a.py"]}, "two": {"args": ["tests/test_a.py"]}})
    catalog = load_catalog(tmp_path / "catalog.toml")
    plans = [plan_selector(catalog, catalog.selectors[name], tmp_path / "run", "run") for name in ("one", "two")]
    progress = _Recorder()
    calls: list[list[str]] = []
    outcomes = Runner(plans, jobs=1, progress=progress, stop=threading.Event()).run(
        on_launched=lambda: calls.append(list(progress.started_names)))
    assert calls == [["one"]]  # once, when the first process (of one job) had started, not before
    assert all(outcome.exit_code == 0 for outcome in outcomes.values())


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_report_and_env_txt_name_the_same_git_revision(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_ok.py", "def test_ok(): pass\n")
    project.catalog({"ok": {"args": ["tests/test_ok.py"]}})
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "work"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "tests", "catalog.toml"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "sample"], cwd=tmp_path, check=True)
    sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, check=True, capture_output=True,
                         text=True).stdout.strip()
    project.write("tests/test_ok.py", "def test_ok(): assert True\n")  # an uncommitted change

    result = project.run("--no-history")
    assert result.returncode == 0, result.stderr
    recorded = result.report["run"]["git"]
    assert recorded == {"sha": sha, "branch": "work", "dirty": True}
    env_txt = (result.run_dirs[-1] / "env.txt").read_text()
    assert f"sha: {sha}\nbranch: work\ndirty: True" in env_txt


def test_what_runs_before_the_first_test_imports_none_of_the_post_run_work():
    """`harness run` validates the catalog and rules, plans and launches; the report models,
    history, rendering, alert delivery and charts are imported beside the tests (pipeline.
    POST_RUN_MODULES), so a module-level import creeping into that path fails here."""
    probe = textwrap.dedent("""
        import sys
        import harness.cli, harness.commands.run, harness.pipeline, harness.selection, harness.shard
        from harness.catalog import load_catalog
        from harness.rule_schema import load_rules
        load_catalog("harness/catalog.toml")
        load_rules("alerts/rules.yaml")
        post_run = {"harness.report_model", "harness.pytest_report", "harness.rule_engine", "harness.history",
                    "harness.render", "harness.alerts.delivery", "harness.dashboard", "harness.environment",
                    "jinja2", "requests", "sqlite3", "matplotlib", "numpy", "rich"}
        print(sorted(post_run & set(sys.modules)))
    """)
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
