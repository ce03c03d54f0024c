"""Read the recorded series that change-point and flaky-test rules judge, from the history store.

Reads only, and only a window: the latest runs of one selector (on one host for timings),
after the newest accepted baseline (``harness baseline accept``). With no history store
(``--no-history``, ``harness evaluate`` without one) every read returns nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

# Runs whose timings describe the selector's normal work: a failed or crashed run stops early, and
# one whose tests did not execute (did_not_run, the older "skipped") did no work at all.
TIMED_STATES = ("passed", "flaky")


@dataclass(frozen=True)
class RunPoint:
    """One earlier run of a selector, as the series rules see it."""

    run_id: int
    run_key: str
    git_sha: str | None
    result_id: int
    runtime_s: float | None
    cpu_s: float | None
    state: str


def _db(history: object) -> Any | None:
    return getattr(history, "db", None)


def accepted_after(history: object, selector: str, host_key: str | None, series: str) -> tuple[int, dict[str, Any] | None]:
    """The run id after which the series is judged (0: from the start) and the acceptance row."""
    db = _db(history)
    if db is None:
        return 0, None
    row = db.execute(
        """
        SELECT * FROM baseline_accepts WHERE selector = ? AND (host_key IS NULL OR host_key = ?)
          AND (series = '*' OR series = ?) ORDER BY after_run_id DESC, id DESC LIMIT 1
        """,
        (selector, host_key or "", series),
    ).fetchone()
    return (0, None) if row is None else (int(row["after_run_id"]), dict(row))


def recent_runs(history: object, selector: str, host_key: str | None, limit: int, after_run_id: int = 0,
                states: tuple[str, ...] = TIMED_STATES) -> list[RunPoint]:
    """The selector's latest runs (on ``host_key``, or all hosts when None), oldest first."""
    db = _db(history)
    if db is None or limit <= 0:
        return []
    marks = ", ".join("?" for _ in states)
    query = f"""
        SELECT r.id AS run_id, r.run_key, r.git_sha, sr.id AS result_id, sr.runtime_s, sr.cpu_s, sr.state
        FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
        WHERE sr.selector = ? AND r.id > ? AND sr.state IN ({marks})"""
    params: list[Any] = [selector, after_run_id, *states]
    if host_key is not None:
        query += " AND r.host_key = ?"
        params.append(host_key)
    query += " ORDER BY r.started_at DESC, r.id DESC LIMIT ?"
    params.append(limit)
    rows = db.execute(query, params).fetchall()
    return [RunPoint(int(r["run_id"]), r["run_key"], r["git_sha"], int(r["result_id"]), r["runtime_s"], r["cpu_s"], r["state"])
            for r in reversed(rows)]


def _chunks(ids: list[int], size: int = 500):
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def test_durations(history: object, result_ids: list[int]) -> list[tuple[int, str, float | None]]:
    """(selector_result_id, nodeid, call_s) of the passed tests of those results."""
    db = _db(history)
    rows: list[tuple[int, str, float | None]] = []
    if db is None:
        return rows
    for chunk in _chunks(result_ids):
        marks = ", ".join("?" for _ in chunk)
        rows.extend((int(r[0]), r[1], r[2]) for r in db.execute(
            f"SELECT selector_result_id, nodeid, call_s FROM test_results "
            f"WHERE selector_result_id IN ({marks}) AND outcome = 'passed' AND kind = 'test'", chunk))
    return rows


def test_outcomes(history: object, result_ids: list[int]) -> list[tuple[int, str, str, str | None]]:
    """(selector_result_id, nodeid, outcome, message) of every test of those results."""
    db = _db(history)
    rows: list[tuple[int, str, str, str | None]] = []
    if db is None:
        return rows
    for chunk in _chunks(result_ids):
        marks = ", ".join("?" for _ in chunk)
        rows.extend((int(r[0]), r[1], r[2], r[3]) for r in db.execute(
            f"SELECT selector_result_id, nodeid, outcome, message FROM test_results "
            f"WHERE selector_result_id IN ({marks}) AND kind = 'test'", chunk))
    return rows


def figure_values(history: object, result_ids: list[int]) -> list[tuple[int, str, str, float]]:
    """(selector_result_id, nodeid, name, value) of the figures of those results."""
    db = _db(history)
    rows: list[tuple[int, str, str, float]] = []
    if db is None:
        return rows
    for chunk in _chunks(result_ids):
        marks = ", ".join("?" for _ in chunk)
        rows.extend((int(r[0]), r[1], r[2], float(r[3])) for r in db.execute(
            f"SELECT selector_result_id, nodeid, name, value FROM figures WHERE selector_result_id IN ({marks})", chunk))
    return rows


def firing(history: object, trigger: str, selector: str) -> dict[str, dict[str, Any]]:
    """Evidence of this trigger's alerts for the selector that are firing now, by fingerprint."""
    db = _db(history)
    if db is None:
        return {}
    rows = db.execute(
        """
        SELECT a.fingerprint, a.status, a.evidence FROM alerts AS a
        JOIN (SELECT fingerprint, MAX(id) AS id FROM alerts WHERE trigger_id = ? AND selector = ? GROUP BY fingerprint)
          AS latest ON a.id = latest.id
        """,
        (trigger, selector),
    ).fetchall()
    found = {}
    for row in rows:
        if row["status"] != "firing":
            continue
        try:
            found[row["fingerprint"]] = json.loads(row["evidence"] or "{}")
        except ValueError:
            found[row["fingerprint"]] = {}
    return found
