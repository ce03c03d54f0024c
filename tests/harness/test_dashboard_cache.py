"""The dashboard's chart cache: a selector's trend chart is redrawn when its inputs changed (a new
run, other thresholds) and taken from ``reports/.dashboard-cache/`` otherwise; matplotlib is not
even imported when every chart is current. The page is the same either way.

Redraws are observed through behaviour, never timing: ``collect`` says which charts it drew, a
redrawn cache file is a new file (written aside and renamed: a new inode), and a fresh interpreter
shows whether matplotlib was imported.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from sample_projects import REPO, make_project

from harness import dashboard
from harness.catalog import load_catalog
from harness.history import HistoryStore
from harness.report_model import Counts, Gate, GitInfo, HostInfo, RunInfo, RunReport, SelectorResult

SELECTORS = ("integration", "backend_selection")


def _result(name: str, runtime: float | None, state: str = "passed") -> SelectorResult:
    if runtime is None:  # not run this time: no point on its chart
        return SelectorResult(name=name, title=name, owner="TEST-PYTORCH-001", argv=[], env={}, state="not_run",
                              reason="not required by the changed files")
    return SelectorResult(name=name, title=name, owner="TEST-PYTORCH-001", argv=[], env={}, state=state,
                          runtime_s=runtime, counts=Counts(total=1, collected=1, passed=int(state == "passed"),
                                                           failed=int(state == "failed")))


def record_run(store: HistoryStore, day: int, runtimes: dict[str, float | None], *,
               states: dict[str, str] | None = None) -> str:
    """One recorded run; ``runtimes[name] = None`` leaves that selector out (not_run)."""
    key = f"202502{day:02d}T030000Z-nightly"
    run = RunInfo(id=key, cadence="nightly", started_at=f"2025-02-{day:02d}T03:00:00.000Z",
                  finished_at=f"2025-02-{day:02d}T03:01:00.000Z", wall_s=60.0, status="passed",
                  catalog="catalog.toml", rules="rules.yaml", root=".", jobs=2, harness_version="0.1.0",
                  git=GitInfo(sha="c0ffee" * 6), host=HostInfo(hostname="ci", host_key="ci-host", platform="linux"),
                  versions={})
    selectors = [_result(name, runtimes.get(name), (states or {}).get(name, "passed")) for name in SELECTORS]
    report = RunReport(run=run, gate=Gate(passed=True, fail_on="high", exit_code=0), selectors=selectors,
                       alerts=[])
    with store.recording(report):
        pass
    return key


@pytest.fixture
def setup(tmp_path: Path):
    """A reports dir with a history of three runs of both selectors, and the tiny project's catalog."""
    reports = tmp_path / "reports"
    reports.mkdir()
    catalog = load_catalog(make_project(tmp_path / "project"))
    store = HistoryStore.open(reports / "history.sqlite")
    for day, runtime in enumerate((30.0, 33.5, 31.0), start=1):
        record_run(store, day, {"integration": runtime, "backend_selection": 1.0 + day / 10})
    yield reports, catalog, store
    store.close()


def _collect(store, reports: Path, catalog) -> dashboard.DashboardData:
    return dashboard.collect(store, reports, catalog, cache=dashboard.ChartCache(reports / dashboard.CACHE_DIR_NAME))


def _cache_file(reports: Path, selector: str) -> Path:
    return dashboard.ChartCache(reports / dashboard.CACHE_DIR_NAME).path(selector)


def _identity(path: Path) -> tuple[int, int, bytes]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns, path.read_bytes()


def _figures(html: str) -> dict[str, str]:
    """Each chart's <figure> as it appears in the page, by selector."""
    return dict(re.findall(r'<figure class="chart" data-selector="([^"]+)">(.*?)</figure>', html, re.S))


