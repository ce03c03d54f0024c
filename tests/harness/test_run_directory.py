"""Report directories are atomic: a killed harness leaves none, an interrupted one still reports."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sample_projects import SampleProject

from harness.run_directory import RunDirectory

WAITS_FOR_A_SIGNAL = """
    import os, pathlib, time
    def test_long_training():
        marker = pathlib.Path(os.environ["SAMPLE_MARKER"])
        if os.environ.get("SAMPLE_QUICK"):
            return
        marker.write_text(str(os.getpid()))
        time.sleep(60)
"""


def _wait_for(path: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text().strip()):  # created, then written: wait for the text
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {seconds} s")
        time.sleep(0.05)


def _gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def waiting_project(tmp_path) -> SampleProject:
    project = SampleProject(tmp_path)
    project.write("tests/test_wait.py", WAITS_FOR_A_SIGNAL)
    project.catalog({"integration": {"args": ["tests/test_wait.py"]}})
    return project


def _start(project: SampleProject, marker: Path) -> subprocess.Popen:
    return subprocess.Popen(project.command("run", "--cadence", "pr", "--progress", "plain"), cwd=project.root,
                            env=project.env(SAMPLE_MARKER=str(marker)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_a_killed_run_leaves_no_report_and_no_history_rows(waiting_project):
    project = waiting_project
    marker = project.root / "started"
    harness = _start(project, marker)
    _wait_for(marker)
    harness.kill()  # SIGKILL: no chance to clean up
    harness.communicate(timeout=30)
    assert _gone(int(marker.read_text())), "pytest outlived the killed harness"
    published = [p for p in project.reports.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert published == []
    assert list((project.reports / ".staging").iterdir())  # the half-built run stays hidden
    if project.history.exists():
        db = sqlite3.connect(project.history)
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
        db.close()
    # The next run cleans the leftovers up and publishes normally.
    again = project.run(SAMPLE_MARKER=str(marker), SAMPLE_QUICK="1")
    assert again.returncode == 0, again.stderr
    assert len(again.run_dirs) == 1
    assert [p.name for p in (project.reports / ".staging").iterdir()] == []


def test_sigterm_stops_the_children_and_still_writes_an_interrupted_report(waiting_project):
    project = waiting_project
    marker = project.root / "started"
    harness = _start(project, marker)
    _wait_for(marker)
    harness.send_signal(signal.SIGTERM)
    stdout, stderr = harness.communicate(timeout=60)
    assert harness.returncode == 143, stderr
    assert _gone(int(marker.read_text()))
    run_dir = next(p for p in project.reports.iterdir() if p.is_dir() and not p.name.startswith("."))
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["status"] == "interrupted" and report["run"]["interrupted"] is True
    assert report["gate"]["passed"] is False and report["gate"]["exit_code"] == 143
    (selector,) = report["selectors"]
    assert selector["state"] == "interrupted"
    assert "report written to" in stdout
    db = sqlite3.connect(project.history)
    assert db.execute("SELECT status FROM runs").fetchall() == [("interrupted",)]


def test_two_runs_in_the_same_second_do_not_collide(tmp_path):
    started = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)
    first = RunDirectory(tmp_path, "pr", started)
    second = RunDirectory(tmp_path, "pr", started)
    assert (first.name, second.name) == ("20261129T120000Z-pr", "20261129T120000Z-pr-2")
    (first.staging / "report.json").write_text("{}")
    second.publish()
    first.publish()
    third = RunDirectory(tmp_path, "pr", started)
    assert third.name == "20261129T120000Z-pr-3"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".staging", "20261129T120000Z-pr", "20261129T120000Z-pr-2"]
    assert (tmp_path / "20261129T120000Z-pr" / "report.json").read_text() == "{}"


def test_concurrent_harness_runs_publish_separate_reports(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_quick.py", "def test_quick(): pass\n")
    project.catalog({"integration": {"args": ["tests/test_quick.py"]}})
    runs = [subprocess.Popen(project.command("run", "--cadence", "pr", "--progress", "none", "--json"), cwd=tmp_path,
                             env=project.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    directories = {json.loads(out)["report_dir"] for out, _ in outputs}
    assert len(directories) == 2 and all(Path(d, "report.json").is_file() for d in directories)
    db = sqlite3.connect(project.history)
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 2


RECORDS_A_CHECKPOINT = '''
import io, pickle, zipfile

def test_writes_a_checkpoint(tmp_path, record_property):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"epoch": 1, "state_dict": {}, "hyper_parameters": {
            "model_config": {}, "training_config": {}, "data_config": {}, "inference_config": {}}}, protocol=2))
        archive.writestr("archive/version", "3\\n")
    path = tmp_path / "checkpoints" / "last.ckpt"
    path.parent.mkdir(parents=True)
    path.write_bytes(buffer.getvalue())
    record_property("checkpoint_path", str(path))
'''


def test_re_evaluating_a_published_report_gives_the_runs_verdict(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_ckpt.py", RECORDS_A_CHECKPOINT)
    project.catalog({"integration": {"args": ["tests/test_ckpt.py"], "artifacts": {"checkpoint_property": "checkpoint_path"}}})
    result = project.run("--no-history")
    assert result.returncode == 0, result.stderr
    run_dir = result.run_dirs[-1]
    pytest_json = run_dir / "selectors" / "integration" / "pytest.json"
    assert ".staging" not in pytest_json.read_text()
    again = project.harness("evaluate", str(pytest_json), "--selector", "integration", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["alerts"] == [] and result.report["alerts"] == []
