"""Run selectors as pytest subprocesses, concurrently within a CPU budget, and time them.

One process per selector, started from an argv list under a guard in its own session
(harness.process_tree: the whole tree ends with the harness, however the harness ends),
stdout/stderr straight to files in the run directory. The harness measures wall time and the
tree's CPU time itself: a killed pytest reports nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty, Queue
from typing import IO

from harness import process_tree
from harness.catalog import Catalog, Selector
from harness.selector_env import build_environment

# On a stop request or a timeout the group first gets SIGINT (pytest then writes a partial,
# "interrupted" JSON report); if it is still there after this many seconds, the guard kills the
# whole tree, and this many seconds later still, the group gets SIGKILL.
STOP_GRACE_S = 5.0


@dataclass(frozen=True)
class SelectorPlan:
    """Everything needed to start one selector's pytest process."""

    selector: Selector
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    directory: Path
    json_path: Path
    stdout_path: Path
    stderr_path: Path
    basetemp: Path

    @property
    def name(self) -> str:
        return self.selector.name


@dataclass
class ProcessOutcome:
    """How one pytest process ended, as seen from outside it."""

    name: str
    started: bool = False
    exit_code: int | None = None
    signal: str | None = None
    wall_s: float | None = None
    cpu_s: float | None = None  # user + system seconds of the whole process tree
    started_at: str | None = None
    finished_at: str | None = None
    timed_out: bool = False
    interrupted: bool = False
    start_error: str | None = None


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def exit_signal(returncode: int | None) -> str | None:
    """The name of the signal that ended a process (``SIGKILL``), from Popen's negative return code."""
    if returncode is None or returncode >= 0:
        return None
    return signal.Signals(-returncode).name if -returncode in signal.valid_signals() else str(-returncode)


# The pytest plugins the harness adds to every selector's process live in a folder of their own
# that goes on the child's PYTHONPATH: the environment under test needs only pytest,
# pytest-json-report and pytest-timeout, never the harness or its dependencies, and which
# interpreter runs pytest does not matter. The folder holds nothing but these uniquely named,
# standard-library-only modules, so it cannot shadow anything of the project under test.
PLUGIN_DIR = Path(__file__).resolve().parent / "pytest_plugins"
ENVIRONMENT_PLUGIN = "harness_pytest_plugin"


def with_plugin_path(env: dict[str, str]) -> dict[str, str]:
    """``env`` with :data:`PLUGIN_DIR` appended to ``PYTHONPATH`` (the project's own entries
    keep precedence). Applied to the final environment, after any filtering of it."""
    entries = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    if str(PLUGIN_DIR) not in entries:
        entries.append(str(PLUGIN_DIR))
    return {**env, "PYTHONPATH": os.pathsep.join(entries)}


def pytest_argv(catalog: Catalog, selector: Selector, python: str, directory: Path) -> list[str]:
    """The pytest command line of one selector (an argv list, never a shell string); it loads
    the harness's plugin, which the environment from :func:`with_plugin_path` makes importable."""
    argv = [python, "-m", "pytest", *catalog.pytest_args, *selector.args]
    argv += [
        "-p", "no:cacheprovider",
        # nargs='+': the option right after ends the list (see DESIGN, known behaviour).
        "--json-report-omit", "keywords", "streams", "log",
        "--json-report",
        f"--json-report-file={directory / 'pytest.json'}",
        f"--timeout={selector.test_timeout_s:g}",
        f"--timeout-method={selector.timeout_method}",
        f"--basetemp={directory / 'tmp'}",
        "-p", ENVIRONMENT_PLUGIN,
    ]
    if selector.reruns:
        argv += [f"--reruns={selector.reruns}"]
    return argv


def selector_environment(selector: Selector, run_id: str, base: dict[str, str] | None = None, *,
                         catalog: Catalog | None = None) -> dict[str, str]:
    """The selector's variables (``harness.selector_env``): the process basics, the documented
    pass-through and the catalog's ``pass_env`` from ``base`` (default: this process's), never a
    variable the alert routes name; the catalog's ``env``; the interpreter's ``bin/`` first on PATH."""
    python = catalog.python_executable(sys.executable) if catalog is not None else sys.executable
    return build_environment(
        selector.env, selector.name, run_id, python=python,
        explicit_python=catalog is not None and catalog.python is not None,
        pass_env=catalog.pass_env if catalog is not None else (), environ=base,
    )


