"""``reports/index.html``: the page people open when something is red.

Built from the run history (so it shows the same thing whichever runner wrote it, SQLite or
PostgreSQL): the latest state of every selector, the recent runs with links to their
``summary.html``, a runtime trend chart per selector with its threshold lines (matplotlib,
inline SVG) and the open and silenced alerts. Regenerated after every run and by
``harness dashboard``; written atomically (aside, then renamed) so a browser never reads half.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from harness.catalog import Catalog
from harness.thresholds import Thresholds, resolve_thresholds

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "dashboard.html.j2"
INDEX_NAME = "index.html"
RECENT_RUNS = 25
TREND_POINTS = 40
GOOD_STATES = {"passed", "skipped"}
THRESHOLD_STYLE = {  # name -> (colour, label)
    "critical": ("#c62828", "critical (RT-001)"),
    "warning": ("#ef6c00", "warning (RT-002)"),
    "suspicious": ("#6a1b9a", "suspicious below (RT-003)"),
}


@dataclass
class SelectorTile:
    name: str
    title: str
    state: str
    run_key: str
    cadence: str
    started_at: str
    runtime_s: float | None
    counts: dict[str, int]
    triggers: list[str]
    summary_href: str | None


@dataclass
class RunRow:
    run_key: str
    cadence: str
    started_at: str
    wall_s: float | None
    status: str
    gate_passed: bool
    git_sha: str | None
    host_key: str
    fired: int
    summary_href: str | None


@dataclass
class AlertRow:
    trigger: str
    severity: str
    title: str | None
    selector: str | None
    nodeid: str | None
    summary: str | None
    owner: str | None
    sla: str | None
    since: str | None
    run_key: str
    summary_href: str | None
    silence: dict[str, Any] | None = None


@dataclass
class TrendChart:
    selector: str
    points: int
    svg: Markup
    thresholds: dict[str, float]


@dataclass
class DashboardData:
    generated_at: str
    history_label: str
    selectors: list[SelectorTile] = field(default_factory=list)
    runs: list[RunRow] = field(default_factory=list)
    open_alerts: list[AlertRow] = field(default_factory=list)
    silenced_alerts: list[AlertRow] = field(default_factory=list)
    silences_known: bool = False
    charts: list[TrendChart] = field(default_factory=list)


# -- reading history ---------------------------------------------------------------------------


def _summary_href(reports_dir: Path, run_key: str | None) -> str | None:
    """``<run>/summary.html`` relative to index.html, when that file exists."""
    if not run_key or "/" in run_key or run_key.startswith("."):
        return None
    return f"{run_key}/summary.html" if (reports_dir / run_key / "summary.html").is_file() else None


def _rows(store: Any, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    return [dict(row) for row in store.db.execute(sql, tuple(params)).fetchall()]


def _has_table(store: Any, name: str) -> bool:
    """Whether the history has a table (the silences table comes from the alert-delivery migration)."""
    checker = getattr(store, "has_table", None)
    if checker is not None:
        return bool(checker(name))
    row = store.db.execute(
        "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", (name,)
    ).fetchone()
    return row is not None


SILENCES_TABLE = "alert_silences"  # from the alert-delivery migration (harness/alert_state.py)


def _active_silences(store: Any, now: datetime) -> list[Any] | None:
    """Silences in force now (alert_state.Silence), or None when this history has no silences."""
    if not _has_table(store, SILENCES_TABLE):
        return None
    from harness.alert_state import AlertStore

    return AlertStore(store).silences(now)


def _thresholds(catalog: Catalog | None, store: Any, selector: str, host_key: str | None) -> Thresholds | None:
    if catalog is None or selector not in catalog.selectors:
        return None
    calibrated = None
    if host_key:
        try:
            calibrated = store.baseline(selector, host_key, "runtime")
        except Exception:  # noqa: BLE001 - an older history without baselines still gets a chart
            calibrated = None
    return resolve_thresholds(catalog.selectors[selector].runtime, calibrated)


def collect(store: Any, reports_dir: Path, catalog: Catalog | None = None, *,
            history_label: str = "history", recent: int = RECENT_RUNS, points: int = TREND_POINTS) -> DashboardData:
    """Everything the page shows, read from ``store`` (a HistoryStore) and ``reports_dir``."""
    reports_dir = Path(reports_dir)
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    data = DashboardData(generated_at=now, history_label=history_label)

    latest = _rows(store, """
        SELECT sr.selector, sr.state, sr.runtime_s, sr.total, sr.passed, sr.failed, sr.error, sr.skipped,
               sr.xfailed, sr.rerun, r.run_key, r.cadence, r.started_at, r.id AS run_id, r.host_key
        FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
        WHERE sr.state <> 'not_run'
        ORDER BY sr.selector, r.started_at DESC, r.id DESC
    """)
    seen: dict[str, dict[str, Any]] = {}
    for row in latest:
        seen.setdefault(row["selector"], row)
    for name, row in sorted(seen.items()):
        triggers = [r["trigger_id"] for r in _rows(store, """
            SELECT DISTINCT trigger_id FROM alerts WHERE run_id = ? AND selector = ? AND status = 'firing'
            ORDER BY trigger_id""", (row["run_id"], name))]
        title = catalog.selectors[name].title if catalog and name in catalog.selectors else name
        data.selectors.append(SelectorTile(
            name=name, title=title, state=row["state"], run_key=row["run_key"], cadence=row["cadence"],
            started_at=row["started_at"], runtime_s=row["runtime_s"],
            counts={k: int(row[k] or 0) for k in ("total", "passed", "failed", "error", "skipped", "xfailed", "rerun")},
            triggers=triggers, summary_href=_summary_href(reports_dir, row["run_key"]),
        ))

    for row in _rows(store, """
        SELECT r.run_key, r.cadence, r.started_at, r.wall_s, r.status, r.gate_passed, r.git_sha, r.host_key,
               (SELECT COUNT(*) FROM alerts AS a WHERE a.run_id = r.id AND a.status = 'firing') AS fired
        FROM runs AS r ORDER BY r.started_at DESC, r.id DESC LIMIT ?""", (recent,)):
        data.runs.append(RunRow(
            run_key=row["run_key"], cadence=row["cadence"], started_at=row["started_at"], wall_s=row["wall_s"],
            status=row["status"], gate_passed=bool(row["gate_passed"]), git_sha=row["git_sha"],
            host_key=row["host_key"], fired=int(row["fired"] or 0),
            summary_href=_summary_href(reports_dir, row["run_key"]),
        ))

    firing = _rows(store, """
        SELECT s.fingerprint, s.trigger_id, s.severity, s.title, s.selector, s.nodeid, s.summary, s.owner, s.sla,
               r.run_key,
               (SELECT MIN(a2.created_at) FROM alerts AS a2 WHERE a2.fingerprint = s.fingerprint) AS since
        FROM alert_state AS s JOIN runs AS r ON r.id = s.run_id
        WHERE s.status = 'firing'
        ORDER BY s.trigger_id, s.selector, s.nodeid""")
    rank = {"critical": 0, "high": 1, "medium": 2, "warning": 3, "info": 4}
    silences = _active_silences(store, datetime.now(UTC))
    data.silences_known = silences is not None
    for row in sorted(firing, key=lambda r: (rank.get(r["severity"], 9), r["trigger_id"])):
        alert = AlertRow(
            trigger=row["trigger_id"], severity=row["severity"], title=row["title"], selector=row["selector"],
            nodeid=row["nodeid"], summary=row["summary"], owner=row["owner"], sla=row["sla"], since=row["since"],
            run_key=row["run_key"], summary_href=_summary_href(reports_dir, row["run_key"]),
        )
        # The same matching as delivery: trigger glob, and the selector when the silence names one.
        match = next((s for s in silences or [] if s.matches(alert.trigger, alert.selector)), None)
        if match is not None:
            alert.silence = {"id": match.id, "reason": match.reason, "created_by": match.created_by,
                             "ends_at": match.ends_at}
            data.silenced_alerts.append(alert)
        else:
            data.open_alerts.append(alert)

    for tile in data.selectors:
        history = _rows(store, """
            SELECT sr.runtime_s, r.started_at, r.run_key, r.host_key, sr.state
            FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
            WHERE sr.selector = ? AND sr.runtime_s IS NOT NULL AND sr.state NOT IN ('not_run', 'interrupted')
            ORDER BY r.started_at DESC, r.id DESC LIMIT ?""", (tile.name, points))
        history.reverse()
        if not history:
            continue
        thresholds = _thresholds(catalog, store, tile.name, history[-1]["host_key"])
        data.charts.append(trend_chart(tile.name, history, thresholds))
    return data


# -- the chart ---------------------------------------------------------------------------------


def _svg_ids(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def trend_chart(selector: str, history: list[dict[str, Any]], thresholds: Thresholds | None) -> TrendChart:
    """A runtime-per-run line with the selector's threshold lines, as inline SVG.

    Text stays text in the SVG (fonttype none) so the page is searchable; element ids name the
    series (``trend-<selector>``) and thresholds (``threshold-<name>-<selector>``).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    values = [float(row["runtime_s"]) for row in history]
    labels = [str(row["started_at"])[5:16].replace("T", " ") for row in history]
    slug = _svg_ids(selector)
    lines: dict[str, float] = {}
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"harness-{slug}", "font.size": 8}):
        figure, axes = plt.subplots(figsize=(6.4, 2.4), dpi=100)
        try:
            xs = list(range(len(values)))
            (series,) = axes.plot(xs, values, marker="o", markersize=3, linewidth=1.4, color="#1565c0",
                                  label="runtime (s)")
            series.set_gid(f"trend-{slug}")
            bad = [i for i, row in enumerate(history) if row.get("state") not in GOOD_STATES]
            if bad:
                axes.scatter([xs[i] for i in bad], [values[i] for i in bad], color="#c62828", zorder=3, s=16,
                             label="not passed").set_gid(f"bad-{slug}")
            if thresholds is not None:
                for name, (colour, label) in THRESHOLD_STYLE.items():
                    value = thresholds.named(name)
                    if value is None:
                        continue
                    lines[name] = float(value)
                    axes.axhline(value, color=colour, linestyle="--", linewidth=1,
                                 label=f"{label} {value:g} s").set_gid(f"threshold-{name}-{slug}")
            top = max(values + list(lines.values()))
            axes.set_ylim(0, top * 1.12 if top > 0 else 1)
            axes.set_ylabel("seconds")
            step = max(1, len(labels) // 6)
            axes.set_xticks(xs[::step], labels[::step])
            axes.set_title(f"{selector}: runtime per run")
            axes.grid(axis="y", alpha=0.3)
            axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), fontsize=7, frameon=False, ncols=3)
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
        finally:
            plt.close(figure)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML declaration and DOCTYPE: it is inlined in HTML
    # matplotlib escapes the text it writes into SVG, so the markup is safe to inline as is.
    return TrendChart(selector=selector, points=len(values), svg=Markup(svg), thresholds=lines)


