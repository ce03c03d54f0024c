"""Run history in SQLite (one file, WAL): runs, selector and test results, alerts, baselines.

Every write is one ``BEGIN IMMEDIATE`` transaction, so two harness processes (a nightly and
a manual run) queue for the write lock instead of failing or interleaving, and a killed
process leaves the last committed state behind. The schema is versioned (history_schema.py).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.history_schema import MIGRATIONS, latest_version
from harness.report_model import DID_NOT_RUN_STATES, GOOD_STATES, ResolvedAlert, RunReport, SelectorResult, SelectorState
from harness.states import UNTIMED_STATES

BUSY_TIMEOUT_S = 60.0
# Selector states whose results say something about each test (a resolved test alert needs one).
_TESTS_RAN = GOOD_STATES | {SelectorState.FLAKY, SelectorState.FAILED, SelectorState.SETUP_ERROR}
_NOT_A_RUNTIME = tuple(sorted(state.value for state in UNTIMED_STATES))
_NOT_A_RUNTIME_PLACEHOLDERS = ", ".join("?" * len(_NOT_A_RUNTIME))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _statements(script: str) -> Iterator[str]:
    """Split a migration script into statements (sqlite3.complete_statement knows BEGIN...END)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                yield buffer
            buffer = ""
    if buffer.strip().strip(";").strip():
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer.strip()[:80]}")


