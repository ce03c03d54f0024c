"""``reports/index.html``: the page people open when something is red.

Built from the run history (so it shows the same thing whichever runner wrote it, SQLite or
PostgreSQL): the latest state of every selector, the recent runs with links to their
``summary.html``, a runtime trend chart per selector with its threshold lines (matplotlib,
inline SVG) and the open and silenced alerts. Regenerated after every run and by
``harness dashboard``; written atomically (aside, then renamed) so a browser never reads half.

Charts are the expensive part (matplotlib's import alone costs about a second), so each selector's
SVG is kept in ``<reports>/.dashboard-cache/`` under a digest of everything drawn into it (the
runs' keys, times, runtimes and states, the threshold lines, the chart code's version): a chart is
redrawn only when its selector has new data, and matplotlib is imported only when one is.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import io
import json
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
from harness.states import DID_NOT_RUN_STATES, GOOD_STATES as GOOD_SELECTOR_STATES, STATE_LABELS, UNTIMED_STATES
from harness.thresholds import Thresholds, resolve_thresholds

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
TEMPLATE_NAME = "dashboard.html.j2"
INDEX_NAME = "index.html"
CHART_MODULES = ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_svg")  # what drawing imports
CACHE_DIR_NAME = ".dashboard-cache"  # hidden: harness serve never serves it, prune never touches it
CHART_VERSION = 3  # bump when trend_chart draws differently: every cached chart is redrawn once
RECENT_RUNS = 25
TREND_POINTS = 40
CHART_SIZE_IN = (6.4, 2.4)
LEGEND_COLUMNS = 3
GOOD_STATES = {str(state) for state in GOOD_SELECTOR_STATES}  # a chart point in any other state is marked
# A chart plots runs whose runtime measured the code under test, as the runtime rules judge them.
UNTIMED = tuple(sorted(str(state) for state in UNTIMED_STATES))
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
    reason: str | None = None  # why the state is what it is (history's words: "1 skipped — CUDA GPU required")

    @property
    def label(self) -> str:
        """The state as a reader says it ("did not run", "errored in setup")."""
        return STATE_LABELS.get(self.state, self.state)

    @property
    def kind(self) -> str:
        """The tile's colour: only ``passed`` is good; a selector whose tests never executed is
        neither good nor a failure of the code, and says so in its own colour."""
        if self.state in GOOD_STATES:
            return "good"
        if self.state == "flaky":
            return "flaky"
        return "did-not-run" if self.state in DID_NOT_RUN_STATES else "bad"


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
    # Open runtime change points (RT-004) drawn on the chart: run_key, label, before, after.
    changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ImageLink:
    label: str
    href: str  # the full-size image, relative to index.html
    thumbnail: str
    nodeid: str


@dataclass
class ReconstructionPanel:
    """A selector's newest recorded images beside those of the run before (copied into the run directory)."""

    selector: str
    run_key: str
    summary_href: str | None
    current: list[ImageLink]
    previous_run: str | None = None
    previous: list[ImageLink] = field(default_factory=list)


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
    reconstructions: list[ReconstructionPanel] = field(default_factory=list)
    charts_drawn: list[str] = field(default_factory=list)  # selectors whose chart was drawn for this page
    charts_reused: list[str] = field(default_factory=list)  # selectors whose cached chart was still current
    flaky: list[dict[str, Any]] = field(default_factory=list)  # tests flaky across runs (harness/flaky.py)
    quarantined: list[dict[str, Any]] = field(default_factory=list)  # alerts/quarantine.yaml entries


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


SILENCES_TABLE = "alert_silences"  # from the alert-delivery migration (harness/alerts/delivery_state.py)


