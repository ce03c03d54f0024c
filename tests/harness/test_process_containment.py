"""Everything a selector starts ends with the harness, however the harness ends, and the harness
measures the CPU time of the whole tree.

The sample test starts a grandchild in pytest's process group and one that left it (``setsid``,
as a daemon would), writes the three pids to a file, then waits to be stopped.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sample_projects import SampleProject

from harness import process_tree

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="subreaper and /proc are Linux")

STARTS_GRANDCHILDREN = """
    import os, pathlib, subprocess, sys, time
    def test_starts_a_cli_and_a_daemon():
        in_group = subprocess.Popen(["sleep", "120"])
        escaped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
        marker = pathlib.Path(os.environ["SAMPLE_MARKER"])
        marker.write_text(f"{os.getpid()} {in_group.pid} {escaped.pid}")
        if os.environ.get("SAMPLE_QUICK"):
            return  # passes and leaves both behind
        time.sleep(120)
"""

BURNS_CPU_IN_A_GRANDCHILD = """
    import subprocess, sys
    def test_work_done_below_pytest():
        subprocess.run([sys.executable, "-c", "import time\\nend = time.process_time() + 0.8\\n"
                        "while time.process_time() < end: pass"], check=True)
"""


def _alive(pid: int) -> bool:
    """Running or stopped, not a zombie waiting for PID 1 to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:][:1] not in (b"Z", b"X")


def _all_gone(pids: list[int], seconds: float = 15) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return alive


def _pids(marker: Path, seconds: float = 60) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if marker.exists() and len(text := marker.read_text().split()) == 3:
            return [int(pid) for pid in text]
        time.sleep(0.05)
    raise AssertionError(f"{marker} was not written within {seconds} s")


@pytest.fixture
def project(tmp_path) -> SampleProject:
    project = SampleProject(tmp_path)
    project.write("tests/test_tree.py", STARTS_GRANDCHILDREN)
    project.write("tests/test_cpu.py", BURNS_CPU_IN_A_GRANDCHILD)
    project.catalog({"integration": {"args": ["tests/test_tree.py"]}, "cpu": {"args": ["tests/test_cpu.py"]}},
                    cadences={"pr": {"selectors": ["integration"]}, "manual": {"selectors": ["cpu"]}})
    return project


def _start(project: SampleProject, marker: Path) -> subprocess.Popen:
    return subprocess.Popen(project.command("run", "--cadence", "pr", "--progress", "plain"), cwd=project.root,
                            env=project.env(SAMPLE_MARKER=str(marker)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_sigkill_of_the_harness_ends_pytest_and_every_grandchild(project):
    marker = project.root / "pids"
    harness = _start(project, marker)
    pids = _pids(marker)
    harness.kill()  # SIGKILL: the harness itself can do nothing
    harness.communicate(timeout=30)
    assert _all_gone(pids) == [], "outlived the killed harness (pytest, grandchild in its group, setsid'd one)"


@pytest.mark.parametrize("signum, code", [(signal.SIGHUP, 129), (signal.SIGTERM, 143)])
def test_sighup_is_handled_like_sigterm(project, signum, code):
    marker = project.root / "pids"
    harness = _start(project, marker)
    pids = _pids(marker)
    harness.send_signal(signum)
    _, stderr = harness.communicate(timeout=60)
    assert harness.returncode == code, stderr
    assert _all_gone(pids) == []
    run_dir = next(p for p in project.reports.iterdir() if p.is_dir() and not p.name.startswith("."))
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["status"] == "interrupted"
    assert report["selectors"][0]["state"] == "interrupted"


def test_what_a_passing_test_leaves_running_is_stopped_when_its_selector_ends(project):
    marker = project.root / "pids"
    result = project.run(SAMPLE_MARKER=str(marker), SAMPLE_QUICK="1")
    assert result.returncode == 0, result.stderr
    assert _all_gone(_pids(marker), seconds=5) == []


def test_cpu_seconds_of_the_whole_tree_are_recorded_beside_the_wall_time(project):
    result = project.run(cadence="manual")
    assert result.returncode == 0, result.stderr
    cpu = result.selector("cpu")
    assert cpu["wall_s"] is not None
    # 0.8 s burnt by a grandchild, plus two interpreters starting: the grandchild is counted.
    assert cpu["cpu_s"] >= 0.8
    db = sqlite3.connect(project.history)
    try:
        (recorded,) = db.execute("SELECT cpu_s FROM selector_results WHERE selector = 'cpu'").fetchone()
    finally:
        db.close()
    assert recorded == cpu["cpu_s"]  # the history row carries it beside wall_s


def test_a_program_that_cannot_start_is_a_start_error_and_a_signal_is_passed_through(tmp_path):
    with pytest.raises(process_tree.StartError) as raised:
        process_tree.start_guarded([str(tmp_path / "no-such-program")], cwd=tmp_path, env=dict(os.environ),
                                   stdout=None, stderr=None)
    assert "No such file" in str(raised.value)
    process = process_tree.start_guarded([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGABRT)"],
                                         cwd=tmp_path, env=dict(os.environ), stdout=None, stderr=None)
    assert process_tree.wait_tree(process).returncode == -signal.SIGABRT
    process = process_tree.start_guarded([sys.executable, "-c", "raise SystemExit(3)"], cwd=tmp_path,
                                         env=dict(os.environ), stdout=None, stderr=None)
    assert process_tree.wait_tree(process).returncode == 3
    assert not list(tmp_path.glob("core*"))
