"""The history database's schema, as an ordered list of migrations.

To add tables (alert delivery, outbox, silences, ...), append a ``Migration`` with the next
version number; never edit one that has shipped. ``HistoryStore`` applies the pending ones in
one transaction when it opens the file, so concurrent harness processes migrate safely.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


MIGRATIONS: list[Migration] = [
    Migration(
        1,
        "core: runs, selector results, test results, figures, alerts, baselines",
        """
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY,
            run_key TEXT NOT NULL UNIQUE,          -- the report directory's name
            cadence TEXT NOT NULL,
            started_at TEXT NOT NULL,              -- ISO 8601 UTC
            finished_at TEXT NOT NULL,
            wall_s REAL,
            status TEXT NOT NULL CHECK (status IN ('passed', 'failed', 'interrupted')),
            gate_passed INTEGER NOT NULL,
            exit_code INTEGER NOT NULL,
            fail_on TEXT NOT NULL,
            git_sha TEXT,
            git_branch TEXT,
            git_dirty INTEGER,
            hostname TEXT NOT NULL,
            host_key TEXT NOT NULL,
            python_version TEXT,
            torch_version TEXT,
            tensorflow_version TEXT,
            lightning_version TEXT,
            report_dir TEXT,
            report_schema_version INTEGER NOT NULL
        );
        CREATE INDEX runs_started_at ON runs (started_at);

        CREATE TABLE selector_results (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            selector TEXT NOT NULL,
            state TEXT NOT NULL,
            reason TEXT,
            exit_code INTEGER,
            report_exitcode INTEGER,
            wall_s REAL,
            session_s REAL,
            tests_s REAL,
            runtime_s REAL,
            runtime_measure TEXT,
            total INTEGER NOT NULL DEFAULT 0,
            passed INTEGER NOT NULL DEFAULT 0,
            failed INTEGER NOT NULL DEFAULT 0,
            error INTEGER NOT NULL DEFAULT 0,
            skipped INTEGER NOT NULL DEFAULT 0,
            xfailed INTEGER NOT NULL DEFAULT 0,
            xpassed INTEGER NOT NULL DEFAULT 0,
            rerun INTEGER NOT NULL DEFAULT 0,
            collected INTEGER NOT NULL DEFAULT 0,
            deselected INTEGER NOT NULL DEFAULT 0,
            UNIQUE (run_id, selector)
        );
        CREATE INDEX selector_results_by_selector ON selector_results (selector, run_id);

        CREATE TABLE test_results (
            id INTEGER PRIMARY KEY,
            selector_result_id INTEGER NOT NULL REFERENCES selector_results (id) ON DELETE CASCADE,
            nodeid TEXT NOT NULL,
            kind TEXT NOT NULL DEFAULT 'test',
            outcome TEXT NOT NULL,
            setup_s REAL,
            call_s REAL,
            teardown_s REAL,
            failed_stage TEXT,
            message TEXT
        );
        CREATE INDEX test_results_by_node ON test_results (nodeid);
        CREATE INDEX test_results_by_selector_result ON test_results (selector_result_id);

        CREATE TABLE figures (
            id INTEGER PRIMARY KEY,
            selector_result_id INTEGER NOT NULL REFERENCES selector_results (id) ON DELETE CASCADE,
            nodeid TEXT NOT NULL,
            name TEXT NOT NULL,
            value REAL NOT NULL
        );
        CREATE INDEX figures_by_selector_result ON figures (selector_result_id);

        -- One row per fired trigger per run, and one 'resolved' row when a fingerprint that was
        -- firing stops firing. The latest row of a fingerprint is its state (view alert_state).
        CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            run_id INTEGER NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
            fingerprint TEXT NOT NULL,
            trigger_id TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
            severity TEXT NOT NULL,
            owner TEXT,
            sla TEXT,
            title TEXT,
            selector TEXT,
            nodeid TEXT,
            summary TEXT,
            evidence TEXT,                         -- JSON
            created_at TEXT NOT NULL
        );
        CREATE INDEX alerts_by_fingerprint ON alerts (fingerprint, id);
        CREATE INDEX alerts_by_run ON alerts (run_id);
        CREATE VIEW alert_state AS
            SELECT a.* FROM alerts AS a
            JOIN (SELECT fingerprint, MAX(id) AS id FROM alerts GROUP BY fingerprint) AS latest
              ON a.id = latest.id;

        -- `harness calibrate`: metric 'runtime' (seconds) or 'figure:<name>'; the newest row wins.
        CREATE TABLE baselines (
            id INTEGER PRIMARY KEY,
            selector TEXT NOT NULL,
            host_key TEXT NOT NULL,
            metric TEXT NOT NULL,
            value REAL NOT NULL,
            runs INTEGER NOT NULL,
            samples TEXT NOT NULL,                 -- JSON list of the measured values
            created_at TEXT NOT NULL
        );
        CREATE INDEX baselines_lookup ON baselines (selector, host_key, metric, id);
        """,
    ),
]

# --- alert delivery (harness/alerts/delivery_state.py): its tables, as migration 2 -------------
from harness.alerts.schema import ALERT_DELIVERY_NAME, ALERT_DELIVERY_SQL  # noqa: E402

MIGRATIONS.append(Migration(2, ALERT_DELIVERY_NAME, ALERT_DELIVERY_SQL))


def latest_version() -> int:
    return MIGRATIONS[-1].version if MIGRATIONS else 0

# --- change points, host baselines and quarantine (harness/changepoints.py): migration 3 ---------
# Additive only, so a history written by an older harness migrates in place: the new column is
# NULL on old rows (read as "not measured"), and the new table starts empty.
MIGRATIONS.append(Migration(
    3,
    "series: CPU seconds of a selector's process tree; accepted baselines (who, why, from which run)",
    """
    ALTER TABLE selector_results ADD COLUMN cpu_s REAL;

    -- `harness baseline accept`: change-point rules judge a series only by the runs after
    -- after_run_id. series is 'runtime', 'test:<nodeid>', 'figure:<name>' or '*' (all of the
    -- selector's series); host_key NULL means every host.
    CREATE TABLE baseline_accepts (
        id INTEGER PRIMARY KEY,
        selector TEXT NOT NULL,
        host_key TEXT,
        series TEXT NOT NULL DEFAULT '*',
        after_run_id INTEGER NOT NULL,
        accepted_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE INDEX baseline_accepts_lookup ON baseline_accepts (selector, id);
    CREATE INDEX runs_by_host ON runs (host_key, started_at);
    """,
))
