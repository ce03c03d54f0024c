"""The history store on a real PostgreSQL server (``--history-url``), started by this module.

The server is Debian's PostgreSQL (``initdb``/``pg_ctl`` on PATH or under /usr/lib/postgresql),
initialised in a temporary folder and listening on 127.0.0.1 at a free port; as root it runs as
``nobody`` (initdb refuses root). Where none can be started the tests skip and say why.
The same operations run against SQLite and PostgreSQL and must give the same answers.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from pathlib import Path

import pytest
from sample_projects import harness, harness_main, make_project

from harness.errors import ConfigError
from harness.history import HistoryStore
from harness.history_backend import HistoryURL, redact, translate
from harness.report_model import (Alert, Counts, Gate, GitInfo, HostInfo, RunInfo, RunReport, SelectorResult, StageTimes,
                                  TestRecord)


def _pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server():
    """(host, port, user) of a throwaway PostgreSQL server, stopped and removed afterwards."""
    initdb, pg_ctl = _pg_binary("initdb"), _pg_binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    prefix: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="harness-pg-"))
    if os.geteuid() == 0:  # initdb refuses to run as root
        runuser = shutil.which("runuser")
        if not runuser:
            shutil.rmtree(root, ignore_errors=True)
            pytest.skip("running as root and runuser is missing: cannot start PostgreSQL as an unprivileged user")
        shutil.chown(root, "nobody")
        prefix = [runuser, "-u", "nobody", "--"]
    root.chmod(0o700)
    data, port = root / "data", _free_port()
    done = subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "harness", "--no-sync", "-E", "UTF8"],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    done = subprocess.run([*prefix, pg_ctl, "-D", str(data), "-l", str(root / "server.log"), "-w", "-t", "60",
                           "-o", f"-h 127.0.0.1 -p {port} -k {root} -F", "start"],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        log = (root / "server.log").read_text(errors="replace") if (root / "server.log").exists() else done.stderr
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"PostgreSQL did not start: {(log.strip().splitlines() or ['?'])[-1]}")
    try:
        yield "127.0.0.1", port, "harness"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60, check=False)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(postgres_server) -> str:
    """A fresh, empty database on the server for one test."""
    import psycopg

    host, port, user = postgres_server
    name = f"h_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://{user}@{host}:{port}/{name}"


def _report(n: int, runtime: float, *, failing: bool = False) -> RunReport:
    key = f"2025010{n}T000000Z-nightly"
    alerts = [Alert(trigger="FAIL-001", title="Integration workflow failure", severity="critical", owner="both",
                    sla="<4 hours", fingerprint="fp-fail", selector="integration", nodeid="t.py::test_i",
                    summary="boom 100% broken", evidence={"line": "E   RuntimeError: 'x' ?"})] if failing else []
    return RunReport(
        run=RunInfo(id=key, cadence="nightly", started_at=f"2025-01-0{n}T00:00:00.000Z",
                    finished_at=f"2025-01-0{n}T00:01:00.000Z", wall_s=runtime + 1, status="failed" if failing else "passed",
                    catalog="c", rules="r", root=".", jobs=2, harness_version="0.1.0", git=GitInfo(sha="abc", dirty=True),
                    host=HostInfo(hostname="h", host_key="hk", platform="linux"), versions={"python": "3.11"}),
        gate=Gate(passed=not failing, fail_on="high", exit_code=int(failing)),
        selectors=[SelectorResult(name="integration", title="I", owner="o", argv=[], env={},
                                  state="failed" if failing else "passed", runtime_s=runtime,
                                  counts=Counts(total=1, collected=1, failed=int(failing), passed=int(not failing)),
                                  # the test executed: only such a run resolves an alert
                                  tests=[TestRecord(nodeid="t.py::test_i", outcome="failed" if failing else "passed",
                                                    failed_stage="call" if failing else None,
                                                    durations=StageTimes(setup=0.1, call=runtime, teardown=0.1))])],
        alerts=alerts,
    )


def _exercise(store: HistoryStore) -> dict:
    """The history operations the harness performs, and what they answer."""
    resolved = []
    for n, (runtime, failing) in enumerate([(61.5, False), (62.25, True), (65.0, True), (30.0, False)], start=1):
        with store.recording(_report(n, runtime, failing=failing)) as gone:
            resolved.append([(r.trigger, r.fingerprint, r.last_fired_run) for r in gone])
    store.record_baseline("integration", "hk", "runtime", 35.92, [35.9, 35.92, 36.0])
    trend = store.trend("integration")
    for row in trend:
        row.pop("started_at", None)
    return {
        "version": store.schema_version(),
        "recent": store.recent_runtimes("integration", "hk", 3),
        "baseline": store.baseline("integration", "hk", "runtime"),
        "resolved": resolved,
        "trend": trend,
        "selectors": store.known_selectors(),
        "alert_states": [tuple(r) for r in store.db.execute(
            "SELECT fingerprint, status, summary FROM alert_state ORDER BY fingerprint").fetchall()],
        "evidence": store.db.execute("SELECT evidence FROM alerts WHERE status = 'firing' ORDER BY id").fetchone()[0],
    }


def test_postgres_answers_like_sqlite(pg_url: str, tmp_path: Path) -> None:
    with HistoryStore.open(tmp_path / "history.sqlite") as lite:
        expected = _exercise(lite)
    with HistoryStore.open(HistoryURL(pg_url)) as server:
        assert server.migrate() == []  # open() migrated it already
        got = _exercise(server)
    assert got == expected
    assert expected["recent"] == [30.0, 65.0, 62.25] and expected["resolved"][-1][0][0] == "FAIL-001"
    with HistoryStore.open(pg_url) as again:  # a second process finds the schema in place
        assert again.schema_version() == expected["version"]
        assert again.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 4


def test_concurrent_writers_queue_on_the_server(pg_url: str) -> None:
    HistoryStore.open(pg_url).close()
    errors: list[BaseException] = []

    def write(first: int) -> None:
        try:
            with HistoryStore.open(pg_url) as store:
                for n in range(first, first + 4):
                    report = _report(1, 10.0 + n)
                    report.run.id = f"run-{n}"
                    with store.recording(report):
                        pass
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(first,)) for first in (0, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with HistoryStore.open(pg_url) as store:
        assert store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 8
        assert store.db.execute("SELECT COUNT(DISTINCT run_id) FROM selector_results").fetchone()[0] == 8


def test_harness_run_history_and_dashboard_against_postgres(pg_url: str, tmp_path: Path, monkeypatch,
                                                          capsys) -> None:
    import json

    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setenv("HARNESS_HISTORY_URL", pg_url)
    catalog = make_project(tmp_path / "project")
    reports = tmp_path / "reports"
    common = ["--catalog", str(catalog), "--reports-dir", str(reports), "--progress", "none"]
    monkeypatch.setenv("TINY_FAIL_INTEGRATION", "1")
    assert harness_main("run", "--cadence", "pr", *common) == 1
    monkeypatch.delenv("TINY_FAIL_INTEGRATION")
    failed = capsys.readouterr()
    assert harness_main("run", "--cadence", "pr", *common, "--json") == 0
    passed = capsys.readouterr()
    assert "history not recorded" not in failed.err + passed.err
    assert not (reports / "history.sqlite").exists()  # the server holds the history, not a file
    summary = json.loads(passed.out)
    assert [r["trigger"] for r in summary["resolved"]] == ["PARITY-001"]  # resolution read from the server
    monkeypatch.delenv("HARNESS_HISTORY_URL")
    assert harness_main("history", "--selector", "integration", "--json", "--history-url", pg_url) == 0
    shown = json.loads(capsys.readouterr().out)
    rows = shown["runs"] if isinstance(shown, dict) else shown
    assert [row["state"] for row in rows] == ["passed", "failed"]
    html = (reports / "index.html").read_text(encoding="utf-8")
    assert 'data-selector="integration" data-state="passed"' in html and "trend-integration" in html


def test_connection_errors_never_show_the_password(postgres_server) -> None:
    host, port, _ = postgres_server
    secret = "s3cr3t-Pa55"
    url = f"postgresql+psycopg://nobody_here:{secret}@{host}:{port}/no_such_db"
    with pytest.raises(ConfigError) as caught:
        HistoryStore.open(HistoryURL(url))
    message = str(caught.value)
    assert secret not in message and "***" in message and "cannot connect" in message
    assert secret not in str(HistoryURL(url)) and secret not in f"{HistoryURL(url)}" and secret not in repr(HistoryURL(url))
    assert redact(url).startswith("postgresql+psycopg://nobody_here:***@")
    done = harness("history", "--selector", "x", "--history-url", url)  # a real process: what a user sees
    assert done.returncode == 2 and secret not in done.stderr + done.stdout and "Traceback" not in done.stderr


def test_only_postgresql_urls_are_taken(tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="supports PostgreSQL"):
        HistoryStore.open("mysql+pymysql://u@localhost/db")
    assert harness_main("history", "--selector", "x", "--history", str(tmp_path / "h.sqlite"), "--history-url",
                        "postgresql+psycopg://u@localhost/db") == 2
    assert "give one" in capsys.readouterr().err


def test_dialect_translation() -> None:
    assert translate("SELECT a FROM t WHERE b = ? AND c LIKE ? || '%'") == "SELECT a FROM t WHERE b = %s AND c LIKE %s || '%%'"
    assert translate("INSERT OR IGNORE INTO t (a) VALUES (?)") == "INSERT INTO t (a) VALUES (%s) ON CONFLICT DO NOTHING"
    ddl = translate("-- a comment's quote\nCREATE TABLE t (id INTEGER PRIMARY KEY, x REAL, note TEXT DEFAULT 'REAL ?')")
    assert "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY" in ddl and "x DOUBLE PRECISION" in ddl
    assert "DEFAULT 'REAL ?'" in ddl  # literals are left alone
    assert translate("SELECT GROUP_CONCAT(DISTINCT a.t) FROM a") == "SELECT string_agg(DISTINCT (a.t)::text, ',') FROM a"