# -- the page ----------------------------------------------------------------------------------


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES_DIR)),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True, default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["seconds"] = lambda value: "—" if value is None else f"{value:.1f} s"
    env.filters["short_sha"] = lambda value: (value or "")[:10] or "—"
    return env


def render(data: DashboardData) -> str:
    """The page's HTML (autoescaped Jinja)."""
    return _environment().get_template(TEMPLATE_NAME).render(data=data)


def write_dashboard(store: Any, reports_dir: Path, catalog: Catalog | None = None, *,
                    history_label: str = "history") -> Path:
    """Regenerate ``<reports_dir>/index.html`` atomically; returns its path."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    html = render(collect(store, reports_dir, catalog, history_label=history_label))
    target = reports_dir / INDEX_NAME
    fd, temporary = tempfile.mkstemp(prefix=".index.", suffix=".html", dir=reports_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(html)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def refresh_after_run(reports_dir: Path, history: Path | str | None, catalog: Catalog | None) -> str | None:
    """Regenerate index.html after a run; returns a warning instead of raising (the run's verdict
    must not depend on the page). Without history (``--no-history``) there is nothing to show."""
    if history is None:
        return None
    try:
        from harness.history import HistoryStore

        with HistoryStore.open(history, create=False) as store:  # a Path, or a HistoryURL (PostgreSQL)
            write_dashboard(store, reports_dir, catalog, history_label=str(history))
    except Exception as exc:  # noqa: BLE001 - reported as a warning, the report itself is published
        return f"dashboard not regenerated in {reports_dir}: {exc}"
    return None
