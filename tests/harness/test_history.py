"""History: RT-002 over recorded runs, resolution, migrations, and concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3

import pytest
from sample_projects import HOST, SampleProject

from harness.errors import ConfigError
from harness.history import HistoryStore
from harness.history_schema import latest_version
from harness.report_model import Gate, GitInfo, HostInfo, RunInfo, RunReport, SelectorResult, SelectorState

SLOW_TEST = """
    import os, time
    def test_integration():
        time.sleep(0.3)
        assert not os.environ.get("SAMPLE_FAIL"), "integration broke"
"""


@pytest.fixture(scope="module")
def four_runs(tmp_path_factory):
    """Three runs above the warning threshold on one host (two failing), then one on another host."""
    project = SampleProject(tmp_path_factory.mktemp("history"))
    project.write("tests/test_slow.py", SLOW_TEST)
    project.catalog({"integration": {"args": ["tests/test_slow.py"], "runtime": {"measure": "tests", "warning_s": 0.2}}})
    results = [
        project.run(SAMPLE_FAIL="1"),
        project.run(SAMPLE_FAIL="1"),
        project.run(),
        project.run(HARNESS_HOST="another-host"),
    ]
    reports = [json.loads((run_dir / "report.json").read_text()) for run_dir in results[-1].run_dirs]
    return project, results, reports


def test_rt_002_needs_three_consecutive_runs_on_the_same_host(four_runs):
    _, results, reports = four_runs
    fired = [[a["trigger"] for a in report["alerts"] if a["trigger"] == "RT-002"] for report in reports]
    assert fired == [[], [], ["RT-002"], []]
    alert = next(a for a in reports[2]["alerts"] if a["trigger"] == "RT-002")
    runtimes = alert["evidence"]["consecutive_runtimes_s"]
    assert len(runtimes) == 3 and all(value > 0.2 for value in runtimes)
    assert alert["evidence"]["host_key"] == HOST
    assert alert["severity"] == "warning" and alert["owner"] == "TEST-PYTORCH-001"
    assert results[2].returncode == 0  # a warning does not fail the gate (--fail-on high)


def test_a_trigger_that_stops_firing_is_resolved(four_runs):
    _, _, reports = four_runs
    assert [a["trigger"] for a in reports[1]["alerts"]] == ["FAIL-001"]
    resolved = reports[2]["resolved"]
    assert [(r["trigger"], r["nodeid"]) for r in resolved] == [("FAIL-001", "tests/test_slow.py::test_integration")]
    assert resolved[0]["last_fired_run"] == reports[1]["run"]["id"]
    assert reports[3]["resolved"] == []


def test_history_command_prints_the_trend(four_runs):
    project, _, reports = four_runs
    done = project.harness("history", "--selector", "integration", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["runs"]
    assert [row["run_key"] for row in rows] == [r["run"]["id"] for r in reversed(reports)]
    assert [row["state"] for row in rows] == ["passed", "passed", "failed", "failed"]
    assert rows[1]["triggers"] == ["RT-002"] and rows[2]["triggers"] == ["FAIL-001"]
    table = project.harness("history", "--selector", "integration", "--this-host")
    assert table.returncode == 0 and "RT-002" in table.stdout and "another-host" not in table.stdout


def test_database_rows_match_the_report(four_runs):
    project, _, reports = four_runs
    db = sqlite3.connect(project.history)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 4
    outcomes = db.execute("SELECT outcome, setup_s IS NOT NULL, call_s > 0.2 FROM test_results ORDER BY id").fetchall()
    assert outcomes == [("failed", 1, 1), ("failed", 1, 1), ("passed", 1, 1), ("passed", 1, 1)]
    statuses = db.execute("SELECT trigger_id, status FROM alerts WHERE trigger_id = 'FAIL-001' ORDER BY id").fetchall()
    assert statuses == [("FAIL-001", "firing"), ("FAIL-001", "firing"), ("FAIL-001", "resolved")]
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- schema -------------------------------------------------------------------------------------


def test_migrations_apply_once_and_are_recorded(tmp_path):
    path = tmp_path / "h.sqlite"
    with HistoryStore.open(path) as store:
        assert store.schema_version() == latest_version()
        assert store.migrate() == []
    versions = [row[0] for row in sqlite3.connect(path).execute("SELECT version FROM schema_migrations ORDER BY version")]
    assert versions == list(range(1, latest_version() + 1))


def test_a_newer_schema_is_refused_with_the_file_named(tmp_path):
    path = tmp_path / "h.sqlite"
    HistoryStore.open(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 'now')")
    db.commit()
    db.close()
    with pytest.raises(ConfigError, match=r"h\.sqlite: history schema version 999 is newer"):
        HistoryStore.open(path)


def test_a_file_that_is_not_sqlite_is_a_clear_error(tmp_path):
    path = tmp_path / "h.sqlite"
    path.write_text("not a database, " * 100)
    with pytest.raises(ConfigError, match=r"h\.sqlite: not a usable history database"):
        HistoryStore.open(path)


# -- concurrent writers -------------------------------------------------------------------------


def _report(run_id: str, runtime: float) -> RunReport:
    result = SelectorResult(name="integration", title="t", owner="o", argv=["pytest"], env={},
                            state=SelectorState.PASSED, wall_s=runtime, runtime_s=runtime)
    return RunReport(
        run=RunInfo(id=run_id, cadence="nightly", started_at=f"2026-11-29T00:00:{runtime:06.3f}Z",
                    finished_at="2026-11-29T01:00:00Z", wall_s=runtime, status="passed", catalog="c", rules="r",
                    root="/", jobs=1, harness_version="0", git=GitInfo(), versions={},
                    host=HostInfo(hostname="h", host_key="k", platform="p")),
        gate=Gate(passed=True, fail_on="high", exit_code=0), selectors=[result], alerts=[],
    )


def _writer(path: str, prefix: str, count: int, queue) -> None:
    try:
        for index in range(count):
            with HistoryStore.open(path) as store, store.recording(_report(f"{prefix}-{index}", index + 0.5)):
                pass
        queue.put(None)
    except Exception as exc:  # reported to the parent, which fails the test
        queue.put(repr(exc))


def test_two_processes_writing_at_once_neither_fail_nor_corrupt(tmp_path):
    path = str(tmp_path / "shared.sqlite")
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    writers = [context.Process(target=_writer, args=(path, name, 25, queue)) for name in ("nightly", "manual")]
    for writer in writers:
        writer.start()
    errors = [queue.get(timeout=120) for _ in writers]
    for writer in writers:
        writer.join(timeout=60)
    assert errors == [None, None]
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 50
    assert db.execute("SELECT COUNT(*) FROM selector_results").fetchone()[0] == 50
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_a_failed_publish_records_nothing(tmp_path):
    with HistoryStore.open(tmp_path / "h.sqlite") as store:
        with pytest.raises(OSError), store.recording(_report("doomed", 1.0)):
            raise OSError("rename failed")
        assert store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
        with store.recording(_report("fine", 1.0)):
            pass
        assert store.recent_runtimes("integration", "k", 5) == [1.0]