def plan_selector(catalog: Catalog, selector: Selector, run_dir: Path, run_id: str) -> SelectorPlan:
    """Lay out a selector's files under ``run_dir/selectors/<name>/`` and build its command."""
    return plan_in(catalog, selector, run_dir / "selectors" / selector.name, run_id)


def plan_in(catalog: Catalog, selector: Selector, directory: Path, run_id: str) -> SelectorPlan:
    """A selector's plan with its files directly in ``directory``: the one way a pytest command
    line and environment are built (``harness run``, ``merge``'s shards, ``calibrate``, ``doctor``
    and ``reproduce`` all get theirs here), so every process sees the same plugins and variables."""
    directory.mkdir(parents=True, exist_ok=True)
    python = catalog.python_executable(sys.executable)
    return SelectorPlan(
        selector=selector,
        argv=pytest_argv(catalog, selector, python, directory),
        env=with_plugin_path(selector_environment(selector, run_id, catalog=catalog)),
        cwd=catalog.root,
        directory=directory,
        json_path=directory / "pytest.json",
        stdout_path=directory / "stdout.log",
        stderr_path=directory / "stderr.log",
        basetemp=directory / "tmp",
    )


def launch(plan: SelectorPlan, *, stdout: IO | int | None, stderr: IO | int | None) -> subprocess.Popen:
    """Start a plan's pytest process under the guard, in its own session (``process_tree``):
    stop it with ``process_tree.STOP_STEPS`` / ``stop_tree``. Raises OSError when it cannot start."""
    plan.basetemp.parent.mkdir(parents=True, exist_ok=True)
    return process_tree.start_guarded(plan.argv, cwd=plan.cwd, env=plan.env, stdout=stdout, stderr=stderr)


def run_plans(plans: list[SelectorPlan], jobs: int, progress: str, stop: threading.Event,
              on_launched: Callable[[], object] | None = None) -> dict[str, ProcessOutcome]:
    """Run ``plans`` with at most ``jobs`` CPUs busy and the live display ``progress`` (auto, rich,
    plain or none: ``harness.progress``), closed however the run ends. What every command that
    runs selectors calls (run, calibrate, doctor)."""
    from harness.progress import make_progress  # it imports this module

    sink = make_progress(progress, len(plans))
    try:
        return Runner(plans, jobs, sink, stop).run(on_launched=on_launched)
    finally:
        close = getattr(sink, "close", None)
        if close:
            close()


class ProgressSink:
    """What the runner tells about progress (see harness.progress for the displays)."""

    def started(self, plan: SelectorPlan) -> None: ...

    def finished(self, plan: SelectorPlan, outcome: ProcessOutcome) -> None: ...

    def tick(self, running: dict[str, tuple[SelectorPlan, float]]) -> None: ...


@dataclass
class _Running:
    plan: SelectorPlan
    process: subprocess.Popen
    started: float
    stop_sent: float | None = None
    steps_sent: int = 0
    timed_out: bool = False
    interrupted: bool = False
    handles: list = field(default_factory=list)


