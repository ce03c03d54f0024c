"""The verdict path: selector results -> judge -> gate -> write and record -> publish.

Every command that ends in a verdict composes these steps in this order instead of writing
them again: ``harness run`` (``pipeline.execute``: results from the runner) and ``harness
merge`` (``merge``: results put back together from shard directories). What differs between
them lives in a ``VerdictBasis`` (where the host key, wall time and interruption come from)
and in the ``describe_run`` callback that says what kind of run it was; the steps themselves
are the same code.

- ``judge``: the trigger rules (``harness.rule_engine``) over every selector result, with the
  history view for RT-002's consecutive runs and calibrated baselines, plus the run-level
  rules unless the run was interrupted;
- ``gate``: the alerts at or above ``--fail-on`` decide the exit code;
- ``write_and_record``: the report files are written into the staging folder and published
  by one rename inside the history transaction, so a run leaves a complete report and its
  history rows, or neither; a history that cannot be written costs the history rows only;
- ``publish``: what follows a published report (GitHub summary and annotations, alert
  delivery, the dashboard); each problem there is a warning, never a changed verdict.

The report is built once, after the gate; the later steps take copies of it
(``model_copy``) rather than changing it under their caller.

This module is imported after the tests have started (``pipeline.POST_RUN_MODULES``), so its
module-level imports may be as heavy as the post-run work needs.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.rule_engine import EvaluationContext, NoHistory, blocking, evaluate_run, evaluate_selector, prepare
from harness.rule_engine import sort_alerts
from harness.report_model import Alert, Gate, GitInfo, RunInfo, RunReport, SelectorResult

if TYPE_CHECKING:
    from harness.catalog import Cadence, Catalog, Selector
    from harness.rule_engine import HistoryView
    from harness.history import HistoryStore
    from harness.rule_schema import RuleSet
    from harness.run_directory import RunDirectory

EXIT_PASSED = 0
EXIT_GATE_FAILED = 1

HISTORY_DISABLED_NOTE = "history disabled (--no-history): RT-002 and calibrated baselines not consulted"


@dataclass(frozen=True)
class VerdictBasis:
    """What the verdict depends on besides the selector results."""

    catalog: Catalog
    rules: RuleSet
    cadence: Cadence
    fail_on: str
    host_key: str
    wall_s: float
    reports_dir: Path
    history_path: Path | None
    thresholds_mode: str | None = None
    # The exit code of an interrupted run (a run: by the signal received; a merge: 130 when a
    # shard was interrupted); None for a run that went to its end.
    interrupted_exit: int | None = None
    # The commit the results come from (the rules judge this run's outcomes on it, e.g. FLAKY-002's
    # fail and pass on one commit); None where it is not known.
    git: GitInfo | None = None

    @property
    def interrupted(self) -> bool:
        return self.interrupted_exit is not None


@dataclass(frozen=True)
class Judgement:
    """The rules' output: alerts in report order, and what they could not evaluate, in words."""

    alerts: list[Alert]
    notes: list[str]


@contextmanager
def open_history(path: Path | None) -> Iterator[HistoryStore | None]:
    """The history store at ``path`` for the length of a verdict; None when history is off."""
    if path is None:
        yield None
        return
    from harness.history import HistoryStore

    store = HistoryStore.open(path)
    try:
        yield store
    finally:
        store.close()


def judge(results: list[SelectorResult], basis: VerdictBasis, history: HistoryStore | None,
          display_path: Callable[[Path], str]) -> Judgement:
    """Apply the rules to ``results`` (each completed in place with its figures and artifact
    checks by ``rule_engine.prepare``) and to the run as a whole."""
    catalog = basis.catalog
    ctx = EvaluationContext(rules=basis.rules, history=history or NoHistory(), host_key=basis.host_key,
                            thresholds_mode=basis.thresholds_mode, display_path=display_path,
                            cadence=basis.cadence.name, git=basis.git)
    alerts: list[Alert] = []
    for result in results:
        selector = catalog.selectors.get(result.name)
        if selector is None:  # a merged shard report naming a selector this catalog lacks
            raise HarnessError(f"selector {result.name!r} of the report is not in {catalog.path}")
        prepare(result, selector, ctx, catalog.root)
        alerts.extend(evaluate_selector(result, selector, ctx))
    if not basis.interrupted:
        alerts.extend(evaluate_run(results, basis.cadence.name, basis.wall_s, basis.cadence.budget_s, ctx))
    return Judgement(alerts=sort_alerts(alerts), notes=list(ctx.notes))


def judge_selector(result: SelectorResult, selector: Selector, *, rules: RuleSet, history: HistoryView | None,
                   host_key: str, cwd: Path, display_path: Callable[[Path], str] = str,
                   thresholds_mode: str | None = None, git: GitInfo | None = None) -> Judgement:
    """The rules over one selector's result outside a run (``harness evaluate``, ``doctor``,
    ``reproduce``): the same preparation and trigger evaluation ``judge`` applies to each selector,
    without the run-level rules. ``cwd`` is where relative artifact paths resolve; ``git`` is the
    commit the result comes from, where known."""
    ctx = EvaluationContext(rules=rules, history=history or NoHistory(), host_key=host_key,
                            thresholds_mode=thresholds_mode, display_path=display_path, git=git)
    prepare(result, selector, ctx, cwd)
    return Judgement(alerts=sort_alerts(evaluate_selector(result, selector, ctx)), notes=list(ctx.notes))


