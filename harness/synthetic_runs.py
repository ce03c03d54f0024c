"""Record a made-up run through the real rule engine and history store.

benchmarks/detection.py and the detection tests drive histories of hundreds of runs (a
runtime, test durations and outcomes, quality figures per run) without starting pytest: each
run is a ``RunReport`` whose selector ``verdict.judge_selector`` judges against the history so far
and ``HistoryStore.recording`` records, the same steps ``harness run`` takes after its tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from harness.catalog import Selector
from harness.history import HistoryStore
from harness.report_model import (
    Counts,
    Gate,
    GitInfo,
    HostInfo,
    RunInfo,
    RunReport,
    SelectorResult,
    SelectorState,
    StageTimes,
    TestRecord,
)
from harness.rule_schema import RuleSet
from harness.verdict import judge_selector

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class SyntheticRun:
    """What one run measured. ``tests``: nodeid -> (outcome, call seconds, message)."""

    runtime_s: float
    cpu_s: float | None = None
    sha: str = "0" * 40
    tests: dict[str, tuple[str, float | None, str | None]] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    host_key: str = "bench-host"


def selector(name: str = "integration", figures: tuple[dict, ...] = (), runtime: dict | None = None) -> Selector:
    return Selector.model_validate({"name": name, "title": name, "args": ["tests"], "owner": "TEST-PYTORCH-001",
                                    "figures": list(figures), "runtime": runtime or {}})


def result_for(sel: Selector, run: SyntheticRun) -> SelectorResult:
    # The selector's own workflow test always runs (a run that executed nothing resolves nothing).
    measured = {f"tests/{sel.name}.py::test_workflow": ("passed", run.runtime_s, None), **run.tests}
    tests = [TestRecord(nodeid=nodeid, outcome=outcome, durations=StageTimes(setup=0.0, call=call, teardown=0.0),
                        message=message, user_properties={})
             for nodeid, (outcome, call, message) in measured.items()]
    figure_node = f"tests/{sel.name}.py::test_quality"
    if run.figures:  # recorded with record_property, as the quality selector does
        tests.append(TestRecord(nodeid=figure_node, outcome="passed", durations=StageTimes(setup=0.0, call=0.0, teardown=0.0),
                                user_properties=dict(run.figures)))
    failed = sum(t.outcome in ("failed", "error") for t in tests)
    result = SelectorResult(
        name=sel.name, title=sel.title, owner=sel.owner, argv=[], env={},
        state=SelectorState.FAILED if failed else SelectorState.PASSED, wall_s=run.runtime_s,
        runtime_s=run.runtime_s, runtime_measure="wall", tests=tests,
        counts=Counts(total=len(tests), passed=len(tests) - failed, failed=failed),
    )
    if run.cpu_s is not None and "cpu_s" in SelectorResult.model_fields:  # where the runner measures it
        result.cpu_s = run.cpu_s  # type: ignore[attr-defined]
    return result


def record(store: HistoryStore, rules: RuleSet, sel: Selector, run: SyntheticRun, index: int,
           thresholds_mode: str | None = None) -> RunReport:
    """Judge ``run`` against the history so far, record it, and return its report (alerts, resolved)."""
    result = result_for(sel, run)
    git = GitInfo(sha=run.sha, branch="main", dirty=False)
    judgement = judge_selector(result, sel, rules=rules, history=store, host_key=run.host_key, cwd=Path("."),
                               thresholds_mode=thresholds_mode, git=git)
    started = (EPOCH + timedelta(hours=index)).isoformat().replace("+00:00", "Z")
    report = RunReport(
        run=RunInfo(id=f"run-{index:05d}", cadence="nightly", started_at=started, finished_at=started, wall_s=run.runtime_s,
                    status="passed", catalog="synthetic", rules=str(rules.path), root=".", jobs=1,
                    harness_version="synthetic", git=git,
                    host=HostInfo(hostname=run.host_key, host_key=run.host_key, platform="synthetic"), versions={}),
        gate=Gate(passed=True, fail_on="high", exit_code=0),
        selectors=[result], alerts=judgement.alerts, notes=list(dict.fromkeys(judgement.notes)),
    )
    with store.recording(report) as resolved:
        report.resolved = resolved
    return report
