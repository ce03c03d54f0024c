"""One harness run end to end: catalog -> runner -> report parser -> the verdict path.

This module owns what is particular to running: planning and launching the selectors (the
runner), stopping them on a signal, reading what each pytest process left
(``harness.selector_result``), capturing the environment beside the tests. From the results on, the run takes
the same steps as ``harness merge`` (``harness.verdict``: judge -> gate -> write and record ->
publish). The run directory is built aside and published by one rename inside the history
transaction, so a run either leaves a complete report and its history rows, or (killed) neither.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from harness import shard
from harness.run_directory import RunDirectory
from harness.runner import plan_selector, run_plans, utc_now
from harness.selector_env import redact_secrets
from harness.selector_result import not_run_result, selector_result

if TYPE_CHECKING:
    from harness.catalog import Cadence, Catalog, Selector
    from harness.report_model import GitInfo, RunInfo, RunReport
    from harness.rule_schema import RuleSet

# Everything after the tests (parsing, rules, history, reports, alert delivery) is imported by
# the warm-up thread while the tests run, not before the first one starts: see
# start_post_run_warm_up. The functions below import what they use from these.
POST_RUN_MODULES = (
    "harness.report_model", "harness.pytest_report", "harness.rule_engine", "harness.history",
    "harness.render", "harness.environment", "harness.github", "harness.alerts.delivery", "harness.verdict",
)

EXIT_INTERRUPTED = {signal.SIGHUP: 129, signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclass
class RunRequest:
    catalog: Catalog
    rules: RuleSet
    cadence: Cadence
    selectors: list[Selector]
    not_required: dict[str, str]
    reports_dir: Path
    history_path: Path | None
    jobs: int
    fail_on: str = "high"
    thresholds_mode: str | None = None
    progress: str = "auto"
    changed_files: list[str] | None = None
    json_output: bool = False
    shard: str | None = None  # "i/n": this run is one shard of the cadence (harness run --shard)


@dataclass
class RunOutcome:
    report: RunReport
    directory: Path
    exit_code: int
    warnings: list[str] = field(default_factory=list)


class StopSignals:
    """SIGINT/SIGTERM/SIGHUP set an event (the runner stops its children) instead of killing the
    harness: a closed terminal or SSH session ends a run the way Ctrl-C does."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.received = self.received or signum
        self.event.set()

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in EXIT_INTERRUPTED:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def start_post_run_warm_up(*, dashboard: bool) -> threading.Thread:
    """Import the post-run modules in a background thread while the tests run: parsing, rules,
    history and reports (``POST_RUN_MODULES``), alert delivery (requests, routes, payload
    templates) and, when the page will be regenerated (history on), the dashboard's chart modules
    and template (``dashboard.warm_up``).

    The harness only waits on its pytest processes meanwhile, so this CPU time is taken from the
    run instead of being added before or after it, while the user waits. The post-run code
    imports the same modules (waiting on Python's import lock if one is still in progress, never
    importing twice); a failure here is ignored and surfaces there. Not a daemon: the interpreter
    never exits mid-import.
    """

    def warm_up() -> None:
        try:
            for name in POST_RUN_MODULES:
                importlib.import_module(name)
            if dashboard:
                importlib.import_module("harness.dashboard").warm_up()
        except Exception:  # noqa: BLE001 - the post-run import raises it again
            return

    thread = threading.Thread(target=warm_up, name="post-run-warm-up")
    thread.start()
    return thread


class EnvironmentCapture:
    """``env.txt`` and the git revision, captured in a thread beside the tests (``pip show``'s
    metadata scan and three git commands need not delay the first test)."""

    def __init__(self, run_dir: RunDirectory, python: str, root: Path, *, full: bool) -> None:
        self.root = root
        self._git: GitInfo | None = None
        self._thread = threading.Thread(target=self._capture, args=(run_dir.staging / "env.txt", python, full),
                                        name="environment-capture", daemon=True)

    def start(self) -> None:
        if self._thread.ident is None:  # not started yet
            self._thread.start()

    def _capture(self, target: Path, python: str, full: bool) -> None:
        from harness import environment

        self._git = environment.git_info(self.root)
        target.write_text(environment.env_text(python, self.root, full=full, git=self._git), encoding="utf-8")

    def git(self, timeout: float = 120) -> GitInfo:
        """The run's GitInfo (asked again here if the capture failed or is still stuck); starts
        the capture first if no test started it."""
        from harness import environment

        self.start()
        self._thread.join(timeout=timeout)
        return self._git if self._git is not None else environment.git_info(self.root)