def test_unchanged_charts_are_reused_and_identical_to_a_fresh_drawing(setup) -> None:
    reports, catalog, store = setup
    first = _collect(store, reports, catalog)
    assert sorted(first.charts_drawn) == sorted(SELECTORS) and first.charts_reused == []
    files = {name: _identity(_cache_file(reports, name)) for name in SELECTORS}

    second = _collect(store, reports, catalog)
    assert second.charts_drawn == [] and sorted(second.charts_reused) == sorted(SELECTORS)
    assert {name: _identity(_cache_file(reports, name)) for name in SELECTORS} == files  # not rewritten

    # What the cache hands back is exactly what drawing it now gives (SVG, points, threshold lines).
    without_cache = dashboard.collect(store, reports, catalog)
    assert sorted(without_cache.charts_drawn) == sorted(SELECTORS)
    for cached, fresh in zip(second.charts, without_cache.charts, strict=True):
        assert (cached.selector, cached.points, cached.thresholds) == (fresh.selector, fresh.points, fresh.thresholds)
        assert str(cached.svg) == str(fresh.svg)
    lines = {chart.selector: chart.thresholds for chart in second.charts}
    assert lines == {"integration": {"critical": 90.0, "warning": 60.0}, "backend_selection": {"warning": 5.0}}


def test_only_the_selector_with_a_new_run_is_redrawn(setup) -> None:
    reports, catalog, store = setup
    dashboard.write_dashboard(store, reports, catalog)
    before = {name: _identity(_cache_file(reports, name)) for name in SELECTORS}

    record_run(store, 4, {"integration": 95.5, "backend_selection": None}, states={"integration": "failed"})
    data = _collect(store, reports, catalog)
    assert data.charts_drawn == ["integration"] and data.charts_reused == ["backend_selection"]
    assert _identity(_cache_file(reports, "backend_selection")) == before["backend_selection"]
    redrawn = _identity(_cache_file(reports, "integration"))
    assert redrawn[0] != before["integration"][0] and redrawn[2] != before["integration"][2]

    # The page written from it shows the new point: four runs, the failed one marked.
    index = dashboard.write_dashboard(store, reports, catalog)
    figures = _figures(index.read_text(encoding="utf-8"))
    assert "integration: last 4 runs" in figures["integration"]
    assert 'id="bad-integration"' in figures["integration"]
    assert "backend_selection: last 3 runs" in figures["backend_selection"]
    assert 'id="bad-backend_selection"' not in figures["backend_selection"]


def test_other_thresholds_redraw_the_chart(setup, tmp_path: Path) -> None:
    reports, catalog, store = setup
    dashboard.write_dashboard(store, reports, catalog)
    path = Path(catalog.path)
    path.write_text(path.read_text(encoding="utf-8").replace("critical_s = 90", "critical_s = 75"), encoding="utf-8")
    changed = load_catalog(path)
    data = _collect(store, reports, changed)
    assert data.charts_drawn == ["integration"] and data.charts_reused == ["backend_selection"]
    chart = next(chart for chart in data.charts if chart.selector == "integration")
    assert chart.thresholds["critical"] == 75.0 and "critical (RT-001) 75 s" in str(chart.svg)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other key", "empty"])
def test_a_damaged_cache_file_is_redrawn_not_trusted(setup, damage: str) -> None:
    reports, catalog, store = setup
    dashboard.write_dashboard(store, reports, catalog)
    path = _cache_file(reports, "integration")
    good = path.read_text(encoding="utf-8")
    header, _, svg = good.partition("\n")
    path.write_text({
        "garbage": "<svg>not a chart</svg>",
        "truncated": header + "\n",
        "other key": header.replace(header.split()[2], "0" * 64) + "\n" + svg.replace("runtime per run", "STALE"),
        "empty": "",
    }[damage], encoding="utf-8")
    data = _collect(store, reports, catalog)
    assert data.charts_drawn == ["integration"]
    assert path.read_text(encoding="utf-8") == good  # repaired with the same bytes a fresh drawing gives
    html = dashboard.write_dashboard(store, reports, catalog).read_text(encoding="utf-8")
    assert "STALE" not in html and "integration: runtime per run" in html


def test_charts_of_selectors_no_longer_shown_leave_the_cache(setup) -> None:
    reports, catalog, store = setup
    stray = reports / dashboard.CACHE_DIR_NAME / "renamed_selector-000000000000.svg"
    dashboard.write_dashboard(store, reports, catalog)
    stray.write_text("<!-- harness-chart x {} -->\n<svg></svg>", encoding="utf-8")
    writing = stray.parent / ".integration-0123.abcd.svg"  # another process's chart, being written now
    writing.write_text("<!-- harness-chart", encoding="utf-8")
    abandoned = stray.parent / ".integration-0123.dead.svg"  # left by a process that died mid-write
    abandoned.write_text("<!-- harness-chart", encoding="utf-8")
    os.utime(abandoned, (time.time() - 3600, time.time() - 3600))
    dashboard.write_dashboard(store, reports, catalog)
    assert not stray.exists() and not abandoned.exists() and writing.exists()
    writing.unlink()
    assert sorted(p.name for p in stray.parent.iterdir()) == sorted(_cache_file(reports, n).name for n in SELECTORS)


