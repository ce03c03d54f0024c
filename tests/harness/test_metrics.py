"""``harness metrics`` and ``harness serve``'s ``/metrics``: OpenMetrics text that the Prometheus
client library's own OpenMetrics parser accepts, with the values history holds."""

from __future__ import annotations

import io
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from sample_projects import harness_main, make_project

from harness.catalog import load_catalog
from harness.history import HistoryStore
from harness.report_model import (
    Alert,
    Counts,
    FigureValue,
    Gate,
    GitInfo,
    HostInfo,
    RunInfo,
    RunReport,
    SelectorResult,
    TestRecord,
)
from harness.serve import Server


def _report(run_id: str, started: str, state: str, runtime: float, *, alerts: list[Alert], quality: float) -> RunReport:
    failing = state == "failed"
    selectors = [
        SelectorResult(name="integration", title="Integration", owner="o", argv=[], env={}, state=state,
                       runtime_s=runtime, counts=Counts(total=3, passed=2 if failing else 3, failed=1 if failing else 0),
                       tests=[TestRecord(nodeid="tests/t.py::a", outcome="failed" if failing else "passed")],
                       figures=[FigureValue(name="amplitude_ssim", nodeid="tests/t.py::a", value=quality)]),
        SelectorResult(name='odd "name"\\x', title="t", owner="o", argv=[], env={}, state="passed", runtime_s=1.5,
                       counts=Counts(total=1, passed=1)),
    ]
    run = RunInfo(id=run_id, cadence="nightly", started_at=started, finished_at=started, wall_s=runtime,
                  status="failed" if failing else "passed", catalog="c", rules="r", root=".", jobs=1,
                  harness_version="0", git=GitInfo(), host=HostInfo(hostname="h", host_key="k", platform="linux"),
                  versions={})
    return RunReport(run=run, gate=Gate(passed=not failing, fail_on="high", exit_code=int(failing)),
                     selectors=selectors, alerts=alerts)


def _alert(trigger: str, severity: str, fingerprint: str) -> Alert:
    return Alert(trigger=trigger, title=trigger, severity=severity, owner="o", sla="1d", fingerprint=fingerprint,
                 selector="integration", nodeid="tests/t.py::a", summary="s")


@pytest.fixture
def history(tmp_path: Path) -> Path:
    path = tmp_path / "history.sqlite"
    with HistoryStore.open(path) as store:
        for report in (
            _report("r1", "2026-12-05T03:17:00Z", "failed", 30.0, alerts=[_alert("FAIL-001", "high", "f1")], quality=0.8),
            _report("r2", "2026-12-06T03:17:00Z", "failed", 42.5,
                    alerts=[_alert("FAIL-001", "high", "f1"), _alert("RT-001", "critical", "rt")], quality=0.7),
        ):
            with store.recording(report):
                pass
    return path


def _parse(text: str) -> dict[str, list]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _value(samples: list, name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, samples)
    return found[0]


def _check(text: str) -> None:
    assert text.endswith("# EOF\n")
    families = _parse(text)  # raises on anything the OpenMetrics grammar refuses
    state = families["harness_selector_state"]
    assert _value(state, "harness_selector_state", selector="integration", harness_selector_state="failed") == 1
    assert _value(state, "harness_selector_state", selector="integration", harness_selector_state="passed") == 0
    assert _value(state, "harness_selector_state", selector='odd "name"\\x', harness_selector_state="passed") == 1
    runtime = families["harness_selector_runtime_seconds"]
    assert _value(runtime, "harness_selector_runtime_seconds", selector="integration") == 42.5  # the newest run
    tests = families["harness_selector_tests"]
    assert _value(tests, "harness_selector_tests", selector="integration", outcome="failed") == 1
    assert _value(tests, "harness_selector_tests", selector="integration", outcome="passed") == 2
    assert _value(families["harness_selector_figure"], "harness_selector_figure", selector="integration",
                  figure="amplitude_ssim") == 0.7
    assert _value(families["harness_selector_firing_alerts"], "harness_selector_firing_alerts", selector="integration") == 2
    assert _value(families["harness_selector_last_run_timestamp_seconds"], "harness_selector_last_run_timestamp_seconds",
                  selector="integration") == 1796527020.0  # 2026-12-06T03:17:00Z
    firing = families["harness_trigger_firing_alerts"]
    assert _value(firing, "harness_trigger_firing_alerts", trigger="RT-001", severity="critical") == 1
    fired = families["harness_trigger_fired"]  # a counter: its sample carries _total
    assert _value(fired, "harness_trigger_fired_total", trigger="FAIL-001") == 2
    assert _value(fired, "harness_trigger_fired_total", trigger="RT-001") == 1
    assert _value(families["harness_runs"], "harness_runs_total", cadence="nightly", status="failed") == 2
    assert "# UNIT harness_selector_runtime_seconds seconds" in text


def test_harness_metrics_prints_openmetrics_the_prometheus_parser_accepts(history: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    assert harness_main("metrics", "--history", str(history)) == 0
    _check(capsys.readouterr().out)


def test_metrics_without_history_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert harness_main("metrics", "--history", str(tmp_path / "none.sqlite")) == 2
    assert "no history database" in capsys.readouterr().err
    assert not (tmp_path / "none.sqlite").exists()  # never created by reading it


def test_serve_exposes_metrics(history: Path, tmp_path: Path) -> None:
    catalog = load_catalog(make_project(tmp_path / "project"))
    server = Server(catalog, {"nightly": "17 3 * * *"}, [], tmp_path / "reports", port=0, log=io.StringIO(),
                    history=history)
    httpd = server.start_http()
    try:
        with urllib.request.urlopen(server.state.url + "metrics", timeout=10) as response:
            assert response.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
            _check(response.read().decode("utf-8"))
        bare = Server(catalog, {"nightly": "17 3 * * *"}, [], tmp_path / "reports2", port=0, log=io.StringIO())
        other = bare.start_http()
        try:
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(bare.state.url + "metrics", timeout=10)
            assert refused.value.code == 404
        finally:
            other.shutdown()
            other.server_close()
    finally:
        httpd.shutdown()
        httpd.server_close()