class HistoryStore:
    """The history database. Open with ``HistoryStore.open(path)``; use as a context manager."""

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self.db = connection

    @classmethod
    def open(cls, path: Path, *, create: bool = True) -> HistoryStore:
        # An SQLAlchemy URL (--history-url) opens a PostgreSQL history (harness/history_backend.py).
        from harness import history_backend

        if history_backend.is_url(path):
            store = cls(history_backend.HistoryURL(getattr(path, "url", path)), history_backend.connect(path))
            try:
                store.migrate()
            except sqlite3.DatabaseError as exc:
                store.close()
                raise ConfigError(f"{store.path}: not a usable history database: {exc}") from None
            return store
        path = Path(path)
        if not path.exists():
            if not create:
                raise ConfigError(f"{path}: no history database (run `harness run` first, or pass --history PATH)")
            path.parent.mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            connection.row_factory = sqlite3.Row
            connection.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA foreign_keys = ON")
            connection.execute("PRAGMA synchronous = NORMAL")
            store = cls(path, connection)
            store.migrate()
        except sqlite3.DatabaseError as exc:
            raise ConfigError(f"{path}: not a usable history database: {exc}") from None
        return store

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------

    def schema_version(self) -> int:
        exists = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        if not exists:
            return 0
        row = self.db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> list[int]:
        """Apply pending migrations in one transaction; returns the versions applied."""
        if self.schema_version() == latest_version():
            return []
        applied: list[int] = []
        with self.transaction():
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"
            )
            current = self.schema_version()
            if current > latest_version():
                raise ConfigError(
                    f"{self.path}: history schema version {current} is newer than this harness knows "
                    f"({latest_version()}); upgrade the harness"
                )
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in _statements(migration.sql):
                    self.db.execute(statement)
                self.db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, _now()),
                )
                applied.append(migration.version)
        return applied

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any exception."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- reads used by the rules ------------------------------------------------------------

    def recent_runtimes(self, selector: str, host_key: str, limit: int) -> list[float]:
        """The runtimes of the selector's latest completed runs on this host, newest first."""
        rows = self.db.execute(
            f"""
            SELECT sr.runtime_s FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
            WHERE sr.selector = ? AND r.host_key = ? AND sr.runtime_s IS NOT NULL
              AND sr.state NOT IN ({_NOT_A_RUNTIME_PLACEHOLDERS})
            ORDER BY r.started_at DESC, r.id DESC LIMIT ?
            """,
            (selector, host_key, *_NOT_A_RUNTIME, limit),
        ).fetchall()
        return [float(row[0]) for row in rows]

    def baseline(self, selector: str, host_key: str, metric: str) -> float | None:
        row = self.db.execute(
            "SELECT value FROM baselines WHERE selector = ? AND host_key = ? AND metric = ? ORDER BY id DESC LIMIT 1",
            (selector, host_key, metric),
        ).fetchone()
        return None if row is None else float(row[0])

    # -- writes -----------------------------------------------------------------------------

    @contextmanager
    def recording(self, report: RunReport) -> Iterator[list[ResolvedAlert]]:
        """Record a run in one transaction and yield the alerts it resolves.

        The caller publishes the report inside the ``with`` block: if publishing fails the run
        is not recorded, and if the process dies the transaction is rolled back.
        """
        with self.transaction():
            run_id = self._insert_run(report)
            resolved = self._resolve(report, run_id)
            yield resolved

    def _insert_run(self, report: RunReport) -> int:
        run = report.run
        cursor = self.db.execute(
            """
            INSERT INTO runs (run_key, cadence, started_at, finished_at, wall_s, status, gate_passed, exit_code,
                fail_on, git_sha, git_branch, git_dirty, hostname, host_key, python_version, torch_version,
                tensorflow_version, lightning_version, report_dir, report_schema_version)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            (
                run.id, run.cadence, run.started_at, run.finished_at, run.wall_s, run.status,
                int(report.gate.passed), report.gate.exit_code, report.gate.fail_on, run.git.sha, run.git.branch,
                None if run.git.dirty is None else int(run.git.dirty), run.host.hostname, run.host.host_key,
                run.versions.get("python"), run.versions.get("torch"),
                run.versions.get("tensorflow") or run.versions.get("tensorflow-cpu"), run.versions.get("lightning"),
                run.id, report.schema_version,
            ),
        )
        run_id = int(cursor.lastrowid)
        for result in report.selectors:
            counts = result.counts
            cursor = self.db.execute(
                """
                INSERT INTO selector_results (run_id, selector, state, reason, exit_code, report_exitcode, wall_s,
                    session_s, tests_s, runtime_s, runtime_measure, total, passed, failed, error, skipped, xfailed,
                    xpassed, rerun, collected, deselected, cpu_s)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                (
                    run_id, result.name, result.state.value, result.reason, result.exit_code, result.report_exitcode,
                    result.wall_s, result.session_s, result.tests_s, result.runtime_s, result.runtime_measure,
                    counts.total, counts.passed, counts.failed, counts.error, counts.skipped, counts.xfailed,
                    counts.xpassed, counts.rerun, counts.collected, counts.deselected,
                    # CPU seconds of the process tree, where the runner measured them (None otherwise).
                    getattr(result, "cpu_s", None),
                ),
            )
            result_id = int(cursor.lastrowid)
            self.db.executemany(
                """
                INSERT INTO test_results (selector_result_id, nodeid, kind, outcome, setup_s, call_s, teardown_s,
                    failed_stage, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    (result_id, t.nodeid, t.kind, t.outcome, t.durations.setup, t.durations.call, t.durations.teardown,
                     t.failed_stage, (t.message or "")[:2000] or None)
                    for t in result.tests
                ],
            )
            self.db.executemany(
                "INSERT INTO figures (selector_result_id, nodeid, name, value) VALUES (?, ?, ?, ?)",
                [(result_id, f.nodeid, f.name, f.value) for f in result.figures],
            )
        now = _now()
        self.db.executemany(
            """
            INSERT INTO alerts (run_id, fingerprint, trigger_id, status, severity, owner, sla, title, selector, nodeid,
                summary, evidence, created_at) VALUES (?, ?, ?, 'firing', ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            [
                (run_id, a.fingerprint, a.trigger, a.severity, a.owner, a.sla, a.title, a.selector, a.nodeid, a.summary,
                 json.dumps(a.evidence, default=str), now)
                for a in report.alerts
            ],
        )
        return run_id

    def _resolve(self, report: RunReport, run_id: int) -> list[ResolvedAlert]:
        """Fingerprints firing before, silent now, whose selector gave a real answer this run."""
        if report.run.interrupted:
            return []
        firing_now = {alert.fingerprint for alert in report.alerts}
        results: dict[str, SelectorResult] = {result.name: result for result in report.selectors}
        rows = self.db.execute(
            """
            SELECT s.*, r.run_key AS last_run, r.cadence AS last_cadence, r.host_key AS last_host,
                   (SELECT MIN(a2.created_at) FROM alerts a2 WHERE a2.fingerprint = s.fingerprint) AS first_fired
            FROM alert_state AS s JOIN runs AS r ON r.id = s.run_id
            WHERE s.status = 'firing' AND s.run_id != ?
            """,
            (run_id,),
        ).fetchall()
        resolved = []
        now = _now()
        for row in rows:
            if row["fingerprint"] in firing_now:
                continue
            selector = row["selector"]
            if selector is None:
                if row["last_cadence"] != report.run.cadence:
                    continue  # a run-level alert (budget) of another cadence
            else:
                result = results.get(selector)
                if result is None or result.state == SelectorState.NOT_RUN:
                    continue
                # Only a run that executed can resolve: a skip, an empty collection or a fixture
                # error says nothing about whether the failure is gone.
                if result.state in DID_NOT_RUN_STATES or not result.executed:
                    continue
                if row["nodeid"]:
                    if result.state not in _TESTS_RAN:
                        continue
                    test = next((t for t in result.tests if t.nodeid == row["nodeid"]), None)
                    if test is not None and not test.executed:
                        continue  # that test itself skipped or errored in setup this time
                if row["last_host"] != report.run.host.host_key and '"runtime_s"' in (row["evidence"] or ""):
                    continue  # a runtime alert belongs to its host; another machine's speed says nothing
            self.db.execute(
                """
                INSERT INTO alerts (run_id, fingerprint, trigger_id, status, severity, owner, sla, title, selector,
                    nodeid, summary, evidence, created_at) VALUES (?, ?, ?, 'resolved', ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                (run_id, row["fingerprint"], row["trigger_id"], row["severity"], row["owner"], row["sla"], row["title"],
                 selector, row["nodeid"], f"resolved: {row['summary']}", row["evidence"], now),
            )
            resolved.append(ResolvedAlert(
                trigger=row["trigger_id"], fingerprint=row["fingerprint"], selector=selector, nodeid=row["nodeid"],
                first_fired_at=row["first_fired"], last_fired_run=row["last_run"],
            ))
        return resolved

    def record_baseline(self, selector: str, host_key: str, metric: str, value: float, samples: list[float]) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO baselines (selector, host_key, metric, value, runs, samples, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (selector, host_key, metric, value, len(samples), json.dumps(samples), _now()),
            )

    # -- reads for people -------------------------------------------------------------------

    def trend(self, selector: str, limit: int = 20, host_key: str | None = None) -> list[dict[str, Any]]:
        """The selector's latest results, newest first, with the triggers each run fired for it."""
        query = """
            SELECT r.run_key, r.cadence, r.started_at, r.host_key, r.git_sha, sr.id AS result_id, sr.state, sr.reason,
                   sr.runtime_s, sr.runtime_measure, sr.wall_s, sr.total, sr.passed, sr.failed, sr.error, sr.skipped,
                   sr.rerun, r.id AS run_id
            FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
            WHERE sr.selector = ?"""
        params: list[Any] = [selector]
        if host_key:
            query += " AND r.host_key = ?"
            params.append(host_key)
        query += " ORDER BY r.started_at DESC, r.id DESC LIMIT ?"
        params.append(limit)
        rows = []
        for row in self.db.execute(query, params).fetchall():
            item = dict(row)
            item["triggers"] = [
                r[0] for r in self.db.execute(
                    "SELECT DISTINCT trigger_id FROM alerts WHERE run_id = ? AND selector = ? AND status = 'firing' ORDER BY trigger_id",
                    (row["run_id"], selector),
                )
            ]
            item["figures"] = {
                r[0]: r[1] for r in self.db.execute(
                    "SELECT name, value FROM figures WHERE selector_result_id = ? ORDER BY id", (row["result_id"],)
                )
            }
            del item["result_id"], item["run_id"]
            rows.append(item)
        return rows

    def known_selectors(self) -> list[str]:
        return [row[0] for row in self.db.execute("SELECT DISTINCT selector FROM selector_results ORDER BY selector")]

    def baselines(self, selector: str | None = None) -> list[dict[str, Any]]:
        query = "SELECT selector, host_key, metric, value, runs, created_at FROM baselines"
        params: tuple = ()
        if selector:
            query += " WHERE selector = ?"
            params = (selector,)
        return [dict(row) for row in self.db.execute(query + " ORDER BY id DESC", params)]
