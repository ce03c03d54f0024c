"""Apply ``shift`` triggers (RT-004, PERF-001, QUAL-002): recorded series -> change -> alert.

For each series the rule names (a selector's runtime on this host, each passed test's call
duration on this host, each catalog quality figure) this reads the latest runs after the
newest accepted baseline, appends this run's value and scans them (harness/changepoints.py).

One alert per change: while the change is open its fingerprint keeps firing with the evidence
of the run that found it (the notification layer sends it once), so the onset and commit range
never drift. It resolves when the median of the latest runs is back within half the rule's
``min_change`` of the level before the change, or when a baseline accepted after the onset
says the new level is the norm.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness import history_series
from harness.catalog import Selector
from harness.changepoints import InvalidMeasurement, ScanSettings, Shift, check_measurement, scan, short_sha, still_shifted
from harness.report_model import Alert, SelectorResult
from harness.rule_schema import ShiftCondition, Trigger

# A run whose tests did not execute (did_not_run, and the older "skipped") has no timing to judge.
TIMED = ("passed", "flaky")


@dataclass
class Series:
    """One series to judge: values aligned with ``runs`` plus this run's value (last)."""

    key: str                      # 'runtime', 'test:<nodeid>', 'figure:<name>'
    label: str                    # words for the summary
    unit: str
    nodeid: str | None
    subject: str
    values: list[float]           # NaN where a run has no value
    settings: ScanSettings


def settings_for(cond: ShiftCondition, direction: str | None = None) -> ScanSettings:
    return ScanSettings(
        min_change=cond.min_change, significance=cond.significance,
        direction=(direction or cond.direction),  # type: ignore[arg-type]
        transform="linear" if cond.series == "figure" else "log",
        min_history=cond.min_history, window=cond.window,
        min_run_length=cond.min_run_length, max_run_length=cond.max_run_length,
    )


def shift_alerts(trigger: Trigger, selector: Selector, result: SelectorResult, ctx: Any) -> list[Alert]:
    """The alerts of one ``shift`` trigger for one selector result (``ctx``: EvaluationContext)."""
    from harness.rule_engine import _alert

    cond = trigger.when.shift
    assert cond is not None
    if getattr(ctx.history, "db", None) is None:
        return []
    open_changes = history_series.firing(ctx.history, trigger.id, result.name)
    if result.state.value not in TIMED:
        # A failed or crashed run measures nothing comparable: open changes stay as they were.
        return [_carried(trigger, selector, result, evidence) for evidence in open_changes.values()]
    per_host = cond.series != "figure"  # timings belong to their machine; figures do not
    host = ctx.host_key if per_host else None
    scope = "runtime" if cond.series == "runtime" else ("test:*" if cond.series == "test_duration" else "figure:*")
    after_id, _ = history_series.accepted_after(ctx.history, result.name, host, scope)
    base = settings_for(cond)
    history_runs = cond.window + cond.max_run_length - 1
    runs = history_series.recent_runs(ctx.history, result.name, host, history_runs, after_id)
    if cond.series == "runtime":
        series = _runtime_series(cond, result, runs, base, ctx)
    elif cond.series == "test_duration":
        series = _test_series(cond, result, runs, base, ctx)
    else:
        series = _figure_series(cond, selector, result, runs, base, ctx)
    alerts = []
    judged: set[tuple[str | None, str]] = set()
    # The open change of each series (at most one: a newer change replaces it).
    open_by_series = {(evidence.get("nodeid"), str(evidence.get("subject"))): evidence for evidence in open_changes.values()}
    # Series scanned together share their settings (one matrix per direction).
    groups: dict[ScanSettings, list[Series]] = defaultdict(list)
    for item in series:
        groups[item.settings].append(item)
    for settings, items in groups.items():
        matrix = np.array([item.values for item in items], dtype=float)
        fires, shifts = scan(matrix, settings)
        for row, item in enumerate(items):
            judged.add((item.nodeid, item.subject))
            current = item.values[-1]
            found = _change(shifts[row], runs, item) if fires[row] and shifts[row] is not None else None
            change = (open_by_series.get((item.nodeid, item.subject)) or {}).get("change")
            if change and int(change.get("first_run_id", 0)) <= after_id:
                change = None  # a baseline accepted after its onset: the new level is the norm
            further = None
            if change and found and found["first_run_id"] > int(change["first_run_id"]) \
                    and _moved(float(found["after"]), float(change["after"]), settings) >= settings.min_change:
                further = _further_change(item, runs, change, shifts[row], settings)
            if further is not None:
                change = further  # a further change after the open one: a new alert replaces it
            elif change:
                recent = [v for v in item.values if not math.isnan(v)][-settings.min_run_length:]
                if not still_shifted(recent, float(change["before"]), settings):
                    continue  # the series returned: the alert resolves
            else:
                change = found
            if change is None:
                continue
            evidence: dict[str, Any] = {"change": change, "series": item.key, "subject": item.subject,
                                        "latest": round(current, 6), "host_key": host}
            if per_host:
                evidence["runtime_s"] = round(current, 6)  # marks it as bound to this host (history._resolve)
            summary = _summary(result.name, item, change)
            evidence["line"] = summary
            evidence["headline"] = (f"{item.label} {float(change['change_pct']):+.0f} % ({_fmt(change['before'], item.unit)} → "
                                    f"{_fmt(change['after'], item.unit)}) since {change['first_sha']}")
            alerts.append(_alert(trigger, selector, result, summary, evidence, nodeid=item.nodeid,
                                 subject=_alert_subject(item.subject, change)))
    for key, evidence in open_by_series.items():
        # An open change this run could not judge (the test failed or was not run, the runtime
        # was not a measurement) neither resolves nor moves. One on another host is not ours.
        if key in judged or evidence.get("host_key") != host:
            continue
        change = evidence.get("change") or {}
        if int(change.get("first_run_id", 0)) > after_id:
            alerts.append(_carried(trigger, selector, result, evidence))
    return alerts