class Runner:
    """Runs a list of plans with at most ``jobs`` CPUs busy; honours a stop event."""

    def __init__(
        self,
        plans: list[SelectorPlan],
        jobs: int,
        progress: ProgressSink | None = None,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plans = plans
        self.jobs = max(1, jobs)
        self.progress = progress or ProgressSink()
        self.stop = stop or threading.Event()
        self.clock = clock
        self._done: Queue[tuple[str, int, float]] = Queue()

    def run(self, on_launched: Callable[[], object] | None = None) -> dict[str, ProcessOutcome]:
        """Run every plan; ``on_launched`` is called once, right after the first processes
        started: work that can overlap the tests starts then, not before them."""
        outcomes = {plan.name: ProcessOutcome(name=plan.name) for plan in self.plans}
        pending = list(self.plans)
        running: dict[str, _Running] = {}
        while pending or running:
            if self.stop.is_set():
                for item in running.values():
                    self._stop(item, interrupted=True)
                pending.clear()
            else:
                self._start_what_fits(pending, running, outcomes)
            if on_launched is not None:
                on_launched()
                on_launched = None
            self._wait_and_reap(running, outcomes)
            self._enforce_timeouts(running)
        return outcomes

    # -- scheduling -------------------------------------------------------------------------

    def _start_what_fits(self, pending: list[SelectorPlan], running: dict[str, _Running], outcomes: dict) -> None:
        busy = sum(item.plan.selector.cpus for item in running.values())
        for plan in list(pending):
            cpus = min(plan.selector.cpus, self.jobs)  # a wide selector still runs, alone
            if busy + cpus > self.jobs and running:
                continue
            pending.remove(plan)
            item = self._launch(plan, outcomes[plan.name])
            if item is not None:
                running[plan.name] = item
                busy += cpus

    def _launch(self, plan: SelectorPlan, outcome: ProcessOutcome) -> _Running | None:
        plan.directory.mkdir(parents=True, exist_ok=True)  # the logs open before the process starts
        stdout = open(plan.stdout_path, "wb")  # noqa: SIM115 - closed when the process is reaped
        stderr = open(plan.stderr_path, "wb")  # noqa: SIM115
        outcome.started_at = utc_now()
        start = self.clock()
        try:
            process = launch(plan, stdout=stdout, stderr=stderr)
        except OSError as exc:
            stdout.close()
            stderr.close()
            if not plan.cwd.is_dir():  # Popen blames the program for a missing working directory
                outcome.start_error = f"cannot start {plan.name}: the catalog's root {plan.cwd} is not a directory"
            else:
                outcome.start_error = f"cannot start {plan.argv[0]}: {exc.strerror or exc}"
            outcome.finished_at = utc_now()
            outcome.wall_s = 0.0
            self.progress.finished(plan, outcome)
            return None
        outcome.started = True
        item = _Running(plan=plan, process=process, started=start, handles=[stdout, stderr])
        threading.Thread(target=self._wait_for, args=(plan.name, process), daemon=True).start()
        self.progress.started(plan)
        return item

    def _wait_for(self, name: str, process: subprocess.Popen) -> None:
        finished = process_tree.wait_tree(process)
        self._done.put((name, finished.returncode, self.clock(), finished.cpu_s))

    def _wait_and_reap(self, running: dict[str, _Running], outcomes: dict) -> None:
        if not running:
            return
        try:
            name, code, end, cpu_s = self._done.get(timeout=0.1)
        except Empty:
            self.progress.tick({n: (item.plan, item.started) for n, item in running.items()})
            return
        item = running.pop(name)
        for handle in item.handles:
            handle.close()
        # The guard killed whatever the tests left behind; a guard killed itself leaves its group.
        process_tree.kill_group(item.process)
        outcome = outcomes[name]
        outcome.wall_s = round(end - item.started, 3)
        outcome.cpu_s = cpu_s
        outcome.finished_at = utc_now()
        outcome.timed_out = item.timed_out
        outcome.interrupted = item.interrupted
        outcome.exit_code = code
        outcome.signal = exit_signal(code)
        self.progress.finished(item.plan, outcome)

    def _enforce_timeouts(self, running: dict[str, _Running]) -> None:
        now = self.clock()
        for item in running.values():
            if item.stop_sent is None and now - item.started > item.plan.selector.timeout_s:
                item.timed_out = True
                self._stop(item, interrupted=False)
            elif item.stop_sent is not None and now - item.stop_sent > STOP_GRACE_S * item.steps_sent:
                self._next_stop_step(item)

    def _stop(self, item: _Running, *, interrupted: bool) -> None:
        if item.stop_sent is not None:
            return
        item.interrupted = item.interrupted or interrupted
        item.stop_sent = self.clock()
        self._next_stop_step(item)

    @staticmethod
    def _next_stop_step(item: _Running) -> None:
        """SIGINT, the guard's tear-down, SIGKILL to the group (process_tree.STOP_STEPS)."""
        if item.steps_sent < len(process_tree.STOP_STEPS):
            process_tree.STOP_STEPS[item.steps_sent](item.process)
            item.steps_sent += 1

