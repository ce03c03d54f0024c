"""What one selector's pytest process left, as a SelectorResult: the runner's view (exit code,
signal, wall and CPU time) and pytest's JSON report, classified by ``harness.pytest_report``.

Every command that runs a selector reads its process this one way: ``harness run``
(``pipeline``), ``calibrate``, ``doctor`` and ``reproduce``. Module-level imports stay light
(``harness run`` imports this before the first test starts); the parser is imported when a
result is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from harness.runner import ProcessOutcome, SelectorPlan
from harness.states import SelectorState

if TYPE_CHECKING:
    from harness.catalog import Selector
    from harness.report_model import SelectorResult


class ResultDirectory(Protocol):
    """Where a selector's files lie: ``staging`` while being written, ``final`` once published
    (``harness.run_directory.RunDirectory``, or a ``ScratchDirectory``)."""

    staging: Path
    final: Path

    def relative(self, path: Path) -> str: ...


class ScratchDirectory:
    """A folder that is never renamed (doctor's scratch runs, reproduce's staging folder): paths in
    it are recorded relative to it, or as they are."""

    def __init__(self, path: Path) -> None:
        self.staging = self.final = Path(path)

    def relative(self, path: Path) -> str:
        try:
            return Path(path).resolve().relative_to(self.final.resolve()).as_posix()
        except ValueError:
            return str(path)


def selector_result(plan: SelectorPlan, outcome: ProcessOutcome, run_dir: ResultDirectory) -> SelectorResult:
    """Combine what the runner saw and what pytest reported into one SelectorResult."""
    from harness.pytest_report import classify, read_for_classification
    from harness.report_model import SelectorFiles, SelectorResult

    selector = plan.selector
    report, problem = (None, None)
    if plan.json_path.exists():
        report, problem = read_for_classification(plan.json_path)
    if outcome.start_error:
        parsed = classify(None, None, missing_reason=outcome.start_error)
        parsed.state = SelectorState.INTERNAL_ERROR
    else:
        missing = problem or (f"pytest wrote no JSON report ({_ended(outcome)})")
        parsed = classify(report, outcome.exit_code, timed_out=outcome.timed_out,
                          interrupted=outcome.interrupted, missing_reason=missing)
    if parsed.state in _EXPLAIN_FROM_STDERR:
        last = _last_line(plan.stderr_path) or _last_line(plan.stdout_path)
        if last:
            parsed.reason = f"{parsed.reason}: {last}"
    files = SelectorFiles(
        pytest_json=run_dir.relative(plan.json_path) if plan.json_path.exists() else None,
        stdout=run_dir.relative(plan.stdout_path),
        stderr=run_dir.relative(plan.stderr_path),
        basetemp=run_dir.relative(plan.basetemp),
    )
    return SelectorResult(
        name=selector.name, title=selector.title, owner=selector.owner, env=dict(selector.env),
        argv=[arg.replace(str(run_dir.staging), str(run_dir.final)) for arg in plan.argv],  # as published
        state=parsed.state, reason=parsed.reason, exit_code=outcome.exit_code, report_exitcode=parsed.report_exitcode,
        signal=outcome.signal, started_at=outcome.started_at, finished_at=outcome.finished_at, wall_s=outcome.wall_s,
        cpu_s=outcome.cpu_s,
        session_s=None if parsed.session_s is None else round(parsed.session_s, 3), tests_s=parsed.tests_s,
        counts=parsed.counts, tests=parsed.tests, files=files, skips=parsed.skips, environment=parsed.environment,
    )


_EXPLAIN_FROM_STDERR = {SelectorState.USAGE_ERROR, SelectorState.INTERNAL_ERROR, SelectorState.REPORT_MISSING}


def _last_line(path: Path, limit: int = 300) -> str | None:
    """The last non-empty line of a log (its tail only), to say why pytest gave up."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 8192))
            lines = [line.strip() for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return None
    return lines[-1][:limit] if lines else None


def _ended(outcome: ProcessOutcome) -> str:
    if outcome.signal:
        return f"the process was killed by {outcome.signal}"
    if outcome.exit_code is not None:
        return f"the process exited with status {outcome.exit_code}"
    return "the process did not finish"


def not_run_result(selector: Selector, reason: str) -> SelectorResult:
    """A selector this run did not start (not required by the changed files, or stopped first)."""
    from harness.report_model import SelectorResult

    return SelectorResult(name=selector.name, title=selector.title, owner=selector.owner, argv=[], env=dict(selector.env),
                          state=SelectorState.NOT_RUN, reason=reason)
