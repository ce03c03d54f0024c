"""The harness's current state as OpenMetrics text, for Prometheus (``harness metrics``, ``/metrics``).

Read from history (SQLite or PostgreSQL), so it says the same whichever runner wrote it. Names
follow Prometheus conventions: a ``harness_`` prefix, base units in the name (``_seconds``),
``_total`` on counter samples, and a stateset for the selector state (one sample per state, 1 for
the current one), which OpenMetrics parsers read as such and Prometheus as a gauge per state.

Per selector (its newest result that ran): state, runtime, test counts by outcome, quality
figures, firing alerts, when it ran. Per trigger: alerts firing now, and how often it has fired.
Per cadence: runs by status.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from harness.states import SelectorState

CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
OUTCOMES = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "rerun")


def escape_label(value: object) -> str:
    """A label value as OpenMetrics writes it: backslash, double quote and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if value != value:  # NaN
        return "NaN"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


@dataclass
class Family:
    """One metric family: its TYPE, UNIT (when the name ends in one) and HELP, then its samples."""

    name: str
    type: str
    help: str
    unit: str | None = None
    samples: list[tuple[str, dict[str, object], float]] = field(default_factory=list)

    def add(self, labels: dict[str, object], value: float, suffix: str = "") -> None:
        self.samples.append((self.name + suffix, labels, value))

    def lines(self) -> Iterable[str]:
        yield f"# TYPE {self.name} {self.type}"
        if self.unit:
            yield f"# UNIT {self.name} {self.unit}"
        yield f"# HELP {self.name} {escape_label(self.help)}"
        for name, labels, value in self.samples:
            rendered = ",".join(f'{key}="{escape_label(val)}"' for key, val in labels.items())
            yield f"{name}{{{rendered}}} {_number(value)}" if rendered else f"{name} {_number(value)}"


def _rows(store: Any, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    return [dict(row) for row in store.db.execute(sql, params).fetchall()]


def _epoch(stamp: str | None) -> float | None:
    if not stamp:
        return None
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def families(store: Any) -> list[Family]:
    """Every metric family, from ``store`` (a HistoryStore)."""
    state = Family("harness_selector_state", "stateset", "How the selector's newest run ended.")
    runtime = Family("harness_selector_runtime_seconds", "gauge",
                     "Runtime the rules compared in the selector's newest run.", unit="seconds")
    tests = Family("harness_selector_tests", "gauge", "Tests of the selector's newest run, by outcome.")
    figures = Family("harness_selector_figure", "gauge", "Quality figures the selector's newest run recorded.")
    firing = Family("harness_selector_firing_alerts", "gauge", "Alerts of the selector firing now.")
    last_run = Family("harness_selector_last_run_timestamp_seconds", "gauge",
                      "When the selector's newest run started (Unix time).", unit="seconds")
    trigger_firing = Family("harness_trigger_firing_alerts", "gauge", "Alerts of the trigger firing now.")
    trigger_fired = Family("harness_trigger_fired", "counter", "Times the trigger fired, over the kept history.")
    runs = Family("harness_runs", "counter", "Runs recorded in history, by cadence and status.")

    latest: dict[str, dict[str, Any]] = {}
    for row in _rows(store, """
            SELECT sr.id, sr.selector, sr.state, sr.runtime_s, sr.passed, sr.failed, sr.error, sr.skipped, sr.xfailed,
                   sr.xpassed, sr.rerun, r.started_at
            FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
            WHERE sr.state <> 'not_run'
            ORDER BY sr.selector, r.started_at DESC, r.id DESC"""):
        latest.setdefault(row["selector"], row)
    firing_by_selector = {row["selector"]: int(row["n"]) for row in _rows(store, """
            SELECT selector, COUNT(*) AS n FROM alert_state WHERE status = 'firing' AND selector IS NOT NULL
            GROUP BY selector""")}
    states = [s.value for s in SelectorState]
    for name, row in sorted(latest.items()):
        for value in states:
            state.add({"selector": name, "harness_selector_state": value}, 1 if row["state"] == value else 0)
        if row["runtime_s"] is not None:
            runtime.add({"selector": name}, float(row["runtime_s"]))
        for outcome in OUTCOMES:
            tests.add({"selector": name, "outcome": outcome}, int(row[outcome] or 0))
        for figure in _rows(store, "SELECT name, value FROM figures WHERE selector_result_id = ? ORDER BY name, id",
                            (row["id"],)):
            figures.add({"selector": name, "figure": figure["name"]}, float(figure["value"]))
        firing.add({"selector": name}, firing_by_selector.get(name, 0))
        started = _epoch(row["started_at"])
        if started is not None:
            last_run.add({"selector": name}, started)
    for row in _rows(store, """
            SELECT trigger_id, severity, COUNT(*) AS n FROM alert_state WHERE status = 'firing'
            GROUP BY trigger_id, severity ORDER BY trigger_id, severity"""):
        trigger_firing.add({"trigger": row["trigger_id"], "severity": row["severity"]}, int(row["n"]))
    for row in _rows(store, """
            SELECT trigger_id, COUNT(*) AS n FROM alerts WHERE status = 'firing' GROUP BY trigger_id ORDER BY trigger_id"""):
        trigger_fired.add({"trigger": row["trigger_id"]}, int(row["n"]), "_total")
    for row in _rows(store, """
            SELECT cadence, status, COUNT(*) AS n FROM runs GROUP BY cadence, status ORDER BY cadence, status"""):
        runs.add({"cadence": row["cadence"], "status": row["status"]}, int(row["n"]), "_total")
    return [state, runtime, tests, figures, firing, last_run, trigger_firing, trigger_fired, runs]


def openmetrics_text(store: Any) -> str:
    """The exposition: every family, then ``# EOF`` (OpenMetrics requires it)."""
    lines = [line for family in families(store) for line in family.lines()]
    return "\n".join([*lines, "# EOF"]) + "\n"


def render_from_history(history: Any) -> str:
    """Open the history read-only (never create it) and render; a ConfigError when it is missing."""
    from harness.history import HistoryStore

    with HistoryStore.open(history, create=False) as store:
        return openmetrics_text(store)