def execute(request: RunRequest) -> RunOutcome:
    """Run the request's selectors and publish the report; returns the exit code to use."""
    started_dt = datetime.now(UTC)
    started_at = utc_now()
    clock = time.monotonic()
    run_dir = RunDirectory(request.reports_dir, request.cadence.name, started_dt)
    catalog = request.catalog
    capture = EnvironmentCapture(run_dir, catalog.python_executable(sys.executable), catalog.root,
                                 full=request.cadence.environment_capture == "full")
    warnings: list[str] = []
    try:
        plans = [plan_selector(catalog, selector, run_dir.staging, run_dir.name) for selector in request.selectors]
        plans = shard.shard_plans(plans, request.shard, catalog)  # a test-split selector runs its slice only

        def beside_the_tests() -> None:
            """Once the first tests started: capture the environment, import what follows them."""
            capture.start()
            start_post_run_warm_up(dashboard=request.history_path is not None)

        with StopSignals() as stop:
            outcomes = run_plans(plans, request.jobs, request.progress, stop.event, on_launched=beside_the_tests)
            interrupted_by = stop.received
            # From here on a second signal must not leave a half-written report: keep deferring.
            # Whatever a test printed, the harness's secrets do not get into the report or the logs.
            secret_notes = redact_secrets(run_dir.staging / "selectors")
            warnings.extend(secret_notes)
            results_by_name = {plan.name: selector_result(plan, outcomes[plan.name], run_dir) for plan in plans}
            for plan in plans:
                outcome = outcomes[plan.name]
                if not outcome.started and not outcome.start_error:
                    results_by_name[plan.name] = not_run_result(plan.selector, "not started: the run was interrupted first")
            for name, reason in request.not_required.items():
                results_by_name[name] = not_run_result(catalog.selectors[name], reason)
            ordered = [name for name in request.cadence.selectors if name in results_by_name]
            ordered += [name for name in results_by_name if name not in ordered]
            results = [results_by_name[name] for name in ordered]

            from harness import environment
            from harness.verdict import VerdictBasis, conclude

            host = environment.host_info()
            basis = VerdictBasis(
                catalog=catalog, rules=request.rules, cadence=request.cadence, fail_on=request.fail_on,
                host_key=host.host_key, wall_s=round(time.monotonic() - clock, 3), reports_dir=request.reports_dir,
                history_path=request.history_path, thresholds_mode=request.thresholds_mode,
                interrupted_exit=None if interrupted_by is None else EXIT_INTERRUPTED.get(interrupted_by, 130),
                git=capture.git(),
            )

            def describe_run(status: str) -> RunInfo:
                from harness.report_model import RunInfo

                return RunInfo(
                    id=run_dir.name, cadence=request.cadence.name, started_at=started_at, finished_at=utc_now(),
                    wall_s=basis.wall_s, interrupted=basis.interrupted, status=status, catalog=str(catalog.path),
                    rules=str(request.rules.path), root=str(catalog.root), jobs=request.jobs,
                    budget_s=request.cadence.budget_s, thresholds=request.thresholds_mode or "catalog",
                    changed_files=request.changed_files, harness_version=environment.__version__,
                    git=basis.git, host=host, versions=environment.package_versions(), shard=request.shard,
                )

            report, written = conclude(results, basis, run_dir, describe_run=describe_run, notes=secret_notes,
                                       json_files=[plan.json_path for plan in plans])
            warnings.extend(written)
    except BaseException:
        if not run_dir.published:
            # Keep the logs for the post-mortem; the next run removes the folder.
            print(f"harness: run not published; partial files in {run_dir.staging}", file=sys.stderr)
            run_dir.lock.unlink(missing_ok=True)
        raise
    from harness.verdict import publish

    warnings.extend(publish(report, run_dir.final, reports_dir=request.reports_dir, history_path=request.history_path,
                            catalog=catalog))
    return RunOutcome(report=report, directory=run_dir.final, exit_code=report.gate.exit_code, warnings=warnings)

