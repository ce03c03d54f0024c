"""Evidence retention (brief §3.2): what `harness prune` removes, and what it must never remove.

Regression evidence older than the catalog's ``[retention] regression_evidence_days`` goes: report
directories under the reports folder and the history rows of their runs (selector and test results,
figures, alert rows), and calibrated baselines that a newer calibration superseded. The alert
delivery log older than ``delivery_log_days`` goes too: delivered or abandoned outbox messages,
their events, planned dispatches, the notification log of resolved alerts and ended silences.

Whatever its age, a run stays when it holds:

- a selector's latest result (its current state: the dashboard tile, RT-002's streak);
- a selector's last passing result and its last known-good one (passing, fired nothing), which
  ``harness reproduce`` diffs against;
- the latest row of an alert that is still firing, or of any alert a kept run also records
  (so pruning never re-opens a resolved alert nor loses an open one);
- notifications not yet planned (their ``report.json`` is still needed).

Current baselines, undelivered messages and active silences are never removed, and neither is an
escalation directory (``plans/active/*/reports/*/escalation/`` lives outside the reports folder;
a directory holding one is skipped wherever it is). History rows go in one transaction; then each
report directory is renamed into ``.staging/`` and deleted, so a crash never leaves half a run
directory that looks published (the next run clears ``.staging/``).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from harness.catalog import RetentionSpec
from harness.history import HistoryStore
from harness.run_directory import STAGING

RUN_DIR_NAME = re.compile(r"^(?P<stamp>\d{8}T\d{6}Z)-(?P<rest>.+)$")
CHUNK = 400  # ids per IN (...) list: well under every backend's parameter limit

# (table, WHERE clause) of the delivery log, each with one parameter: the delivery cutoff.
DELIVERY_LOG = (
    ("alert_outbox", "(state = 'delivered' AND delivered_at < ?)"),
    ("alert_outbox", "(state = 'abandoned' AND created_at < ?)"),
    ("alert_events", "at < ? AND (message_id IS NULL OR message_id NOT IN "
                     "(SELECT message_id FROM alert_outbox WHERE state IN ('pending', 'sending', 'rejected')))"),
    ("alert_dispatches", "planned_at IS NOT NULL AND created_at < ?"),
    ("alert_notifications", "status = 'resolved' AND last_sent_at < ?"),
    ("alert_silences", "COALESCE(expired_at, ends_at) < ?"),
)
RUN_CHILDREN = (  # deleted before their run, children first (no reliance on ON DELETE CASCADE)
    ("test_results", "selector_result_id IN (SELECT id FROM selector_results WHERE run_id IN ({ids}))"),
    ("figures", "selector_result_id IN (SELECT id FROM selector_results WHERE run_id IN ({ids}))"),
    ("alerts", "run_id IN ({ids})"),
    ("selector_results", "run_id IN ({ids})"),
    ("runs", "id IN ({ids})"),
)


def iso(moment: datetime) -> str:
    """The history's timestamp form (ISO 8601 UTC with milliseconds, ``Z``): sorts as text."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_dir_time(name: str) -> datetime | None:
    """When the run of ``reports/<YYYYMMDDTHHMMSSZ>-<cadence>[-N]/`` started; None for other names."""
    match = RUN_DIR_NAME.match(name)
    if not match:
        return None
    return datetime.strptime(match.group("stamp"), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def tree_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (symbolic links counted as links, never followed)."""
    total = 0
    for folder, dirs, files in os.walk(path):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            try:
                total += os.lstat(os.path.join(folder, name)).st_size
            except OSError:
                pass
    return total


def holds_escalation(path: Path) -> bool:
    """A directory with escalation evidence in it (``escalation/`` or ``escalation.json``, up to
    two levels down): retention says forever, so prune never removes it."""
    for candidate in (path, *[child for child in _subdirs(path)]):
        if (candidate / "escalation").is_dir() or (candidate / "escalation.json").is_file():
            return True
    return False


def _subdirs(path: Path) -> Iterator[Path]:
    try:
        yield from (child for child in path.iterdir() if child.is_dir() and not child.is_symlink())
    except OSError:
        return


def _chunks(values: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(values), CHUNK):
        yield values[start:start + CHUNK]


# -- the plan ---------------------------------------------------------------------------------------


@dataclass
class KeptRun:
    run_key: str
    started_at: str
    reasons: list[str]


@dataclass
class ReportDir:
    name: str
    bytes: int
    reason: str


@dataclass
class PruneResult:
    """What was (or, with ``dry_run``, would be) removed, and what was kept past its age and why."""

    dry_run: bool
    now: datetime
    retention: RetentionSpec
    reports_dir: Path
    history: str | None
    removed_dirs: list[ReportDir] = field(default_factory=list)
    kept_dirs: list[ReportDir] = field(default_factory=list)
    kept_runs: list[KeptRun] = field(default_factory=list)
    history_rows: dict[str, int] = field(default_factory=dict)
    history_bytes_before: int | None = None
    history_bytes_after: int | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def regression_cutoff(self) -> datetime:
        return self.now - timedelta(days=self.retention.regression_evidence_days)

    @property
    def delivery_cutoff(self) -> datetime:
        return self.now - timedelta(days=self.retention.delivery_log_days)

    @property
    def dir_bytes(self) -> int:
        return sum(item.bytes for item in self.removed_dirs)

    @property
    def history_bytes_freed(self) -> int | None:
        if self.history_bytes_before is None or self.history_bytes_after is None:
            return None
        return max(0, self.history_bytes_before - self.history_bytes_after)

    @property
    def bytes_freed(self) -> int:
        return self.dir_bytes + (self.history_bytes_freed or 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "now": iso(self.now),
            "retention": self.retention.model_dump(),
            "cutoffs": {"regression_evidence": iso(self.regression_cutoff), "delivery_log": iso(self.delivery_cutoff)},
            "reports_dir": str(self.reports_dir),
            "history": self.history,
            "report_dirs": {
                "removed": [item.__dict__ for item in self.removed_dirs],
                "kept": [item.__dict__ for item in self.kept_dirs],
            },
            "kept_runs": [item.__dict__ for item in self.kept_runs],
            "history_rows": self.history_rows,
            "history_bytes": {"before": self.history_bytes_before, "after": self.history_bytes_after,
                              "freed": self.history_bytes_freed},
            "bytes_freed": self.bytes_freed,
            "warnings": self.warnings,
        }


def _latest_first(rows: Iterable[Any]) -> list[Any]:
    return sorted(rows, key=lambda row: (parse_time(row["started_at"]) or datetime.min.replace(tzinfo=UTC), row["run_id"]),
                  reverse=True)


def protected_runs(db: Any) -> dict[int, list[str]]:
    """Run ids that must stay whatever their age, each with the reasons (see the module docstring)."""
    keep: dict[int, list[str]] = {}

    def hold(run_id: int, reason: str) -> None:
        reasons = keep.setdefault(int(run_id), [])
        if reason not in reasons:
            reasons.append(reason)

    results = _latest_first(db.execute(
        """
        SELECT sr.selector, sr.state, r.id AS run_id, r.started_at,
               (SELECT COUNT(*) FROM alerts AS a
                 WHERE a.run_id = r.id AND a.selector = sr.selector AND a.status = 'firing') AS fired
        FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
        """
    ).fetchall())
    latest: set[str] = set()
    passing: set[str] = set()
    known_good: set[str] = set()
    for row in results:
        selector = row["selector"]
        if row["state"] != "not_run" and selector not in latest:
            latest.add(selector)
            hold(row["run_id"], f"latest result of {selector}")
        if row["state"] == "passed":
            if selector not in passing:
                passing.add(selector)
                hold(row["run_id"], f"last passing result of {selector}")
            if not row["fired"] and selector not in known_good:
                known_good.add(selector)
                hold(row["run_id"], f"last known-good result of {selector}")
    for row in db.execute("SELECT run_id, trigger_id, fingerprint FROM alert_state WHERE status = 'firing'").fetchall():
        hold(row["run_id"], f"open alert {row['trigger_id']} ({row['fingerprint']})")
    unplanned = unplanned_runs(db)
    if unplanned:
        for row in db.execute("SELECT id, run_key FROM runs").fetchall():
            if row["run_key"] in unplanned:
                hold(row["id"], "notifications not planned yet")
    return keep


def unplanned_runs(db: Any) -> set[str]:
    """Run keys whose notifications are not queued yet: planning them later reads their report.json."""
    return {row[0] for row in db.execute("SELECT run_key FROM alert_dispatches WHERE planned_at IS NULL").fetchall()}


def _close_over_alerts(db: Any, kept: set[int], keep: dict[int, list[str]]) -> None:
    """Keep the run holding the latest row of every alert that a kept run records, so each alert's
    state (the latest row per fingerprint) is the same after pruning as before."""
    latest = {row["fingerprint"]: (int(row["run_id"]), row["trigger_id"], row["status"])
              for row in db.execute("SELECT fingerprint, run_id, trigger_id, status FROM alert_state").fetchall()}
    by_run: dict[int, set[str]] = {}
    for row in db.execute("SELECT DISTINCT run_id, fingerprint FROM alerts").fetchall():
        by_run.setdefault(int(row["run_id"]), set()).add(row["fingerprint"])
    pending = list(kept)
    while pending:
        run_id = pending.pop()
        for fingerprint in by_run.get(run_id, ()):
            holder, trigger, status = latest[fingerprint]
            if holder not in kept:
                kept.add(holder)
                keep.setdefault(holder, []).append(f"latest state ({status}) of alert {trigger} that a kept run records")
                pending.append(holder)


def _count(db: Any, table: str, where: str, params: list[Any]) -> int:
    return int(db.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", params).fetchone()[0])  # noqa: S608 - fixed SQL


def _history_rows(db: Any, doomed: list[int], baseline_ids: list[int], delivery_cutoff: str,
                  delete: bool) -> dict[str, int]:
    """Count (and with ``delete``, remove) the rows of the doomed runs, superseded baselines and the
    delivery log past its cutoff."""
    rows: dict[str, int] = {}

    def take(table: str, where: str, params: list[Any]) -> None:
        count = _count(db, table, where, params)
        if count and delete:
            db.execute(f"DELETE FROM {table} WHERE {where}", params)  # noqa: S608 - fixed SQL
        rows[table] = rows.get(table, 0) + count

    for table, where in RUN_CHILDREN:
        rows.setdefault(table, 0)
        for chunk in _chunks(doomed):
            take(table, where.format(ids=", ".join("?" * len(chunk))), list(chunk))
    rows.setdefault("baselines", 0)
    for chunk in _chunks(baseline_ids):
        take("baselines", f"id IN ({', '.join('?' * len(chunk))})", list(chunk))
    for table, where in DELIVERY_LOG:
        take(table, where, [delivery_cutoff])
    return rows


def _superseded_baselines(db: Any, cutoff: datetime) -> list[int]:
    """Baseline rows a newer calibration of the same (selector, host, metric) replaced, older than cutoff."""
    seen: set[tuple[str, str, str]] = set()
    doomed = []
    for row in db.execute("SELECT id, selector, host_key, metric, created_at FROM baselines ORDER BY id DESC").fetchall():
        key = (row["selector"], row["host_key"], row["metric"])
        if key not in seen:
            seen.add(key)  # the current baseline: never removed
            continue
        created = parse_time(row["created_at"])
        if created is not None and created < cutoff:
            doomed.append(int(row["id"]))
    return doomed


def _database_bytes(path: Path) -> int:
    return sum(Path(f"{path}{suffix}").stat().st_size for suffix in ("", "-wal")
               if Path(f"{path}{suffix}").exists())


def prune(reports_dir: Path, history_path: Any, retention: RetentionSpec, *, dry_run: bool = False,
          now: datetime | None = None) -> PruneResult:
    """Apply the retention policy: history rows first (one transaction), then report directories."""
    from harness import history_backend

    now = now or datetime.now(UTC)
    reports_dir = Path(reports_dir)
    result = PruneResult(dry_run=dry_run, now=now, retention=retention, reports_dir=reports_dir,
                         history=None if history_path is None else str(history_path))
    cutoff = result.regression_cutoff
    is_url = history_backend.is_url(history_path)
    runs: dict[str, dict[str, Any]] = {}  # run_key -> {id, started_at, fate}
    unplanned: set[str] = set()
    history_known = False
    if history_path is not None and (is_url or Path(history_path).exists()):
        history_known = True
        if not is_url:
            result.history_bytes_before = _database_bytes(Path(history_path))
        with HistoryStore.open(history_path, create=False) as store:
            with store.transaction() as db:  # the write lock: no run is recorded half-way through the plan
                keep = protected_runs(db)
                unplanned = unplanned_runs(db)
                all_runs = db.execute("SELECT id, run_key, started_at FROM runs").fetchall()
                old = {int(row["id"]) for row in all_runs
                       if (parse_time(row["started_at"]) or now) < cutoff}
                kept = ({int(row["id"]) for row in all_runs} - old) | set(keep)
                _close_over_alerts(db, kept, keep)
                doomed = sorted(old - kept)
                for row in all_runs:
                    run_id = int(row["id"])
                    fate = "removed" if run_id in doomed else "kept"
                    runs[row["run_key"]] = {"id": run_id, "started_at": row["started_at"], "fate": fate}
                    if run_id in old and run_id in kept:
                        result.kept_runs.append(KeptRun(row["run_key"], row["started_at"], keep.get(run_id, [])))
                result.history_rows = _history_rows(db, doomed, _superseded_baselines(db, cutoff),
                                                    iso(result.delivery_cutoff), delete=not dry_run)
            if not dry_run and not is_url and any(result.history_rows.values()):
                store.db.execute("VACUUM")  # give the freed pages back to the file system
                store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # in WAL mode VACUUM's result sits in the WAL
        if not is_url:
            result.history_bytes_after = _database_bytes(Path(history_path)) if not dry_run else None
        result.kept_runs.sort(key=lambda item: item.started_at)
    elif history_path is not None:
        result.warnings.append(f"no history database at {history_path}: report directories are kept (without it prune "
                               "cannot tell which one holds a selector's last known-good result)")
    _prune_report_dirs(result, runs, unplanned, history_known)
    return result


def _prune_report_dirs(result: PruneResult, runs: dict[str, dict[str, Any]], unplanned: set[str],
                       history_known: bool) -> None:
    reports_dir = result.reports_dir
    if not reports_dir.is_dir():
        return
    cutoff = result.regression_cutoff
    for entry in sorted(reports_dir.iterdir()):
        started = run_dir_time(entry.name)
        if started is None or started >= cutoff or not entry.is_dir() or entry.is_symlink():
            continue
        run = runs.get(entry.name)
        if holds_escalation(entry):
            result.kept_dirs.append(ReportDir(entry.name, 0, "holds escalation evidence (kept forever)"))
            continue
        if not history_known:
            continue
        if entry.name in unplanned:
            result.kept_dirs.append(ReportDir(entry.name, 0, "notifications not planned yet"))
            continue
        if run is not None and run["fate"] == "kept":
            reasons = next((k.reasons for k in result.kept_runs if k.run_key == entry.name), [])
            result.kept_dirs.append(ReportDir(entry.name, 0, "; ".join(reasons) or "its history row is kept"))
            continue
        reason = "history rows removed with it" if run is not None else "no history row (a --no-history or shard run)"
        size = tree_bytes(entry)
        if not result.dry_run:
            try:
                _remove_dir(reports_dir, entry)
            except OSError as exc:
                result.warnings.append(f"could not remove {entry}: {exc.strerror or exc}")
                continue
        result.removed_dirs.append(ReportDir(entry.name, size, reason))


def _remove_dir(reports_dir: Path, entry: Path) -> None:
    """Rename into ``.staging/`` (atomic: the run directory is gone at once), then delete there; the
    next run clears anything a crash leaves in ``.staging/``."""
    staging = reports_dir / STAGING
    staging.mkdir(exist_ok=True)
    aside = staging / f"{entry.name}.pruned.{os.getpid()}"
    os.rename(entry, aside)
    shutil.rmtree(aside)