def _further_change(item: Series, runs: list[history_series.RunPoint], change: dict[str, Any], shift: Shift,
                    settings: ScanSettings) -> dict[str, Any] | None:
    """Where a further change starts, judged only by the runs since the open change's onset (the
    scan's reference still mixes the levels before and after it): the split of those runs whose
    two sides differ most (binary segmentation), if the later side moved by ``min_change``."""
    first_id = int(change["first_run_id"])
    start = next((index for index, run in enumerate(runs) if run.run_id >= first_id), len(runs))
    values = np.array(item.values[start:], dtype=float)
    keep = ~np.isnan(values)
    positions, values = np.flatnonzero(keep) + start, values[keep]
    if len(values) < 3:
        return None
    y = np.log(values) if settings.transform == "log" else values
    best, split = -1.0, 0
    for p in range(1, len(y) - 1):  # at least two runs after the split
        score = abs(y[p:].mean() - y[:p].mean()) * math.sqrt(p * (len(y) - p) / len(y))
        if score > best:
            best, split = score, p
    before, after = float(np.median(values[:split])), float(np.median(values[split:]))
    if _moved(after, before, settings) < settings.min_change:
        return None
    relative = after / before - 1.0 if settings.transform == "log" else (after - before) / max(abs(before), 1e-12)
    onset = int(positions[split])
    return _change(Shift(onset=onset, before=before, after=after, change=relative, score=shift.score,
                         runs_after=len(item.values) - onset), runs, item)


def _alert_subject(subject: str, change: dict[str, Any]) -> str:
    """One alert per change: the series and the run the change was first seen in."""
    return f"{subject}@{change['first_run']}"


def _moved(value: float, reference: float, settings: ScanSettings) -> float:
    """Relative change of ``value`` against ``reference`` in the rule's direction."""
    sign = 1.0 if settings.direction == "increase" else -1.0
    if settings.transform == "log":
        return sign * (value / reference - 1.0) if reference > 0 else math.inf
    return sign * (value - reference) / max(abs(reference), 1e-12)


def _carried(trigger: Trigger, selector: Selector, result: SelectorResult, evidence: dict[str, Any]) -> Alert:
    from harness.rule_engine import _alert

    kept = {key: value for key, value in evidence.items() if key not in ("selector", "nodeid", "owner", "sla")}
    summary = str(evidence.get("line") or f"{result.name}: {trigger.title}")
    change = evidence.get("change") or {}
    subject = _alert_subject(str(evidence.get("subject")), change) if change.get("first_run") else evidence.get("subject")
    return _alert(trigger, selector, result, summary, kept, nodeid=evidence.get("nodeid"), subject=subject)


def _change(shift: Shift, runs: list[history_series.RunPoint], item: Series) -> dict[str, Any]:
    """The evidence of a change: medians, significance, its first run and the commit range."""
    first = runs[shift.onset] if shift.onset < len(runs) else None
    last_good = runs[shift.onset - 1] if 0 < shift.onset <= len(runs) else None
    if first is not None and first.git_sha:
        # An onset inside one commit's runs (its noise moved the estimate) is that commit's change:
        # the range starts at the last run of another commit.
        earlier = shift.onset - 1
        while earlier > 0 and runs[earlier].git_sha == first.git_sha:
            earlier -= 1
        if earlier >= 0 and runs[earlier].git_sha != first.git_sha:
            last_good = runs[earlier]
    first_sha, good_sha = short_sha(first.git_sha if first else None), short_sha(last_good.git_sha if last_good else None)
    return {
        "before": round(shift.before, 6), "after": round(shift.after, 6), "change_pct": round(shift.percent, 1),
        "score": round(shift.score, 2), "runs_after": shift.runs_after,
        "first_run": first.run_key if first else "this run", "first_run_id": first.run_id if first else 2**62,
        "first_sha": first_sha, "last_good_run": last_good.run_key if last_good else None, "last_good_sha": good_sha,
        "commit_range": f"{good_sha}..{first_sha}",
    }


def _fmt(value: float, unit: str) -> str:
    return f"{value:.3g} {unit}".strip() if unit else f"{value:.4g}"


