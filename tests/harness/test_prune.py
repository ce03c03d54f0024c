"""Retention (brief §3.2): `harness prune` removes exactly the evidence past the catalog's [retention].

An aged history is built through the core's own write path (``HistoryStore.recording``, which also
resolves alerts) plus the alert-delivery tables, with report directories beside it; the test knows
which runs each protection must keep and checks that exactly the others go.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from test_history_postgres import pg_url, postgres_server  # noqa: F401 - pytest fixtures (a throwaway server)
from sample_projects import harness_main

from harness.alerts.delivery_state import AlertStore
from harness.catalog import RetentionSpec, load_catalog
from harness.errors import ConfigError
from harness.rule_engine import fingerprint
from harness.history import HistoryStore
from harness.report_model import (
    Alert,
    Counts,
    Gate,
    GitInfo,
    HostInfo,
    RunInfo,
    RunReport,
    SelectorResult,
    SelectorState,
    TestRecord,
)
from harness.retention import prune

NOW = datetime.now(UTC).replace(microsecond=0)  # the CLI test uses the real clock too
HOST = "prune-host"
INTEGRATION_TEST = "tests/test_integration.py::test_train_save_load_infer"
STITCH_TEST = "tests/test_stitch.py::test_no_holes"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def key(days: float, cadence: str) -> str:
    return f"{NOW - timedelta(days=days):%Y%m%dT%H%M%SZ}-{cadence}"


def alert(trigger: str, selector: str | None, nodeid: str | None = None, subject: str | None = None,
          evidence: dict | None = None) -> Alert:
    return Alert(trigger=trigger, title=trigger, severity="high", owner="TEST-PYTORCH-001", sla="<4 hours",
                 fingerprint=fingerprint(trigger, selector, nodeid, subject), selector=selector, nodeid=nodeid,
                 summary=f"{trigger} fired", evidence=evidence or {})


def result(name: str, state: str, test: str | None = None) -> SelectorResult:
    outcome = {"passed": "passed", "failed": "failed"}.get(state)
    tests = [TestRecord(nodeid=test or f"tests/test_{name}.py::test_it", outcome=outcome)] if outcome else []
    return SelectorResult(name=name, title=name, owner="TEST-PYTORCH-001", argv=[], env={}, state=SelectorState(state),
                          runtime_s=12.0, wall_s=12.0, counts=Counts(total=len(tests), passed=int(state == "passed"),
                                                                     failed=int(state == "failed")), tests=tests)


def report(days: float, cadence: str, selectors: list[SelectorResult], alerts: list[Alert]) -> RunReport:
    started = NOW - timedelta(days=days)
    return RunReport(
        run=RunInfo(id=key(days, cadence), cadence=cadence, started_at=iso(started),
                    finished_at=iso(started + timedelta(minutes=1)), wall_s=60.0,
                    status="failed" if alerts else "passed", catalog="catalog.toml", rules="rules.yaml", root=".",
                    jobs=2, harness_version="test", git=GitInfo(),
                    host=HostInfo(hostname="h", host_key=HOST, platform="linux"), versions={}),
        gate=Gate(passed=not alerts, fail_on="high", exit_code=1 if alerts else 0),
        selectors=selectors, alerts=alerts,
    )


F_INTEGRATION = (INTEGRATION_TEST, "FAIL-001")
RUNS = {  # name: (days ago, cadence, selector results, alerts)
    # notifications never planned (routes.yaml was broken): its report.json is still needed
    "R1": (200, "pr", [result("integration", "passed", INTEGRATION_TEST), result("backend_selection", "passed")], []),
    "R2": (180, "pr", [result("integration", "failed", INTEGRATION_TEST), result("backend_selection", "passed")],
           [alert("FAIL-001", "integration", INTEGRATION_TEST)]),
    # `parity` never runs again: latest, last passing and last known-good result
    "R3": (170, "nightly", [result("parity", "passed")], []),
    # passing, but RT-003 fired: neither integration's last passing (R6 is newer) nor known-good
    "R4": (150, "pr", [result("integration", "passed", INTEGRATION_TEST), result("backend_selection", "passed")],
           [alert("RT-003", "integration", subject=f"host:{HOST}", evidence={"runtime_s": 3.0})]),
    # the weekly cadence's budget alert stays open: no weekly run since
    "R5": (120, "weekly", [result("weekly_suite", "passed")], [alert("BUDGET-001", None, subject="cadence:weekly")]),
    # integration's last passing and last known-good; stitching fails here (TEST-001)...
    "R6": (100, "pr", [result("integration", "passed", INTEGRATION_TEST), result("backend_selection", "not_run"),
                       result("stitching", "failed", STITCH_TEST)],
           [alert("TEST-001", "stitching", STITCH_TEST)]),
    # ...and is resolved here: kept so that the TEST-001 row R6 keeps does not read as firing again
    "R6b": (95, "nightly", [result("stitching", "passed", STITCH_TEST)], []),
    "R7": (10, "pr", [result("integration", "failed", INTEGRATION_TEST), result("backend_selection", "passed"),
                      result("stitching", "passed", STITCH_TEST), result("weekly_suite", "passed")],
           [alert("FAIL-001", "integration", INTEGRATION_TEST)]),
    "R8": (5, "pr", [result("integration", "failed", INTEGRATION_TEST), result("backend_selection", "passed")],
           [alert("FAIL-001", "integration", INTEGRATION_TEST)]),
}
KEPT_OLD = {"R1", "R3", "R5", "R6", "R6b"}
REMOVED = {"R2", "R4"}


@pytest.fixture
def aged(tmp_path: Path):
    """reports/ with an aged history.sqlite and run directories, plus what was there before."""
    return build_aged(tmp_path / "reports", tmp_path / "reports" / "history.sqlite")


def build_aged(reports: Path, history) -> dict:
    """The aged history (SQLite path or PostgreSQL URL) and report directories of RUNS."""
    with HistoryStore.open(history) as store:
        for name, (days, cadence, selectors, alerts) in RUNS.items():
            with store.recording(report(days, cadence, selectors, alerts)):
                pass
        for days, value in ((200, 30.0), (150, 31.0)):  # the newer calibration supersedes the older
            store.record_baseline("integration", HOST, "runtime", value, [value])
            store.db.execute("UPDATE baselines SET created_at = ? WHERE value = ?", (iso(NOW - timedelta(days=days)), value))
        store.record_baseline("parity", HOST, "runtime", 4.0, [4.0])  # current, whatever its age
        store.db.execute("UPDATE baselines SET created_at = ? WHERE selector = 'parity'", (iso(NOW - timedelta(days=300)),))
        delivery = AlertStore(store)
        old, recent = NOW - timedelta(days=200), NOW - timedelta(days=10)
        ids = {}
        with delivery.transaction():
            for name, at in (("delivered-old", old), ("pending-old", old), ("delivered-recent", recent),
                             ("rejected-old", old), ("abandoned-old", old)):
                ids[name] = delivery.enqueue(message_id=f"msg_{name}", run_key=None, route="r", sink="s", kind="webhook",
                                             status="firing", group_key="g", fingerprints=[], body=b"{}", now=at)
        messages = {m.message_id: m for m in delivery.outbox(limit=10)}
        for name, at, delivered, rejected in (("delivered-old", old, True, False), ("delivered-recent", recent, True, False),
                                              ("rejected-old", old, False, True), ("pending-old", old, False, False)):
            delivery.finish(messages[f"msg_{name}"], delivered=delivered, rejected=rejected, attempts=1, status=200,
                            error=None if delivered else "HTTP 500", retry_at=None, now=at)
        with delivery.transaction():
            delivery.db.execute("UPDATE alert_outbox SET state = 'abandoned' WHERE message_id = 'msg_abandoned-old'")
            delivery.event("queued", old, run_key=key(200, "pr"))  # an old event about nothing pending
            delivery.record_sent("fp-resolved", "r", "s", "resolved", "FAIL-001", {}, "msg_x", old)
            delivery.record_sent("fp-firing", "r", "s", "firing", "FAIL-001", {}, "msg_y", old)
        delivery.add_dispatch(key(200, "pr"), "pr", None, old)          # R1: never planned
        delivery.add_dispatch(key(180, "pr"), "pr", None, old)
        with delivery.transaction():
            delivery.mark_planned(key(180, "pr"), old)                   # R2: planned long ago
        delivery.add_silence("RT-002", None, 3600, "ended long ago", "me", old)
        delivery.add_silence("FLAKY-*", None, 400 * 86400, "still active", "me", old)
        before = _state(store)
    for name, (days, cadence, _, _) in RUNS.items():
        _run_dir(reports / key(days, cadence), 1000)
    orphan = _run_dir(reports / key(300, "pr"), 5000)                     # --no-history run, old
    recent_orphan = _run_dir(reports / key(3, "manual"), 100)             # --no-history run, recent
    escalated = _run_dir(reports / key(250, "manual"), 100)
    (escalated / "escalation").mkdir()
    (escalated / "escalation" / "document.md").write_text("kept forever")
    (reports / "notes").mkdir()                                            # not a run directory
    (reports / "index.html").write_text("<html></html>")
    return {"reports": reports, "history": history, "before": before, "orphan": orphan,
            "recent_orphan": recent_orphan, "escalated": escalated}


def _run_dir(path: Path, size: int) -> Path:
    (path / "selectors" / "x").mkdir(parents=True)
    (path / "report.json").write_text("{}")
    (path / "selectors" / "x" / "stdout.log").write_bytes(b"x" * size)
    return path


def _state(store_or_path) -> dict:
    if not isinstance(store_or_path, HistoryStore):
        with HistoryStore.open(store_or_path, create=False) as store:
            return _state(store)
    db = store_or_path.db

    return {
        "runs": {row[0] for row in db.execute("SELECT run_key FROM runs")},
        "alert_state": {row[0]: (row[1], row[2]) for row in db.execute("SELECT fingerprint, status, trigger_id FROM alert_state")},
        "baselines": sorted((row[0], float(row[1])) for row in db.execute("SELECT selector, value FROM baselines")),
        "outbox": {row[0] for row in db.execute("SELECT message_id FROM alert_outbox")},
        "events": {(row[0], row[1]) for row in db.execute("SELECT event, message_id FROM alert_events")},
        "notifications": {row[0] for row in db.execute("SELECT fingerprint FROM alert_notifications")},
        "dispatches": {row[0] for row in db.execute("SELECT run_key FROM alert_dispatches")},
        "silences": {row[0] for row in db.execute("SELECT reason FROM alert_silences")},
        "counts": {table: int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                   for table in ("selector_results", "test_results", "alerts")},
    }


def _keys(names) -> set[str]:
    return {key(RUNS[n][0], RUNS[n][1]) for n in names}


def test_dry_run_reports_the_plan_and_changes_nothing(aged):
    result = prune(aged["reports"], aged["history"], RetentionSpec(), dry_run=True, now=NOW)
    assert {d.name for d in result.removed_dirs} == _keys(REMOVED) | {aged["orphan"].name}
    assert result.history_rows["runs"] == len(REMOVED)
    assert _state(aged["history"]) == aged["before"]
    assert all((aged["reports"] / name).is_dir() for name in _keys(RUNS))
    assert aged["orphan"].is_dir()


def test_prune_removes_exactly_the_unprotected_old_evidence(aged):
    assert_exact_prune(aged)

    db = sqlite3.connect(aged["history"])
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert db.execute("PRAGMA foreign_key_check").fetchall() == []


def test_prune_on_a_postgresql_history(tmp_path, pg_url):  # noqa: F811 - the fixture of test_history_postgres
    from harness.history_backend import HistoryURL

    assert_exact_prune(build_aged(tmp_path / "reports", HistoryURL(pg_url)))


def assert_exact_prune(aged: dict) -> None:
    before = aged["before"]
    result = prune(aged["reports"], aged["history"], RetentionSpec(), now=NOW)
    after = _state(aged["history"])

    # history: the two unprotected old runs go, with their rows; every protected one stays, and why
    assert after["runs"] == before["runs"] - _keys(REMOVED) == _keys(set(RUNS) - REMOVED)
    reasons = {k.run_key: " ; ".join(k.reasons) for k in result.kept_runs}
    assert set(reasons) == _keys(KEPT_OLD)
    assert "notifications not planned yet" in reasons[key(200, "pr")]
    assert "latest result of parity" in reasons[key(170, "nightly")]
    assert "last known-good result of parity" in reasons[key(170, "nightly")]
    assert "open alert BUDGET-001" in reasons[key(120, "weekly")]
    assert "last passing result of integration" in reasons[key(100, "pr")]
    assert "last known-good result of integration" in reasons[key(100, "pr")]
    assert "latest state (resolved) of alert TEST-001" in reasons[key(95, "nightly")]
    removed_rows = result.history_rows
    # R2: FAIL-001 firing; R4: RT-003 firing and the row resolving R2's FAIL-001
    assert removed_rows["runs"] == 2 and removed_rows["selector_results"] == 4 and removed_rows["alerts"] == 3
    assert after["counts"]["selector_results"] == before["counts"]["selector_results"] - 4

    # no alert changes state: resolved ones stay resolved, open ones stay open
    assert after["alert_state"] == {fp: state for fp, state in before["alert_state"].items() if fp in after["alert_state"]}
    stitch = fingerprint("TEST-001", "stitching", STITCH_TEST)
    assert after["alert_state"][stitch] == ("resolved", "TEST-001")
    assert after["alert_state"][fingerprint("BUDGET-001", None, None, "cadence:weekly")][0] == "firing"
    assert after["alert_state"][fingerprint("RT-003", "integration", None, f"host:{HOST}")] == ("resolved", "RT-003")

    # baselines: the superseded one goes; current ones stay, however old
    assert after["baselines"] == [("integration", 31.0), ("parity", 4.0)]
    # delivery log: delivered/abandoned old messages go; pending, rejected and recent ones stay
    assert after["outbox"] == {"msg_pending-old", "msg_rejected-old", "msg_delivered-recent"}
    assert ("delivered", "msg_delivered-old") not in after["events"] and ("queued", None) not in after["events"]
    assert ("delivery_failed", "msg_pending-old") in after["events"]      # its message still waits
    assert ("rejected", "msg_rejected-old") in after["events"]
    assert ("delivered", "msg_delivered-recent") in after["events"]
    assert after["notifications"] == {"fp-firing"}
    assert after["dispatches"] == {key(200, "pr")}
    assert after["silences"] == {"still active"}

    # report directories: the removed runs' and the old orphan go; protected, recent, escalation and
    # foreign entries stay
    assert {d.name for d in result.removed_dirs} == _keys(REMOVED) | {aged["orphan"].name}
    assert result.dir_bytes >= 2 * 1000 + 5000
    remaining = {p.name for p in aged["reports"].iterdir()}
    assert not (_keys(REMOVED) | {aged["orphan"].name}) & remaining
    assert _keys(set(RUNS) - REMOVED) <= remaining
    assert {aged["recent_orphan"].name, aged["escalated"].name, "notes", "index.html"} <= remaining
    assert (aged["escalated"] / "escalation" / "document.md").read_text() == "kept forever"
    assert any(d.name == aged["escalated"].name and "escalation" in d.reason for d in result.kept_dirs)
    assert not any((aged["reports"] / ".staging").iterdir())  # nothing left half-deleted

    if result.history_bytes_before is not None:  # SQLite: the file shrank (VACUUM) or stayed
        assert result.history_bytes_after <= result.history_bytes_before

    again = prune(aged["reports"], aged["history"], RetentionSpec(), now=NOW)  # idempotent
    assert again.removed_dirs == [] and not any(again.history_rows.values())


def test_a_longer_retention_keeps_more(aged):
    result = prune(aged["reports"], aged["history"], RetentionSpec(regression_evidence_days=190), dry_run=True, now=NOW)
    assert {d.name for d in result.removed_dirs} == {aged["orphan"].name}  # R2 (180 days) is now young enough
    assert result.history_rows["runs"] == 0


def test_without_a_history_database_no_report_directory_is_removed(aged, tmp_path):
    result = prune(aged["reports"], tmp_path / "absent.sqlite", RetentionSpec(), now=NOW)
    assert result.removed_dirs == [] and aged["orphan"].is_dir()
    assert "no history database" in result.warnings[0]


def test_the_command_prints_what_it_removed_and_the_space_freed(aged, tmp_path, capsys):
    catalog = tmp_path / "harness.toml"
    catalog.write_text('version = 1\nroot = "."\n[selectors.integration]\ntitle = "i"\nowner = "o"\nargs = ["t"]\n'
                       '[cadences.pr]\nselectors = ["integration"]\n[retention]\nregression_evidence_days = 120\n')
    args = ["prune", "--catalog", str(catalog), "--reports-dir", str(aged["reports"]), "--history", str(aged["history"])]
    # the real clock: every run of the fixture is months or years old, so only protected ones stay
    assert harness_main(*args, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would remove" in out and aged["orphan"].name in out and "nothing removed" in out
    assert aged["orphan"].is_dir()
    assert harness_main(*args) == 0
    out = capsys.readouterr().out
    assert "regression evidence 120 days" in out and "freed" in out and "history rows removed:" in out
    assert not aged["orphan"].exists() and aged["escalated"].is_dir()
    dashboard = (aged["reports"] / "index.html").read_text()
    assert dashboard != "<html></html>" and key(180, "pr") not in dashboard  # rebuilt without the removed runs


@pytest.mark.parametrize("body, message", [
    ("regression_evidence_days = 30", "retention.regression_evidence_days: must be at least 90"),
    ("delivery_log_days = 0", "retention.delivery_log_days"),
    ("escalation_evidence = \"30 days\"", "retention.escalation_evidence"),
    ("keep = 1", "retention.keep"),
])
def test_the_retention_table_is_validated(tmp_path, body, message):
    catalog = tmp_path / "harness.toml"
    catalog.write_text('version = 1\n[selectors.a]\ntitle = "a"\nowner = "o"\nargs = ["t"]\n'
                       f'[cadences.pr]\nselectors = ["a"]\n[retention]\n{body}\n')
    with pytest.raises(ConfigError, match=message):
        load_catalog(catalog)


def test_the_shipped_catalog_keeps_regression_evidence_three_months():
    from harness.locations import DEFAULT_CATALOG

    retention = load_catalog(DEFAULT_CATALOG).retention
    assert retention.regression_evidence_days >= 90 and retention.escalation_evidence == "forever"


def test_the_nightly_workflow_prunes_before_it_saves_the_history():
    import yaml

    workflow = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "nightly.yml"
    steps = yaml.safe_load(workflow.read_text())["jobs"]["nightly"]["steps"]
    runs = [step.get("run", "").strip() for step in steps]
    prune_at = runs.index("harness prune")
    save_at = next(i for i, step in enumerate(steps) if step.get("uses", "").startswith("actions/cache/save@"))
    assert runs.index("harness run --cadence nightly") < prune_at < save_at
    assert steps[prune_at]["if"] == "${{ !cancelled() }}"  # a failed gate still prunes