def gate(judgement: Judgement, basis: VerdictBasis) -> Gate:
    """Pass or fail: an interrupted run never passes; otherwise any alert at or above
    ``fail_on`` blocks."""
    blockers = blocking(judgement.alerts, basis.fail_on)
    if basis.interrupted_exit is not None:
        exit_code = basis.interrupted_exit
    else:
        exit_code = EXIT_GATE_FAILED if blockers else EXIT_PASSED
    return Gate(passed=not blockers and not basis.interrupted, fail_on=basis.fail_on,  # type: ignore[arg-type]
                blocking=[alert.fingerprint for alert in blockers], exit_code=exit_code)


def run_status(gate_: Gate, basis: VerdictBasis) -> str:
    """``run.status`` in report.json: interrupted, failed or passed."""
    if basis.interrupted:
        return "interrupted"
    return "passed" if gate_.passed else "failed"


def as_published(report: RunReport, run_dir: RunDirectory) -> RunReport:
    """The report with every path into the staging folder (recorded artifact paths, messages,
    argv) pointing where the run directory will be once published. Artifacts were inspected
    before this, while they were still in staging."""
    from harness.pytest_report import bulk_allocation

    staging, final = json.dumps(str(run_dir.staging))[1:-1], json.dumps(str(run_dir.final))[1:-1]
    text = report.to_json()
    if staging not in text:
        return report
    with bulk_allocation():  # a 10,000-test report: half the time without the cyclic GC walking it
        return RunReport.model_validate_json(text.replace(staging, final))


def write_and_record(report: RunReport, run_dir: RunDirectory, store: HistoryStore | None,
                     basis: VerdictBasis, json_files: Iterable[Path]) -> tuple[RunReport, list[str]]:
    """Write the report files, record the run and publish the directory by one rename.

    ``json_files`` are the pytest JSON reports in the run directory whose recorded staging
    paths are re-pointed at the published folder. Returns the report as written (with the
    alerts this run resolved) and the warnings. A history that cannot be written still lets the
    report be published, with a note saying so.
    """
    from harness.render import write_reports

    report = as_published(report, run_dir)
    run_dir.relocate_json(json_files)
    warnings: list[str] = []
    if store is None:
        report = report.model_copy(update={"notes": [*report.notes, HISTORY_DISABLED_NOTE]})
        warnings.extend(write_reports(report, run_dir.staging))
        run_dir.publish()
        return report, warnings
    try:
        with store.recording(report) as resolved:
            report = report.model_copy(update={"resolved": resolved})
            warnings.extend(write_reports(report, run_dir.staging))
            run_dir.publish()
    except Exception as exc:  # history unusable: still publish the report, say so
        if run_dir.published:
            raise
        message = f"history not recorded in {basis.history_path}: {exc}"
        warnings.append(message)
        report = report.model_copy(update={"notes": [*report.notes, message], "resolved": []})
        warnings.extend(write_reports(report, run_dir.staging))
        run_dir.publish()
    return report, warnings


def conclude(results: list[SelectorResult], basis: VerdictBasis, run_dir: RunDirectory, *,
             describe_run: Callable[[str], RunInfo], notes: Iterable[str] = (),
             json_files: Iterable[Path] = ()) -> tuple[RunReport, list[str]]:
    """judge -> gate -> report -> write and record, with the history open throughout.

    ``describe_run(status)`` gives the command's ``RunInfo`` once the status is known;
    ``notes`` come first in the report, the rules' own notes after them (each once).
    """
    with open_history(basis.history_path) as store:
        judgement = judge(results, basis, store, run_dir.relative)
        verdict = gate(judgement, basis)
        report = RunReport(
            run=describe_run(run_status(verdict, basis)), gate=verdict, selectors=results,
            alerts=judgement.alerts, notes=list(dict.fromkeys([*notes, *judgement.notes])),
        )
        return write_and_record(report, run_dir, store, basis, json_files)


def publish(report: RunReport, directory: Path, *, reports_dir: Path, history_path: Path | None,
            catalog: Catalog) -> list[str]:
    """After the report is published: GitHub job summary and annotations, alert delivery
    (queue and send this run's fired and resolved notifications), the dashboard page. Never
    raises for a problem there; each comes back as a warning."""
    from harness import dashboard, github
    from harness.alerts.delivery import after_run

    github.publish(report, directory)
    warnings = list(after_run(report, directory, history_path, stream=sys.stderr).warnings)
    problem = dashboard.refresh_after_run(reports_dir, history_path, catalog)
    if problem:
        warnings.append(problem)
    return warnings
