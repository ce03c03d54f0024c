"""Apply the trigger rules to selector results: which triggers fire, with what evidence.

Inputs are the parsed selector results, their catalog entries, the rules and a read-only view
of history (for RT-002's consecutive runs and calibrated baselines). Output is a list of
alerts, each carrying the evidence a responder needs (selector, test, runtime against the
threshold, the matched message line, artifact path and size, owner and SLA).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import TypeAdapter

from harness import artifacts
from harness.catalog import Selector
from harness.pytest_report import bulk_allocation, skip_groups
from harness.report_model import (
    SEVERITY_RANK,
    Alert,
    ArtifactCheck,
    FigureValue,
    DID_NOT_RUN_STATES,
    GitInfo,
    SelectorResult,
    SelectorState,
    TestRecord,
)
from harness.rule_schema import RuleSet, Trigger
from harness.thresholds import Thresholds, resolve_thresholds


class HistoryView(Protocol):
    """What the rules may read from history (never write)."""

    def recent_runtimes(self, selector: str, host_key: str, limit: int) -> list[float]: ...

    def baseline(self, selector: str, host_key: str, metric: str) -> float | None: ...


class NoHistory:
    """For evaluating a report without a history database."""

    def recent_runtimes(self, selector: str, host_key: str, limit: int) -> list[float]:
        return []

    def baseline(self, selector: str, host_key: str, metric: str) -> float | None:
        return None


@dataclass
class EvaluationContext:
    rules: RuleSet
    history: HistoryView
    host_key: str
    thresholds_mode: str | None = None
    display_path: Callable[[Path], str] = str
    notes: list[str] = field(default_factory=list)
    cadence: str | None = None  # where the run happened: a catalog's allow_skip may name cadences
    # The commit this run tested, so FLAKY-002 sees a fail and a pass on one commit in the run
    # that completes the pair, not one run later; None where the run's commit is not known.
    git: GitInfo | None = None


def fingerprint(trigger: str, selector: str | None, nodeid: str | None, subject: str | None = None) -> str:
    """Stable identity of an alert across runs (deduplication, resolution)."""
    key = "\x1f".join((trigger, selector or "", nodeid or "", subject or ""))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _owner(trigger: Trigger, selector: Selector | None) -> str:
    if trigger.owner == "selector":
        return selector.owner if selector is not None else "unassigned"
    return trigger.owner


def _alert(
    trigger: Trigger,
    selector: Selector | None,
    result: SelectorResult | None,
    summary: str,
    evidence: dict[str, Any],
    nodeid: str | None = None,
    subject: str | None = None,
) -> Alert:
    name = result.name if result is not None else None
    owner = _owner(trigger, selector)
    evidence = {"selector": name, "nodeid": nodeid, **evidence, "owner": owner, "sla": trigger.sla}
    return Alert(
        trigger=trigger.id,
        title=trigger.title,
        severity=trigger.severity,
        owner=owner,
        sla=trigger.sla,
        fingerprint=fingerprint(trigger.id, name, nodeid, subject),
        selector=name,
        nodeid=nodeid,
        summary=summary,
        evidence={key: value for key, value in evidence.items() if value is not None},
    )


# -- helpers that prepare evidence ----------------------------------------------------------


def runtime_of(result: SelectorResult, measure: str) -> tuple[float | None, str]:
    """The time the runtime rules compare, falling back to wall time when pytest reported none."""
    value = {"wall": result.wall_s, "session": result.session_s, "tests": result.tests_s}.get(measure)
    if value is None and measure != "wall":
        return result.wall_s, "wall"
    return value, measure


_FIGURES = TypeAdapter(list[FigureValue])


def numeric_figures(tests: list[TestRecord]) -> list[FigureValue]:
    """Every finite number a test recorded with ``record_property``."""
    figures = []
    with bulk_allocation():  # one figure per test in a 10,000-test report: keep the GC out of it
        for test in tests:
            for name, value in test.user_properties.items():
                if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                    continue
                try:
                    number = float(value)
                except ValueError:
                    continue
                if math.isfinite(number):
                    figures.append({"name": name, "nodeid": test.nodeid, "value": number})
        return _FIGURES.validate_python(figures)


def _resolve_artifact(value: Any, cwd: Path) -> Path:
    path = Path(str(value))
    return path if path.is_absolute() else cwd / path


def check_artifacts(result: SelectorResult, selector: Selector, cwd: Path, display: Callable[[Path], str]) -> tuple[list[ArtifactCheck], list[str]]:
    """Inspect the checkpoint and PNGs the selector's tests recorded (catalog ``artifacts``).

    Every recorded path is checked. A property no test recorded is itself a finding when some
    test passed (the artifact was never produced); when the tests failed first, only a note.
    """
    spec = selector.artifacts
    checks: list[ArtifactCheck] = []
    notes: list[str] = []
    if spec is None or result.state == SelectorState.NOT_RUN:
        return checks, notes
    tests = [t for t in result.tests if t.kind == "test"]
    wanted: list[tuple[str, str]] = []
    if spec.checkpoint_property:
        wanted.append(("checkpoint", spec.checkpoint_property))
    wanted.extend(("png", name) for name in spec.png_properties)
    for kind, prop in wanted:
        recorders = [t for t in tests if prop in t.user_properties]
        if not recorders:
            passed = [t for t in tests if t.outcome in ("passed", "rerun", "xpassed")]
            if passed:
                checks.append(ArtifactCheck(kind=kind, property=prop, nodeid=passed[0].nodeid, path=None, ok=False,
                                            detail=f"no test recorded {prop!r} (record_property) although {len(passed)} passed"))
            elif tests:
                notes.append(f"{result.name}: no test recorded {prop!r} (none passed); artifact not checked")
            continue
        for test in recorders:
            props = test.user_properties
            path = _resolve_artifact(props[prop], cwd)
            if kind == "checkpoint":
                found = artifacts.inspect_checkpoint(path, spec.checkpoint_required_key)
            else:
                shape_text = props.get(spec.png_shape_property) if spec.png_shape_property else None
                expected = artifacts.parse_shape(shape_text) if shape_text is not None else None
                found = artifacts.inspect_png(path, spec.min_png_bytes, expected)
            checks.append(ArtifactCheck(kind=kind, property=prop, nodeid=test.nodeid, path=display(path),
                                        ok=found.ok, size_bytes=found.size_bytes, detail=found.detail))
    checks.extend(_optional_artifacts(spec.optional_files, spec.png_properties, tests, cwd, display))
    return checks, notes


# -- optional artifacts (brief §3.1 train_debug.log): reported when present, never required ---------


def _optional_artifacts(names: tuple[str, ...], beside: tuple[str, ...], tests: list[TestRecord], cwd: Path,
                        display: Callable[[Path], str]) -> list[ArtifactCheck]:
    """Optional files found beside the recorded PNGs (the test's output_dir): reported when there,
    nothing at all when absent (no check, no note, so no rule can fire on it)."""
    checks: list[ArtifactCheck] = []
    for test in tests:
        folders = dict.fromkeys(_resolve_artifact(test.user_properties[p], cwd).parent
                                for p in beside if p in test.user_properties)
        for folder in folders:
            for name in names:
                path = folder / name
                if not path.is_file():
                    continue
                size = path.stat().st_size
                checks.append(ArtifactCheck(
                    kind="optional", property=name, nodeid=test.nodeid, path=display(path), ok=size > 0,
                    size_bytes=size, detail=f"optional artifact present, {size} bytes" if size else "optional artifact present but empty",
                ))
    return checks


# -- the engine ----------------------------------------------------------------------------


def _test_text(test: TestRecord) -> tuple[str, str, str]:
    message = test.message or ""
    locations = "\n".join([test.nodeid, *test.locations])
    context = "\n".join(part for part in (message, locations, test.longrepr or "") if part)
    return message, locations, context


def _matched_line(text: str, match) -> str | None:
    if match is None or not text:
        return None
    start = text.rfind("\n", 0, match.start()) + 1
    end = text.find("\n", match.end())
    line = text[start: end if end != -1 else len(text)].strip()
    return line[:300] or None


def _test_matches(trigger: Trigger, test: TestRecord) -> dict[str, Any] | None:
    when = trigger.when
    if when.outcome and test.outcome not in when.outcome:
        return None
    if when.kind and test.kind not in when.kind:
        return None
    if when.stage and (test.failed_stage or "call") not in when.stage:
        return None
    message, locations, context = _test_text(test)
    evidence: dict[str, Any] = {"outcome": test.outcome, "stage": test.failed_stage, "fixture": test.fixture}
    for name, patterns, text in (("message", when.message, message), ("location", when.location, locations), ("context", when.context, context)):
        if patterns is None:
            continue
        found = patterns.match(text)
        if found is None:
            return None
        if name == "message":
            evidence["matched_line"] = _matched_line(text, found)
        elif name == "context":
            evidence["matched_context"] = _matched_line(text, found)
    if "matched_line" not in evidence and message:
        evidence["message"] = message.splitlines()[0][:300]
    return evidence


def _runtime_limit(bound: float | str | None, factor: float | None, thresholds: Thresholds) -> tuple[float | None, str]:
    """One side of a runtime condition as (limit in seconds, how it was set): a factor of the
    baseline, a named threshold, or seconds. No limit where a factor has no baseline to apply to."""
    if factor is not None:
        if thresholds.baseline is None:
            return None, "no baseline"
        return thresholds.baseline * factor, f"{factor}x baseline {thresholds.baseline:g} s"
    if isinstance(bound, str):
        return thresholds.named(bound), f"{bound} threshold ({thresholds.mode})"
    return bound, "absolute"


def _runtime_alert(trigger: Trigger, selector: Selector, result: SelectorResult, thresholds: Thresholds, ctx: EvaluationContext) -> Alert | None:
    cond = trigger.when.runtime
    assert cond is not None
    runtime, measure = result.runtime_s, result.runtime_measure
    if runtime is None or not result.executed:
        # A process that never reached a test body (skipped, not collected, never started, a
        # fixture failed) is fast or slow for reasons that say nothing about the code under test.
        return None
    if cond.above is not None or cond.above_factor is not None:
        direction, limit, label = "above", *_runtime_limit(cond.above, cond.above_factor, thresholds)
    else:
        direction, limit, label = "below", *_runtime_limit(cond.below, cond.below_factor, thresholds)
    if limit is None:
        return None

    def crosses(value: float) -> bool:
        return value > limit if direction == "above" else value < limit

    if not crosses(runtime):
        return None
    evidence: dict[str, Any] = {
        "runtime_s": round(runtime, 3),
        "measure": measure,
        "threshold_s": round(limit, 3),
        "threshold": label,
        "baseline_s": thresholds.baseline,
        "state": str(result.state),
    }
    summary = f"{result.name}: runtime {runtime:.1f} s {direction} {limit:g} s ({label}, {measure})"
    if cond.consecutive_runs > 1:
        previous = ctx.history.recent_runtimes(result.name, ctx.host_key, cond.consecutive_runs - 1)
        if len(previous) < cond.consecutive_runs - 1 or not all(crosses(value) for value in previous):
            return None
        series = [round(runtime, 3), *[round(value, 3) for value in previous]]
        evidence["consecutive_runtimes_s"] = series
        evidence["host_key"] = ctx.host_key
        summary = (
            f"{result.name}: {cond.consecutive_runs} consecutive runs {direction} {limit:g} s "
            f"({', '.join(f'{v:.1f}' for v in series)} s, newest first)"
        )
    # Runtimes are per machine: the same trigger on two hosts is two alerts.
    return _alert(trigger, selector, result, summary, evidence, subject=f"host:{ctx.host_key}")


def _figure_alerts(trigger: Trigger, selector: Selector, result: SelectorResult, ctx: EvaluationContext) -> list[Alert]:
    alerts = []
    for spec in selector.figures:
        values = [figure for figure in result.figures if figure.name == spec.name]
        if not values:
            if result.state in (SelectorState.PASSED, SelectorState.FLAKY):
                ctx.notes.append(f"{result.name}: quality figure {spec.name!r} was not recorded")
            continue
        calibrated = ctx.history.baseline(result.name, ctx.host_key, f"figure:{spec.name}")
        baseline = calibrated if calibrated is not None else spec.baseline
        source = "calibrated on this host" if calibrated is not None else "catalog"
        if baseline is None and spec.minimum is None and spec.maximum is None:
            ctx.notes.append(f"{result.name}: no baseline for figure {spec.name!r}; run `harness calibrate --selector {result.name}`")
            continue
        for figure in values:
            reasons = []
            if baseline is not None:
                if spec.direction == "higher" and figure.value < baseline - spec.tolerance:
                    reasons.append(f"below baseline {baseline:g} - tolerance {spec.tolerance:g}")
                if spec.direction == "lower" and figure.value > baseline + spec.tolerance:
                    reasons.append(f"above baseline {baseline:g} + tolerance {spec.tolerance:g}")
            if spec.minimum is not None and figure.value < spec.minimum:
                reasons.append(f"below the floor {spec.minimum:g}")
            if spec.maximum is not None and figure.value > spec.maximum:
                reasons.append(f"above the ceiling {spec.maximum:g}")
            if reasons:
                alerts.append(_alert(
                    trigger, selector, result,
                    f"{result.name}: {spec.name} = {figure.value:.4g}, {'; '.join(reasons)}",
                    {"figure": spec.name, "value": figure.value, "baseline": baseline, "baseline_source": source if baseline is not None else None,
                     "tolerance": spec.tolerance, "direction": spec.direction},
                    nodeid=figure.nodeid, subject=spec.name,
                ))
    return alerts


def thresholds_for(selector: Selector, ctx: EvaluationContext) -> Thresholds:
    calibrated = ctx.history.baseline(selector.name, ctx.host_key, "runtime")
    if ctx.thresholds_mode is None and selector.runtime.mode == "absolute" and calibrated is None:
        # Host-relative by default once the host has enough runs (harness/thresholds.py).
        from harness.thresholds import HOST_MIN_RUNS, HOST_WINDOW, host_thresholds

        recent = ctx.history.recent_runtimes(selector.name, ctx.host_key, HOST_WINDOW)
        found = host_thresholds(selector.runtime, recent)
        if found is not None:
            return found
        if getattr(ctx.history, "db", None) is not None:
            ctx.notes.append(f"{selector.name}: runtime thresholds follow this host after {HOST_MIN_RUNS} runs here "
                             f"({len(recent)} of {HOST_MIN_RUNS} runs so far); the catalog's absolute thresholds apply")
    return resolve_thresholds(selector.runtime, calibrated, ctx.thresholds_mode)  # type: ignore[arg-type]


def prepare(result: SelectorResult, selector: Selector, ctx: EvaluationContext, cwd: Path) -> None:
    """Fill in what the rules compare: runtime and thresholds, figures, artifact checks."""
    if result.state == SelectorState.NOT_RUN:
        return
    result.runtime_s, result.runtime_measure = runtime_of(result, selector.runtime.measure)
    result.thresholds = thresholds_for(selector, ctx).as_dict()
    result.figures = numeric_figures(result.tests)
    result.artifacts, notes = check_artifacts(result, selector, cwd, ctx.display_path)
    ctx.notes.extend(notes)
    if not result.skips:
        result.skips = skip_groups(result.tests)
    if result.state in DID_NOT_RUN_STATES:
        # Expected only when tests were there and skipped for an expected reason; a selector
        # that collected nothing (a renamed test, a wrong node id) is never expected to.
        skipped = result.counts.skipped > 0 or bool(result.skips)
        result.skip_expected = skipped and selector.skip_expected(ctx.cadence, [group.reason for group in result.skips])


def evaluate_selector(result: SelectorResult, selector: Selector, ctx: EvaluationContext) -> list[Alert]:
    """The alerts one selector's result fires (call ``prepare`` first)."""
    if result.state == SelectorState.NOT_RUN:
        return []
    thresholds = thresholds_for(selector, ctx)
    alerts: list[Alert] = []
    claimed: set[tuple[str, str]] = set()  # (first_match group, nodeid) already classified
    by_outcome: dict[str, list[TestRecord]] = {}
    for test in result.tests:
        by_outcome.setdefault(test.outcome, []).append(test)
    for trigger in ctx.rules.triggers:
        when = trigger.when
        if not trigger.scope.covers(result.name):
            continue
        if when.state and result.state not in when.state:
            continue
        if when.skip_expected is not None and bool(result.skip_expected) != when.skip_expected:
            continue
        level = when.level
        if level == "selector":
            if when.runtime is not None:
                alert = _runtime_alert(trigger, selector, result, thresholds, ctx)
                if alert:
                    alerts.append(alert)
            else:
                skips = {group.reason: group.count for group in result.skips} or None
                alerts.append(_alert(trigger, selector, result, f"{result.name}: {result.state} ({result.reason})",
                                     {"state": str(result.state), "reason": result.reason, "exit_code": result.exit_code,
                                      "report_exitcode": result.report_exitcode, "signal": result.signal,
                                      "wall_s": result.wall_s, "skips": skips,
                                      "skip_expected": result.skip_expected}))
        elif level == "test":
            candidates = (
                [t for outcome in when.outcome for t in by_outcome.get(outcome, ())] if when.outcome else result.tests
            )
            for test in candidates:
                if trigger.first_match and (trigger.first_match, test.nodeid) in claimed:
                    continue
                evidence = _test_matches(trigger, test)
                if evidence is None:
                    continue
                if trigger.first_match:
                    claimed.add((trigger.first_match, test.nodeid))
                line = evidence.get("matched_line") or evidence.get("message") or test.outcome
                if test.fixture and test.failed_stage in ("setup", "teardown"):
                    line = f"{test.failed_stage} of fixture {test.fixture!r}: {line}"
                alerts.append(_alert(trigger, selector, result, f"{test.nodeid}: {line}", evidence, nodeid=test.nodeid))
        elif level == "artifact":
            assert when.artifact is not None
            for check in result.artifacts:
                if check.kind == when.artifact.kind and not check.ok:
                    alerts.append(_alert(trigger, selector, result, f"{result.name}: {check.property} {check.path or ''}: {check.detail}".replace("  ", " "),
                                         {"property": check.property, "path": check.path, "size_bytes": check.size_bytes, "detail": check.detail},
                                         nodeid=check.nodeid, subject=check.property))
        elif level == "figure":
            alerts.extend(_figure_alerts(trigger, selector, result, ctx))
        elif level == "series":  # a recorded series shifted (harness/shift_rules.py)
            from harness.shift_rules import shift_alerts

            alerts.extend(shift_alerts(trigger, selector, result, ctx))
        elif level == "history":  # flaky across runs (harness/flaky.py)
            from harness.flaky import flaky_alerts

            alerts.extend(flaky_alerts(trigger, selector, result, ctx))
        elif level == "quarantine":  # expired entries, release proposals (harness/quarantine.py)
            from harness.quarantine import quarantine_alerts

            alerts.extend(quarantine_alerts(trigger, selector, result, ctx))
    if result.state in DID_NOT_RUN_STATES and not result.skip_expected and not alerts:
        # A rules file of another project may lack a did_not_run trigger: say so rather than pass quietly.
        ctx.notes.append(f"{result.name} did not run ({result.reason}) and no trigger in {ctx.rules.path.name} "
                         "fires on that, so it does not fail the gate")
    from harness import quarantine

    quarantine.apply(alerts, result, ctx.rules, ctx.notes)  # quarantined tests: reported, not blocking
    return alerts


def evaluate_run(results: list[SelectorResult], cadence: str, wall_s: float, budget_s: float | None, ctx: EvaluationContext) -> list[Alert]:
    """Run-level triggers (the cadence budget)."""
    alerts = []
    for trigger in ctx.rules.triggers:
        if trigger.when.level != "run" or budget_s is None or wall_s <= budget_s:
            continue
        slowest = sorted((r for r in results if r.wall_s), key=lambda r: r.wall_s or 0, reverse=True)[:3]
        alerts.append(Alert(
            trigger=trigger.id, title=trigger.title, severity=trigger.severity, owner=_owner(trigger, None), sla=trigger.sla,
            fingerprint=fingerprint(trigger.id, None, None, f"cadence:{cadence}"),
            summary=f"{cadence} run took {wall_s:.1f} s, budget {budget_s:g} s",
            evidence={"cadence": cadence, "wall_s": round(wall_s, 3), "budget_s": budget_s,
                      "slowest": {r.name: r.wall_s for r in slowest}, "owner": _owner(trigger, None), "sla": trigger.sla},
        ))
    return alerts


def blocking(alerts: list[Alert], fail_on: str) -> list[Alert]:
    """Alerts at or above the gate's severity."""
    floor = SEVERITY_RANK[fail_on]
    # A quarantined test's alerts are reported but do not fail the gate (harness/quarantine.py).
    return [alert for alert in alerts
            if SEVERITY_RANK[alert.severity] >= floor and not alert.evidence.get("quarantined")]


def sort_alerts(alerts: list[Alert]) -> list[Alert]:
    return sorted(alerts, key=lambda a: (-SEVERITY_RANK[a.severity], a.trigger, a.selector or "", a.nodeid or ""))