def _summary(selector: str, item: Series, change: dict[str, Any]) -> str:
    pct = float(change["change_pct"])
    return (f"{selector}: {item.label} {pct:+.0f} % ({_fmt(change['before'], item.unit)} → {_fmt(change['after'], item.unit)}, "
            f"z = {float(change['score']):.1f}), first seen in run {change['first_run']} at {change['first_sha']} "
            f"(last good {change['last_good_sha']}; commits {change['commit_range']})")


def _checked(value: object, what: str, ctx: Any) -> float | None:
    try:
        return check_measurement(value, what, "this run")
    except InvalidMeasurement as exc:
        ctx.notes.append(str(exc))
        return None


def _history_value(value: object) -> float:
    """A stored value, NaN when it is not a measurement (never fed to the statistics)."""
    try:
        return check_measurement(value, "history")
    except InvalidMeasurement:
        return math.nan


def _runtime_series(cond: ShiftCondition, result: SelectorResult, runs, base: ScanSettings, ctx: Any) -> list[Series]:
    cpu_now = getattr(result, "cpu_s", None)
    use_cpu = cond.signal == "cpu" or (
        cond.signal == "auto" and cpu_now is not None
        and sum(run.cpu_s is not None for run in runs) >= base.min_history)
    if use_cpu:
        current = _checked(cpu_now, f"{result.name}: CPU seconds", ctx)
        values = [_history_value(run.cpu_s) for run in runs]
        label, key = "CPU time", "cpu_s"
    else:
        current = _checked(result.runtime_s, f"{result.name}: runtime", ctx)
        values = [_history_value(run.runtime_s) for run in runs]
        label, key = "runtime", "runtime"
    if current is None:
        return []
    have = sum(not math.isnan(v) for v in values)
    if have < base.needed - 1:
        ctx.notes.append(f"{result.name}: change points need {base.needed - 1} earlier runs on this host "
                         f"({have} of {base.needed - 1} so far)")
        return []
    return [Series(key=key, label=label, unit="s", nodeid=None, subject=f"host:{ctx.host_key}",
                   values=[*values, current], settings=base)]


def _test_series(cond: ShiftCondition, result: SelectorResult, runs, base: ScanSettings, ctx: Any) -> list[Series]:
    if len(runs) < base.needed - 1:
        return []
    position = {run.result_id: index for index, run in enumerate(runs)}
    current: dict[str, float] = {}
    bad = []
    for test in result.tests:
        if test.kind != "test" or test.outcome != "passed":
            continue
        try:
            current[test.nodeid] = check_measurement(test.durations.call, f"{test.nodeid}: call duration", "this run")
        except InvalidMeasurement as exc:
            bad.append(str(exc))
    if bad:
        ctx.notes.append(f"{result.name}: {len(bad)} test duration(s) not judged; first: {bad[0]}")
    if not current:
        return []
    table = np.full((len(current), len(runs) + 1), np.nan)
    row_of = {nodeid: row for row, nodeid in enumerate(current)}
    for result_id, nodeid, call_s in history_series.test_durations(ctx.history, list(position)):
        row = row_of.get(nodeid)
        if row is not None:
            table[row, position[result_id]] = _history_value(call_s)
    table[:, -1] = list(current.values())
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            typical = np.nanmedian(table[:, :-1], axis=1)
    series = []
    for nodeid, row in row_of.items():
        if not (typical[row] >= cond.min_value):  # NaN (no history) fails too
            continue
        series.append(Series(key=f"test:{nodeid}", label="call duration", unit="s", nodeid=nodeid,
                             subject=f"duration@host:{ctx.host_key}", values=list(table[row]), settings=base))
    return series


def _figure_series(cond: ShiftCondition, selector: Selector, result: SelectorResult, runs, base: ScanSettings, ctx: Any) -> list[Series]:
    if len(runs) < base.needed - 1 or not selector.figures:
        return []
    position = {run.result_id: index for index, run in enumerate(runs)}
    specs = {spec.name: spec for spec in selector.figures}
    current: dict[tuple[str, str], float] = {}
    for figure in result.figures:
        if figure.name in specs:
            value = _checked(figure.value, f"{result.name}: figure {figure.name}", ctx) if not math.isfinite(figure.value) else figure.value
            if value is not None:
                current[(figure.name, figure.nodeid)] = value
    if not current:
        return []
    table = {key: [math.nan] * len(runs) for key in current}
    for result_id, nodeid, name, value in history_series.figure_values(ctx.history, list(position)):
        key = (name, nodeid)
        if key in table and math.isfinite(value):
            table[key][position[result_id]] = value
    series = []
    for (name, nodeid), values in table.items():
        spec = specs[name]
        direction = cond.direction
        if direction == "worse":
            direction = "decrease" if spec.direction == "higher" else "increase"
        settings = settings_for(cond, direction)
        series.append(Series(key=f"figure:{name}", label=name, unit="", nodeid=nodeid, subject=name,
                             values=[*values, current[(name, nodeid)]], settings=settings))
    return series