def _active_silences(store: Any, now: datetime) -> list[Any] | None:
    """Silences in force now (delivery_state.Silence), or None when this history has no silences."""
    if not _has_table(store, SILENCES_TABLE):
        return None
    from harness.alerts.delivery_state import AlertStore

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
            history_label: str = "history", recent: int = RECENT_RUNS, points: int = TREND_POINTS,
            cache: ChartCache | None = None) -> DashboardData:
    """Everything the page shows, read from ``store`` (a HistoryStore) and ``reports_dir``.

    Charts come from ``cache`` when their inputs are unchanged (no cache: every chart is drawn).
    """
    reports_dir = Path(reports_dir)
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    data = DashboardData(generated_at=now, history_label=history_label)

    latest = _rows(store, """
        SELECT sr.selector, sr.state, sr.reason, sr.runtime_s, sr.total, sr.passed, sr.failed, sr.error, sr.skipped,
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
            triggers=triggers, summary_href=_summary_href(reports_dir, row["run_key"]), reason=row["reason"],
        ))

    data.reconstructions = reconstruction_panels(store, reports_dir, [tile.name for tile in data.selectors])

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
        history = _rows(store, f"""
            SELECT sr.runtime_s, r.started_at, r.run_key, r.host_key, sr.state
            FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
            WHERE sr.selector = ? AND sr.runtime_s IS NOT NULL AND sr.state NOT IN ({", ".join("?" * len(UNTIMED))})
            ORDER BY r.started_at DESC, r.id DESC LIMIT ?""", (tile.name, *UNTIMED, points))
        history.reverse()
        if not history:
            continue
        thresholds = _thresholds(catalog, store, tile.name, history[-1]["host_key"])
        changes = change_markers(store, tile.name, history)
        key = chart_key(tile.name, history, thresholds, changes)
        chart = cache.get(tile.name, key) if cache is not None else None
        if chart is None:
            chart = trend_chart(tile.name, history, thresholds, changes)
            data.charts_drawn.append(tile.name)
            if cache is not None:
                cache.put(chart, key)
        else:
            data.charts_reused.append(tile.name)
        chart.changes = changes
        data.charts.append(chart)
    data.flaky, data.quarantined = flaky_and_quarantined(store, catalog, [tile.name for tile in data.selectors])
    return data


def change_markers(store: Any, selector: str, history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The open RT-004 changes whose first run is on the chart (one per change)."""
    on_chart = {str(row.get("run_key")) for row in history}
    markers: dict[str, dict[str, Any]] = {}
    try:
        rows = _rows(store, """
            SELECT s.evidence FROM alert_state AS s
            WHERE s.trigger_id = 'RT-004' AND s.selector = ? AND s.status = 'firing' ORDER BY s.id""", (selector,))
    except Exception:  # noqa: BLE001 - an older history: no markers
        return []
    for row in rows:
        try:
            evidence = json.loads(row["evidence"] or "{}")
            change = evidence["change"]
        except (ValueError, KeyError, TypeError):
            continue
        if change.get("first_run") not in on_chart:
            continue
        unit = "CPU s" if evidence.get("series") == "cpu_s" else "s"
        markers[change["first_run"]] = {
            "run_key": change["first_run"], "series": evidence.get("series"),
            "before": change.get("before"), "after": change.get("after"),
            "label": f"{float(change.get('change_pct', 0)):+.0f} % ({float(change['before']):.3g} → "
                     f"{float(change['after']):.3g} {unit}) since {change.get('first_sha')}",
        }
    return sorted(markers.values(), key=lambda m: m["run_key"])


def flaky_and_quarantined(store: Any, catalog: Catalog | None, selectors: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Tests flaky across their selector's recent runs, and the quarantine file's entries."""
    from harness import flaky, quarantine
    from harness.locations import DEFAULT_RULES

    found = []
    for name in selectors:
        try:
            verdicts = flaky.flaky_tests(store, name)
        except Exception:  # noqa: BLE001 - a history this harness cannot read for it: no list
            verdicts = []
        found.extend({"selector": name, **verdict.as_dict()} for verdict in verdicts)
    rules_path = (catalog.rules if catalog is not None and catalog.rules else None) or DEFAULT_RULES
    try:
        entries = quarantine.load(quarantine.default_path(rules_path)).quarantine
    except Exception:  # noqa: BLE001 - a broken file is reported by the run, not by the page
        entries = []
    today = quarantine.today()
    listed = [{**entry.model_dump(mode="json"), "expired": entry.expired(today)} for entry in entries]
    return found, listed


RECONSTRUCTION_LOOKBACK = 10  # newest runs of a selector searched for recorded images


def reconstruction_panels(store: Any, reports_dir: Path, selectors: list[str]) -> list[ReconstructionPanel]:
    """Per selector, the newest run directory holding its images (``images/index.json``, written with
    the run's summary), with the previous run's images that run copied beside them."""
    from harness.report_images import read_index

    panels = []
    for name in selectors:
        for row in _rows(store, """
                SELECT r.run_key FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
                WHERE sr.selector = ? AND sr.state <> 'not_run'
                ORDER BY r.started_at DESC, r.id DESC LIMIT ?""", (name, RECONSTRUCTION_LOOKBACK)):
            key = row["run_key"]
            if not key or "/" in key or key.startswith("."):
                continue
            found = read_index(reports_dir / key).get(name)
            if found is None or not found.current:
                continue

            def links(images: list, key: str = key) -> list[ImageLink]:
                return [ImageLink(label=i.label, href=f"{key}/{i.file}", thumbnail=f"{key}/{i.thumbnail}", nodeid=i.nodeid)
                        for i in images]

            panels.append(ReconstructionPanel(selector=name, run_key=key, summary_href=_summary_href(reports_dir, key),
                                              current=links(found.current), previous_run=found.previous_run,
                                              previous=links(found.previous)))
            break
    return panels


# -- the chart ---------------------------------------------------------------------------------


def _svg_ids(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", name)


def _threshold_lines(thresholds: Thresholds | None) -> dict[str, float]:
    """The threshold lines a chart draws, by name (critical, warning, suspicious)."""
    if thresholds is None:
        return {}
    lines = {}
    for name in THRESHOLD_STYLE:
        value = thresholds.named(name)
        if value is not None:
            lines[name] = float(value)
    return lines


def _chart_points(history: list[dict[str, Any]]) -> list[tuple[str, str, float, str | None]]:
    """(run key, x label, runtime, state) per run: everything of the history a chart shows."""
    return [(str(row.get("run_key")), str(row["started_at"])[5:16].replace("T", " "), float(row["runtime_s"]),
             row.get("state")) for row in history]


@functools.cache
def _matplotlib_version() -> str:
    """From the package metadata: importing matplotlib to ask would cost what the cache saves."""
    from importlib import metadata

    try:
        return metadata.version("matplotlib")
    except metadata.PackageNotFoundError:
        return "absent"


def chart_key(selector: str, history: list[dict[str, Any]], thresholds: Thresholds | None,
              changes: Sequence[dict[str, Any]] = ()) -> str:
    """Digest of everything drawn into a selector's chart and of the code drawing it: equal keys,
    equal SVG. A new run, a pruned one, another threshold or baseline, another matplotlib: new key."""
    material = {
        "chart_version": CHART_VERSION,
        "matplotlib": _matplotlib_version(),
        "style": [CHART_SIZE_IN, LEGEND_COLUMNS, THRESHOLD_STYLE, sorted(GOOD_STATES)],
        "selector": selector,
        "points": _chart_points(history),
        "thresholds": _threshold_lines(thresholds),
        "changes": list(changes),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode("utf-8")).hexdigest()


def _fit_margins(figure: Any, axes: Any, legend_entries: int) -> None:
    """Room for the title, the y tick labels and label, the x tick labels and the legend rows below.

    Computed from what the chart holds instead of a layout engine (constrained layout or
    ``bbox_inches="tight"`` draw the figure twice, doubling the cost of a chart). The widest y
    tick label is estimated from its characters at 8 pt (DejaVu Sans digits are 0.64 em wide).
    """
    width_pt, height_pt = CHART_SIZE_IN[0] * 72, CHART_SIZE_IN[1] * 72
    low, high = axes.get_ylim()
    ticks = [tick for tick in axes.yaxis.get_major_locator().tick_values(low, high) if low <= tick <= high]
    widest = max((len(text) for text in axes.yaxis.get_major_formatter().format_ticks(ticks)), default=1)
    left_pt = 7 + 5.2 * widest + 4 + 10 + 4  # tick and pad, labels, label pad, "seconds", margin
    rows = -(-legend_entries // LEGEND_COLUMNS)
    figure.subplots_adjust(left=left_pt / width_pt, right=1 - 12 / width_pt, top=1 - 17 / height_pt,
                           bottom=(24 + 10 * rows) / height_pt)


def trend_chart(selector: str, history: list[dict[str, Any]], thresholds: Thresholds | None,
                changes: Sequence[dict[str, Any]] = ()) -> TrendChart:
    """A runtime-per-run line with the selector's threshold lines, as inline SVG.

    Text stays text in the SVG (fonttype none) so the page is searchable; element ids name the
    series (``trend-<selector>``) and thresholds (``threshold-<name>-<selector>``). Drawn on a
    bare Figure with the SVG canvas: no pyplot, no GUI backend, no global figure registry.
    """
    import matplotlib
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure

    points = _chart_points(history)
    values = [value for _, _, value, _ in points]
    labels = [label for _, label, _, _ in points]
    slug = _svg_ids(selector)
    lines = _threshold_lines(thresholds)
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"harness-{slug}", "font.size": 8}):
        figure = Figure(figsize=CHART_SIZE_IN, dpi=100)
        FigureCanvasSVG(figure)
        axes = figure.add_subplot()
        xs = list(range(len(values)))
        (series,) = axes.plot(xs, values, marker="o", markersize=3, linewidth=1.4, color="#1565c0",
                              label="runtime (s)")
        series.set_gid(f"trend-{slug}")
        bad = [i for i, (_, _, _, state) in enumerate(points) if state not in GOOD_STATES]
        if bad:
            axes.scatter([xs[i] for i in bad], [values[i] for i in bad], color="#c62828", zorder=3, s=16,
                         label="not passed").set_gid(f"bad-{slug}")
        for name, value in lines.items():
            colour, label = THRESHOLD_STYLE[name]
            axes.axhline(value, color=colour, linestyle="--", linewidth=1,
                         label=f"{label} {value:g} s").set_gid(f"threshold-{name}-{slug}")
        keys = [key for key, _, _, _ in points]
        for index, change in enumerate(changes):
            # A change point (RT-004): a marker at its first run, and its before/after medians
            # where the change was found on this chart's measure (wall runtime).
            if change["run_key"] not in keys:
                continue
            x = keys.index(change["run_key"])
            axes.axvline(x - 0.5, color="#2e7d32", linestyle=":", linewidth=1.2,
                         label=f"change {change['label']}").set_gid(f"change-{slug}-{index}")
            if change.get("series") == "runtime" and change.get("before") and change.get("after"):
                axes.hlines([change["before"]], max(0, x - 10), x - 0.5, color="#2e7d32", linewidth=1)
                axes.hlines([change["after"]], x - 0.5, len(values) - 1, color="#2e7d32", linewidth=1)
        top = max(values + list(lines.values()))
        axes.set_ylim(0, top * 1.12 if top > 0 else 1)
        axes.set_ylabel("seconds")
        step = max(1, len(labels) // 6)
        axes.set_xticks(xs[::step], labels[::step])
        axes.set_title(f"{selector}: runtime per run")
        axes.grid(axis="y", alpha=0.3)
        _fit_margins(figure, axes, legend_entries=1 + bool(bad) + len(lines) + len(changes))
        axes.legend(loc="lower center", bbox_to_anchor=(0.5, 0.0), bbox_transform=figure.transFigure,
                    fontsize=7, frameon=False, ncols=LEGEND_COLUMNS, borderaxespad=0.3)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML declaration and DOCTYPE: it is inlined in HTML
    # matplotlib escapes the text it writes into SVG, so the markup is safe to inline as is.
    return TrendChart(selector=selector, points=len(values), svg=Markup(svg), thresholds=lines)


class ChartCache:
    """Each selector's last drawn chart, on disk beside the page, under the key it was drawn for.

    One file per selector: a first line ``<!-- harness-chart <key> {"selector", "points",
    "thresholds"} -->``, then the SVG. Files are written aside (hidden names) and renamed, so
    concurrent runs never read half a chart; two runs drawing the same key write the same bytes.
    A file that cannot be read is a miss.
    """

    STALE_TEMPORARY_S = 600  # a hidden file this old was left by a process that died mid-write

    HEADER = "<!-- harness-chart "

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.used: set[Path] = set()

    def path(self, selector: str) -> Path:
        digest = hashlib.sha256(selector.encode("utf-8")).hexdigest()[:12]  # distinct names, distinct files
        return self.directory / f"{_svg_ids(selector)[:60]}-{digest}.svg"

    def get(self, selector: str, key: str) -> TrendChart | None:
        path = self.path(selector)
        self.used.add(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        first, _, svg = text.partition("\n")
        if not first.startswith(self.HEADER) or not first.endswith(" -->") or not svg.startswith("<svg"):
            return None
        try:
            stored_key, meta = first[len(self.HEADER):-4].split(" ", 1)
            fields = json.loads(meta)
            if stored_key != key or fields.get("selector") != selector:
                return None
            return TrendChart(selector=selector, points=int(fields["points"]), svg=Markup(svg),
                              thresholds={str(k): float(v) for k, v in fields["thresholds"].items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def put(self, chart: TrendChart, key: str) -> None:
        """Store a chart; a cache that cannot be written only costs the next page a redraw."""
        path = self.path(chart.selector)
        self.used.add(path)
        meta = json.dumps({"selector": chart.selector, "points": chart.points, "thresholds": chart.thresholds},
                          separators=(",", ":")).replace("--", "-\\u002d")  # never end the comment early
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_atomically(path, f"{self.HEADER}{key} {meta} -->\n{chart.svg}")
        except OSError:
            return

    def discard_unused(self) -> None:
        """Remove charts of selectors this page did not show (renamed, or pruned from history)."""
        try:
            entries = list(self.directory.glob("*.svg"))
        except OSError:
            return
        now = datetime.now(UTC).timestamp()
        for entry in entries:
            if entry in self.used:
                continue
            try:
                if entry.name.startswith(".") and now - entry.stat().st_mtime < self.STALE_TEMPORARY_S:
                    continue  # another process is writing it right now
                entry.unlink(missing_ok=True)
            except OSError:  # left for the next page to try again
                continue


# -- the page ----------------------------------------------------------------------------------


@functools.cache  # one per process: the template is compiled once (by the warm-up, during a run)
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


def _write_atomically(target: Path, text: str) -> None:
    """Write aside in the same folder, then rename: a reader sees the old file or the new one."""
    prefix = f".{target.stem[:40]}."
    fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=target.suffix, dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_dashboard(store: Any, reports_dir: Path, catalog: Catalog | None = None, *,
                    history_label: str = "history") -> Path:
    """Regenerate ``<reports_dir>/index.html`` atomically; returns its path.

    Charts whose data did not change since the last page are taken from the chart cache.
    """
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    cache = ChartCache(reports_dir / CACHE_DIR_NAME)
    html = render(collect(store, reports_dir, catalog, history_label=history_label, cache=cache))
    target = reports_dir / INDEX_NAME
    _write_atomically(target, html)
    cache.discard_unused()
    return target


def warm_up() -> None:
    """Import what drawing a chart needs (numpy, matplotlib's Figure and SVG canvas: about a
    second of CPU) and compile the page's template, ahead of time.

    ``harness run`` calls this in a background thread while its tests run (the harness only waits
    on its pytest processes then), so that work overlaps the tests instead of following them
    while the user waits for the page. It is work the page needs anyway: a run adds a point to
    the chart of every selector it ran. Drawing later imports the same modules; Python's
    per-module import locks make it wait for an import in progress, never do it twice. A failure
    is ignored here and raised again, as the dashboard's warning, when a chart is drawn.
    """
    try:
        for name in CHART_MODULES:
            importlib.import_module(name)
        _environment().get_template(TEMPLATE_NAME)
    except Exception:  # noqa: BLE001 - drawing and rendering do it again and report it
        return


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