def test_an_unusable_cache_costs_redraws_never_the_page(setup) -> None:
    reports, catalog, store = setup
    (reports / dashboard.CACHE_DIR_NAME).write_text("a file where the cache folder goes", encoding="utf-8")
    for _ in range(2):
        data = _collect(store, reports, catalog)
        assert sorted(data.charts_drawn) == sorted(SELECTORS)  # nothing could be kept, nothing is reused
        html = dashboard.write_dashboard(store, reports, catalog).read_text(encoding="utf-8")
        assert sorted(_figures(html)) == sorted(SELECTORS)


def test_selector_names_that_slug_alike_get_their_own_files(tmp_path: Path) -> None:
    cache = dashboard.ChartCache(tmp_path)
    assert cache.path("a.b") != cache.path("a-b")
    chart = dashboard.TrendChart(selector="a.b", points=1, svg=dashboard.Markup("<svg>a.b--></svg>"),
                                 thresholds={"warning": 5.0})
    cache.put(chart, "k1")
    assert cache.get("a-b", "k1") is None  # another selector's file is never read as its own
    back = cache.get("a.b", "k1")
    assert back is not None and (back.points, back.thresholds, str(back.svg)) == (1, {"warning": 5.0}, str(chart.svg))
    assert cache.get("a.b", "k2") is None


def test_matplotlib_is_not_imported_when_every_chart_is_current(setup) -> None:
    reports, catalog, store = setup
    dashboard.write_dashboard(store, reports, catalog)  # fills the cache

    script = textwrap.dedent("""
        import json, sys
        from harness import dashboard
        from harness.catalog import load_catalog
        from harness.history import HistoryStore
        reports, catalog = sys.argv[1], load_catalog(sys.argv[2])
        with HistoryStore.open(reports + "/history.sqlite", create=False) as store:
            index = dashboard.write_dashboard(store, reports, catalog)
        print(json.dumps({"matplotlib": "matplotlib" in sys.modules,
                          "charts": index.read_text(encoding="utf-8").count('<figure class="chart"')}))
    """)

    def fresh_interpreter() -> dict:
        done = subprocess.run([sys.executable, "-c", script, str(reports), str(catalog.path)], cwd=REPO,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout)

    assert fresh_interpreter() == {"matplotlib": False, "charts": 2}
    record_run(store, 4, {"integration": 32.0, "backend_selection": None})
    assert fresh_interpreter() == {"matplotlib": True, "charts": 2}  # one chart had to be drawn


def _in_fresh_interpreter(script: str, *args: str) -> dict:
    from sample_projects import harness_env

    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False, env=harness_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_warm_up_imports_the_chart_modules_and_compiles_the_page_template() -> None:
    state = _in_fresh_interpreter("""
        import json, sys
        from harness import dashboard
        before = any(name in sys.modules for name in dashboard.CHART_MODULES)
        dashboard.warm_up()
        print(json.dumps({"before": before, "imported": [name in sys.modules for name in dashboard.CHART_MODULES],
                          "templates": len(dashboard._environment().cache)}))
    """)
    assert state == {"before": False, "imported": [True, True, True], "templates": 1}


@pytest.mark.parametrize("history", [True, False])
def test_a_run_warms_the_dashboard_up_only_when_it_will_regenerate_it(tmp_path: Path, history: bool) -> None:
    catalog = make_project(tmp_path / "project")
    reports = tmp_path / "reports"
    argv = ["run", "--cadence", "pr", "--catalog", str(catalog), "--reports-dir", str(reports), "--progress", "none",
            *([] if history else ["--no-history"])]
    state = _in_fresh_interpreter("""
        import json, sys
        from harness import cli
        code = cli.main(sys.argv[1:])
        print(json.dumps({"code": code, "matplotlib": "matplotlib.figure" in sys.modules}))
    """, *argv)
    assert state == {"code": 0, "matplotlib": history}
    index = reports / "index.html"
    assert index.is_file() is history
    if history:
        figures = _figures(index.read_text(encoding="utf-8"))
        assert sorted(figures) == sorted(SELECTORS)
        assert all(re.search(r"last 1 run(?!s)", figure) for figure in figures.values())  # this run's point
