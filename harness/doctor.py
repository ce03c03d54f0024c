"""``harness doctor``: is this machine and configuration ready to run the catalog, and is it passing?

Doctor runs the generic checks for any catalog (catalog and rules valid, pytest and its plugins in
the catalog's interpreter, webhook variables set, history healthy) and the checks the catalog
declares under ``[doctor]`` (``harness/catalog.toml`` declares the brief's handoff checklist, §7:
torch and lightning, the canonical dataset, the mandated selectors, CONFIG-001 wiring, the
CPU-only pinning). Each check says what it looked at (evidence) and, when it does not hold, how to
fix it, the advice following the cause found. A check that cannot run says why (``unknown`` or
``skipped``) instead of passing silently; a required check holds when its status is ``pass``,
``warn`` or ``info``.

On a selector's result doctor agrees with the gate: a recorded run is judged by the alerts that run
fired and the gate's ``fail_on`` as recorded in history, a run made now by the same rules.

Nothing here imports torch, lightning or tensorflow: the imports, the dataset lookup and the
selectors run in subprocesses of the catalog's interpreter, and the selectors go through the harness
runner exactly as in ``harness run`` (but nothing is recorded: doctor only reads history).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

from harness.catalog import (
    Catalog,
    CpuOnlyCheck,
    DatasetCheck,
    GuardrailsCheck,
    PackageCheck,
    Selector,
    SelectorPassesCheck,
    SelectorRunsCheck,
)
from harness.errors import ConfigError
from harness.rule_schema import RuleSet
from harness.states import SEVERITY_RANK


class CheckStatus(StrEnum):
    """How one doctor check came out."""

    PASS = "pass"
    WARN = "warn"          # holds, with something worth knowing
    FAIL = "fail"
    UNKNOWN = "unknown"    # could not tell (no recorded run, no answer from the interpreter)
    SKIPPED = "skipped"    # not checked: what it needs did not load
    INFO = "info"          # informational, nothing to hold


HOLDING = frozenset({CheckStatus.PASS, CheckStatus.WARN, CheckStatus.INFO})
DEFAULT_FAIL_ON = "high"  # harness run's --fail-on default: what a run made by doctor is gated at
PROBE_MARK = "HARNESS-DOCTOR "
IMPORT_TIMEOUT_S = 300.0  # lightning alone takes 6-7 s on an idle 2-core machine, much more when it is busy
FIX_TIMEOUT_S = 600.0
PYTEST_PLUGINS = (("pytest", "pytest"), ("pytest_jsonreport", "pytest-json-report"), ("pytest_timeout", "pytest-timeout"))

# Runs in the catalog's interpreter: the modules named in argv[1] (a JSON list), imported for real,
# and whether pytest's plugins are there.
PACKAGES_PROBE = """
import importlib.util, json, sys
found = {"python": sys.version.split()[0], "executable": sys.executable, "modules": {}}
for name in json.loads(sys.argv[1]):
    try:
        module = __import__(name)
        found["modules"][name] = {"ok": True, "version": getattr(module, "__version__", None)}
    except BaseException as exc:
        found["modules"][name] = {"ok": False, "error": (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:300]}
for name in ("pytest", "pytest_jsonreport", "pytest_timeout"):
    found[name] = importlib.util.find_spec(name) is not None
try:
    import pytest
    found["pytest_version"] = pytest.__version__
except BaseException:
    pass
print(%r + json.dumps(found))
""" % PROBE_MARK

# Runs in the catalog's interpreter: calls the project's ``module:function`` (argv[1]), which returns a path.
CALL_PROBE = """
import importlib, json, sys, time
module, function = sys.argv[1].split(":")
start = time.perf_counter()
path = getattr(importlib.import_module(module), function)()
print(%r + json.dumps({"path": str(path), "seconds": round(time.perf_counter() - start, 2)}))
""" % PROBE_MARK


@dataclass(kw_only=True)
class Check:
    """One line of the doctor's table."""

    id: str
    title: str
    required: bool = True
    status: CheckStatus
    evidence: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return self.status in HOLDING

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "required": self.required, "status": str(self.status),
                "holds": self.holds, "evidence": self.evidence, "fix": self.fix, "details": self.details}


@dataclass
class DoctorRequest:
    catalog_path: Path
    rules_path: Path | None
    history: Any  # a Path, or a HistoryURL (PostgreSQL)
    routes_path: Path
    run: bool = False
    fix: bool = False
    jobs: int = 1
    progress: str = "auto"
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))


@dataclass
class DoctorReport:
    checks: list[Check]
    guardrails: list[dict[str, Any]] = field(default_factory=list)
    matrix: list[dict[str, Any]] = field(default_factory=list)
    work_dir: str | None = None
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(check.holds for check in self.checks if check.required)

    @property
    def exit_code(self) -> int:
        return 130 if self.interrupted else (0 if self.ok else 1)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "exit_code": self.exit_code, "checks": [c.to_json() for c in self.checks],
                "guardrails": self.guardrails, "escalation_matrix": self.matrix, "work_dir": self.work_dir}


# -- small helpers ----------------------------------------------------------------------------------


def version_tuple(text: str | None) -> tuple[int, ...] | None:
    """``"2.13.0+cpu"`` -> (2, 13, 0); None when it does not start with a number."""
    match = re.match(r"^\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?", text or "")
    if not match:
        return None
    return tuple(int(part) for part in match.groups() if part is not None)


def probe(python: str, code: str, cwd: Path, env: dict[str, str], timeout: float,
          *args: str) -> tuple[dict[str, Any] | None, str]:
    """Run ``python -c code args...``; its JSON answer (the line after PROBE_MARK), or None and why not."""
    try:
        done = subprocess.run([python, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,  # noqa: S603
                              timeout=timeout, check=False)
    except FileNotFoundError:
        return None, f"interpreter {python} not found"
    except OSError as exc:
        return None, f"cannot start {python}: {exc.strerror or exc}"
    except subprocess.TimeoutExpired:
        return None, f"no answer from {python} within {timeout:g} s"
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(PROBE_MARK):
            try:
                return json.loads(line[len(PROBE_MARK):]), ""
            except ValueError:
                break
    lines = [line.strip() for line in (done.stderr or done.stdout).splitlines() if line.strip()]
    return None, (lines[-1][:300] if lines else f"{python} exited with status {done.returncode}")


def probe_env(environ: dict[str, str]) -> dict[str, str]:
    env = dict(environ)
    env.update(CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL=env.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    return env


def age_text(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "at an unknown time"
    seconds = max(0.0, (now - moment).total_seconds())
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _parse_time(text: str | None) -> datetime | None:
    try:
        return datetime.fromisoformat((text or "").replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:g} s"


def _pip(python: str, fix: str) -> str:
    """A fix that starts with ``pip`` as the catalog's interpreter runs it (that is where it is missing)."""
    return re.sub(r"^pip\b", f"{python} -m pip", fix)


# -- checks: packages --------------------------------------------------------------------------------


def package_checks(python: str, cwd: Path, environ: dict[str, str],
                   declared: list[PackageCheck] | tuple[PackageCheck, ...] = ()) -> tuple[list[Check], Check]:
    """The declared packages (imported for real by the catalog's interpreter) and pytest's plugins there."""
    modules = [spec.module for spec in declared]
    found, why = probe(python, PACKAGES_PROBE, cwd, probe_env(environ), IMPORT_TIMEOUT_S, json.dumps(modules))
    plugins = partial(Check, id="pytest_plugins", title="pytest, pytest-json-report, pytest-timeout in the catalog's interpreter")
    install_plugins = f"{python} -m pip install pytest pytest-json-report pytest-timeout"
    if found is None:
        reason = f"cannot ask {python}: {why}"
        unknown = [Check(id=spec.id or spec.module, title=_package_title(spec), status=CheckStatus.UNKNOWN,
                         evidence=reason, fix="fix the catalog's `python` (or the environment it runs in)")
                   for spec in declared]
        return unknown, plugins(status=CheckStatus.UNKNOWN, evidence=reason, fix="fix the catalog's `python`")
    where = f"python {found.get('python')} ({found.get('executable')})"
    rows = [_package_check(spec, (found.get("modules") or {}).get(spec.module) or {}, where, python, found)
            for spec in declared]
    missing = [label for key, label in PYTEST_PLUGINS if not found.get(key)]
    if missing:
        row = plugins(status=CheckStatus.FAIL, evidence=f"missing in {where}: {', '.join(missing)}", fix=install_plugins)
    else:
        row = plugins(status=CheckStatus.PASS,
                      evidence=f"pytest {found.get('pytest_version')} with pytest-json-report and pytest-timeout in {where}")
    return rows, row


def _package_title(spec: PackageCheck) -> str:
    return spec.title or f"{spec.module}" + (f" >= {spec.minimum}" if spec.minimum else "") + " importable"


def _package_check(spec: PackageCheck, answer: dict[str, Any], where: str, python: str, found: dict[str, Any]) -> Check:
    row = partial(Check, id=spec.id or spec.module, title=_package_title(spec))
    fix = _pip(python, spec.fix or f"pip install {spec.module}" + (f">={spec.minimum}" if spec.minimum else ""))
    if not answer.get("ok"):
        return row(status=CheckStatus.FAIL, evidence=f"import {spec.module} failed in {where}: {answer.get('error')}",
                   fix=fix, details={"python": found.get("executable")})
    version = answer.get("version")
    details = {"version": version, "python": found.get("executable")}
    if spec.minimum is None:
        return row(status=CheckStatus.PASS, evidence=f"{spec.module} {version} imports in {where}", details=details)
    parsed, minimum = version_tuple(version), version_tuple(spec.minimum)
    good = parsed is not None and minimum is not None and parsed[:len(minimum)] >= minimum
    evidence = f"{spec.module} {version} imports in {where}" + ("" if good else f"; needs >= {spec.minimum}")
    return row(status=CheckStatus.PASS if good else CheckStatus.FAIL, evidence=evidence, fix="" if good else fix,
               details=details)


# -- checks: a dataset the project locates ---------------------------------------------------------------


def npz_keys(path: Path) -> list[str]:
    """The arrays of an .npz (a zip of ``<key>.npy``), read from its directory, no numpy needed."""
    with zipfile.ZipFile(path) as archive:
        return [name.removesuffix(".npy") for name in archive.namelist() if name.endswith(".npy")]


def dataset_check(spec: DatasetCheck, python: str, cwd: Path, environ: dict[str, str], fix: bool) -> Check:
    """The file the project's ``locate`` function names: present, a readable .npz with ``keys``."""
    row = partial(Check, id=spec.id, title=spec.title)
    env = probe_env(environ)
    found, why = probe(python, CALL_PROBE, cwd, env, 120, spec.locate)
    if found is None:
        return row(status=CheckStatus.UNKNOWN, evidence=f"cannot locate it: {spec.locate} does not run in {python}: {why}",
                   fix=f"install the project in that interpreter (this repository: {python} -m pip install -e '.[ptycho,dev]')")
    path = Path(found["path"])
    beside = f" (it stands in for {spec.stands_in_for})" if spec.stands_in_for else ""
    generated = None
    if not path.exists() and fix and spec.generate:
        made, why = probe(python, CALL_PROBE, cwd, env, FIX_TIMEOUT_S, spec.generate)
        if made is None:
            return row(status=CheckStatus.FAIL, evidence=f"{path} is missing and generating it failed: {why}",
                       fix=f"run {spec.generate} yourself and read its error", details={"path": str(path)})
        generated = made.get("seconds")
    regenerate = f"harness doctor --fix (runs {spec.generate})" if spec.generate else "restore it"
    if not path.exists():
        return row(status=CheckStatus.FAIL, evidence=f"{path} is missing{beside}", fix=regenerate, details={"path": str(path)})
    try:
        keys = npz_keys(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return row(status=CheckStatus.FAIL, evidence=f"{path} is not a readable .npz: {exc}",
                   fix=f"delete it, then {regenerate}", details={"path": str(path)})
    missing = [" or ".join(group) for group in spec.keys if not any(key in keys for key in group)]
    size_mb = path.stat().st_size / 1e6
    if missing:
        return row(status=CheckStatus.FAIL, evidence=f"{path} ({size_mb:.1f} MB) lacks {', '.join(missing)}",
                   fix=f"delete it, then {regenerate}", details={"path": str(path), "keys": keys})
    made = f"generated now in {generated:g} s; " if generated is not None else ""
    return row(status=CheckStatus.PASS, evidence=f"{made}{path} ({size_mb:.1f} MB; {', '.join(sorted(keys))}){beside}",
               details={"path": str(path), "bytes": path.stat().st_size, "generated": generated is not None})


# -- checks: selectors ----------------------------------------------------------------------------------


@dataclass
class FiredAlert:
    """An alert a selector's run fired, as the gate saw it."""

    trigger: str
    severity: str
    summary: str


@dataclass
class SelectorRun:
    """One selector's result, run now or read from history, in the terms the checks need."""

    state: str
    reason: str | None
    runtime_s: float | None
    measure: str | None
    passed: int = 0
    total: int = 0
    source: str = ""            # "run now" or "run <key>, <age>, host <key>"
    other_host: bool = False
    logs: str | None = None
    first_failure: str | None = None
    failed_stage: str | None = None  # of the first failing test: setup, call or teardown
    alerts: list[FiredAlert] = field(default_factory=list)
    fail_on: str | None = None  # the gate's threshold; None when no rules judged the run

    @property
    def blocking(self) -> list[FiredAlert]:
        """The alerts that failed (or would fail) the gate."""
        if self.fail_on is None:
            return []
        return [a for a in self.alerts if SEVERITY_RANK.get(a.severity, 0) >= SEVERITY_RANK[self.fail_on]]


def run_selectors(catalog: Catalog, selectors: list[Selector], jobs: int, progress: str, stop: threading.Event,
                  rules: RuleSet | None = None, host_key: str = "") -> tuple[dict[str, SelectorRun], Path]:
    """Run the selectors through the harness runner (as `harness run` does) in a scratch folder, and
    judge each by the rules as the gate would (at ``DEFAULT_FAIL_ON``)."""
    from harness.rule_engine import runtime_of
    from harness.runner import plan_selector, run_plans
    from harness.selector_result import ScratchDirectory, selector_result
    from harness.verdict import judge_selector

    work = Path(tempfile.mkdtemp(prefix="harness-doctor-"))
    scratch = ScratchDirectory(work)
    run_id = f"doctor-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    plans = [plan_selector(catalog, selector, work, run_id) for selector in selectors]
    outcomes = run_plans(plans, jobs, progress, stop)
    found = {}
    for plan in plans:
        result = selector_result(plan, outcomes[plan.name], scratch)
        alerts: list[FiredAlert] = []
        if rules is not None:
            judged = judge_selector(result, plan.selector, rules=rules, history=None, host_key=host_key,
                                    cwd=catalog.root, display_path=scratch.relative)
            alerts = [FiredAlert(a.trigger, a.severity, a.summary) for a in judged.alerts]
        runtime, measure = runtime_of(result, plan.selector.runtime.measure)
        failing = next((t for t in result.tests if t.outcome in ("failed", "error")), None)
        found[plan.name] = SelectorRun(
            state=str(result.state), reason=result.reason, runtime_s=runtime, measure=measure,
            passed=result.counts.passed, total=result.counts.total, source="run now",
            logs=str(plan.stdout_path), first_failure=None if failing is None else _failure_line(
                failing.nodeid, failing.message, failing.outcome),
            failed_stage=None if failing is None else failing.failed_stage,
            alerts=alerts, fail_on=DEFAULT_FAIL_ON if rules is not None else None,
        )
    return found, work


def _failure_line(nodeid: str, message: str | None, outcome: str) -> str:
    first = (message or "").strip().splitlines()
    return f"{nodeid}: {first[0][:200] if first else outcome}"


@contextmanager
def reading(history: Any) -> Iterator[Any]:
    """A connection that only reads: SQLite opened read-only (doctor never migrates unasked), or the
    PostgreSQL history through the core's store."""
    from harness import history_backend

    if history_backend.is_url(history):
        from harness.history import HistoryStore

        with HistoryStore.open(history, create=False) as store:
            yield store.db
        return
    connection = sqlite3.connect(f"file:{Path(history)}?mode=ro", uri=True, timeout=30)
    connection.row_factory = sqlite3.Row
    try:
        yield connection
    finally:
        connection.close()


def recorded_run(history: Any, selector: str, host_key: str, now: datetime) -> SelectorRun | None:
    """The selector's latest recorded result (that ran), preferring this machine's host key, with the
    alerts that run fired on it and the gate's threshold, as history recorded them."""
    with reading(history) as db:
        rows = db.execute(
            """
            SELECT r.id AS run_id, r.run_key, r.started_at, r.host_key, r.fail_on, sr.state, sr.reason,
                   sr.runtime_s, sr.runtime_measure, sr.total, sr.passed, sr.id AS result_id
            FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
            WHERE sr.selector = ? AND sr.state != 'not_run'
            ORDER BY r.started_at DESC, r.id DESC LIMIT 200
            """,
            (selector,),
        ).fetchall()
        if not rows:
            return None
        row = next((r for r in rows if r["host_key"] == host_key), rows[0])
        failing = db.execute(
            "SELECT nodeid, message, outcome, failed_stage FROM test_results WHERE selector_result_id = ? "
            "AND outcome IN ('failed', 'error') ORDER BY id LIMIT 1", (row["result_id"],)).fetchone()
        alerts = db.execute(
            "SELECT trigger_id, severity, summary FROM alerts WHERE run_id = ? AND selector = ? AND status = 'firing' "
            "ORDER BY id", (row["run_id"], selector)).fetchall()
    other = row["host_key"] != host_key
    source = f"run {row['run_key']}, {age_text(_parse_time(row['started_at']), now)}, host {row['host_key']}"
    return SelectorRun(
        state=row["state"], reason=row["reason"], runtime_s=row["runtime_s"], measure=row["runtime_measure"],
        passed=row["passed"] or 0, total=row["total"] or 0, source=source, other_host=other,
        first_failure=None if failing is None else _failure_line(failing["nodeid"], failing["message"], failing["outcome"]),
        failed_stage=None if failing is None else failing["failed_stage"],
        alerts=[FiredAlert(a["trigger_id"], a["severity"], a["summary"] or "") for a in alerts],
        fail_on=row["fail_on"] if row["fail_on"] in SEVERITY_RANK else DEFAULT_FAIL_ON,
    )


def _limit(selector: Selector, which: str, history: Any, host_key: str) -> tuple[float | None, str]:
    """The runtime limit doctor holds the selector to (catalog thresholds, calibrated in baseline mode)."""
    from harness.thresholds import resolve_thresholds

    calibrated = None
    if selector.runtime.mode == "baseline" and history is not None:
        try:
            with reading(history) as db:
                row = db.execute("SELECT value FROM baselines WHERE selector = ? AND host_key = ? AND metric = ? "
                                 "ORDER BY id DESC LIMIT 1", (selector.name, host_key, "runtime")).fetchone()
            calibrated = None if row is None else float(row[0])
        except (ConfigError, sqlite3.DatabaseError):
            calibrated = None
    thresholds = resolve_thresholds(selector.runtime, calibrated)
    return thresholds.named(which), thresholds.mode


def advice(run: SelectorRun, selector: Selector, test_failed: str | None = None) -> str:
    """How to fix what made the selector's run not pass, by its cause; ``test_failed`` is the advice
    for a test that failed in its call (the code under test), when the catalog gives one."""
    name, args = selector.name, " ".join(selector.args)
    state = run.state
    if state in ("usage_error", "no_tests"):
        return (f"pytest found nothing to run for [selectors.{name}] args ({args}): check that the node ids "
                f"exist (pytest --collect-only -q {args}) and correct the catalog")
    if state == "collection_error":
        return f"a test module does not import ({run.first_failure or run.reason}): fix that import or its dependency"
    if state in ("timeout", "report_missing", "report_invalid", "truncated", "interrupted", "internal_error",
                 "warnings_exceeded"):
        return (f"its pytest process did not finish normally: read {run.logs or 'the run directory`s stdout.log'}, "
                f"then harness reproduce --selector {name}")
    if state in ("skipped", "did_not_run", "not_run"):
        return ("its tests did not run: see the skip reasons in the run's summary; run it where they can run, "
                "or mark the skip expected in the catalog")
    if state == "setup_error" or run.failed_stage in ("setup", "teardown"):
        return (f"a fixture failed in {run.failed_stage or 'setup'} ({run.first_failure or run.reason}): fix the "
                "test's set-up (a missing file, an import), not the code under test")
    if test_failed:
        return test_failed
    return f"harness reproduce --selector {name} (brief §3.5: failure.log, env.txt, fix_plan entry)"


def selector_passes_check(spec: SelectorPassesCheck, catalog: Catalog, run: SelectorRun | None, history: Any,
                          host_key: str, why_not: str | None = None) -> Check:
    """The selector's run passed the gate, within the catalog's ``limit`` runtime threshold."""
    selector = catalog.selectors[spec.selector]
    limit, mode = _limit(selector, spec.limit, history, host_key)
    what = {"critical": "within", "warning": "in under"}[spec.limit]
    row = partial(Check, id=spec.id or spec.selector, title=f"{spec.selector} passes" + (f" {what} {limit:g} s" if limit else ""))
    if run is None:
        return row(status=CheckStatus.UNKNOWN, evidence=why_not or "no recorded run of it in history: cannot tell",
                   fix=f"harness doctor --run (or harness run --cadence manual --selector {spec.selector})")
    measure = run.measure or "wall"
    runtime = "-" if run.runtime_s is None else f"{run.runtime_s:.1f} s"
    details = {"state": run.state, "runtime_s": run.runtime_s, "measure": run.measure, "limit_s": limit,
               "threshold_mode": mode, "source": run.source, "passed": run.passed, "total": run.total,
               "alerts": [a.trigger for a in run.alerts], "fail_on": run.fail_on}
    outcome = f"{run.state} ({run.reason}) [{run.source}]" + (f"; first failure: {run.first_failure}" if run.first_failure else "")
    outcome += f"; log: {run.logs}" if run.logs else ""
    blocking = run.blocking
    if blocking:
        fired = "; ".join(f"{a.trigger} ({a.severity}): {a.summary}" for a in blocking)
        runtime_only = all(a.trigger.startswith("RT-") for a in blocking)
        fix = (f"profile the slow test (harness history --selector {spec.selector}; brief §2.3 runtime profile)"
               if runtime_only else advice(run, selector))
        return row(status=CheckStatus.FAIL, evidence=f"{outcome}; the gate fails on it: {fired}", fix=fix, details=details)
    if run.state != "passed":
        if run.fail_on is None:  # no rules judged it: it did not pass, that is all doctor knows
            return row(status=CheckStatus.FAIL, evidence=outcome, fix=advice(run, selector), details=details)
        return row(status=CheckStatus.WARN, evidence=f"{outcome}; the gate let it through (no alert at or above {run.fail_on})",
                   fix=advice(run, selector), details=details)
    base = f"{run.passed}/{run.total} tests passed in {runtime} ({measure}"
    base += f"; limit {limit:g} s, {mode})" if limit else "; the catalog sets no limit)"
    base += f" [{run.source}]"
    if limit is not None and run.runtime_s is not None and run.runtime_s > limit:
        # over the critical limit RT-001 (critical) fails the gate; over the warning limit RT-002 warns
        return row(status=CheckStatus.FAIL if spec.limit == "critical" else CheckStatus.WARN,
                   evidence=f"{base}: over the limit",
                   fix=f"profile the slow test (harness history --selector {spec.selector}; brief §2.3 runtime profile)",
                   details=details)
    if run.other_host:
        return row(status=CheckStatus.WARN, evidence=f"{base}: recorded on another machine",
                   fix="harness doctor --run to check this one", details=details)
    suspicious, _ = _limit(selector, "suspicious", history, host_key)
    if suspicious is not None and run.runtime_s is not None and run.runtime_s < suspicious:
        return row(status=CheckStatus.WARN, evidence=f"{base}: under {suspicious:g} s, suspiciously fast (RT-003)",
                   fix="check that the test really did its work", details=details)
    return row(status=CheckStatus.PASS, evidence=base, details=details)


def selector_runs_check(spec: SelectorRunsCheck, catalog: Catalog, run: SelectorRun | None) -> Check:
    """The selector, run now, passes (a wiring test such as CONFIG-001)."""
    selector = catalog.selectors[spec.selector]
    row = partial(Check, id=spec.id, title=spec.title)
    test = " ".join(arg for arg in selector.args if arg not in ("-v", "-vv", "-q"))
    details = {"selector": spec.selector}
    if run is None:
        return row(status=CheckStatus.UNKNOWN, evidence="not run (interrupted)",
                   fix=f"harness run --cadence manual --selector {spec.selector}", details=details)
    details["state"] = run.state
    if run.state == "passed":
        return row(status=CheckStatus.PASS, evidence=f"{run.passed}/{run.total} passed: {test}", details=details)
    evidence = f"{run.state} ({run.reason}): {test}"
    if run.first_failure:
        evidence += f"; first failure: {run.first_failure}"
    if run.logs:
        evidence += f"; log: {run.logs}"
    return row(status=CheckStatus.FAIL, evidence=evidence, fix=advice(run, selector, spec.fix), details=details)


# -- checks: guardrails, escalation matrix, CI environment ------------------------------------------------


def guardrails(catalog: Catalog) -> list[dict[str, Any]]:
    """Every selector's runtime thresholds as configured (brief §2.3)."""
    rows = []
    for selector in catalog.selectors.values():
        spec = selector.runtime
        if not any((spec.critical_s, spec.warning_s, spec.suspicious_below_s, spec.baseline_s)) and spec.mode == "absolute":
            continue
        rows.append({"selector": selector.name, "mode": spec.mode, "measure": spec.measure,
                     "critical_s": spec.critical_s, "warning_s": spec.warning_s,
                     "suspicious_below_s": spec.suspicious_below_s, "baseline_s": spec.baseline_s,
                     "factors": [spec.critical_factor, spec.warning_factor, spec.suspicious_factor],
                     "test_timeout_s": selector.test_timeout_s, "timeout_s": selector.timeout_s})
    return rows


def escalation_matrix(rules: RuleSet) -> list[dict[str, Any]]:
    """The trigger table as configured (brief §3.3/§3.4): who is told, how fast."""
    return [{"trigger": t.id, "title": t.title, "severity": t.severity, "owner": t.owner, "sla": t.sla}
            for t in rules.triggers]


def guardrails_check(spec: GuardrailsCheck, catalog: Catalog, rules: RuleSet | None) -> Check:
    """Informational: the selector's runtime guardrails as configured, and the triggers the rules must carry."""
    row = partial(Check, id=spec.id, title="Runtime guardrails and escalation matrix (optional)", required=False)
    if rules is None:
        return row(status=CheckStatus.SKIPPED, evidence="the rules did not load", fix="see the catalog row")
    notes = []
    spec_runtime = catalog.selectors[spec.selector].runtime
    missing = [name for name, value in (("critical_s", spec_runtime.critical_s), ("warning_s", spec_runtime.warning_s),
                                        ("suspicious_below_s", spec_runtime.suspicious_below_s)) if value is None]
    if missing and spec_runtime.mode == "absolute":
        notes.append(f"{spec.selector} has no {', '.join(missing)}")
    summary = (f"{spec.selector}: hard limit {_secs(spec_runtime.critical_s)} (RT-001), warning "
               f"{_secs(spec_runtime.warning_s)} x3 runs (RT-002), suspicious < {_secs(spec_runtime.suspicious_below_s)} "
               f"(RT-003), baseline {_secs(spec_runtime.baseline_s)}, mode {spec_runtime.mode}; ")
    ids = {t.id for t in rules.triggers}
    absent = [t for t in spec.triggers if t not in ids]
    if absent:
        notes.append(f"rules lack {', '.join(absent)}")
    evidence = f"{summary}{len(rules.triggers)} triggers in {rules.path} (tables below)"
    if notes:
        return row(status=CheckStatus.WARN, evidence=f"{evidence}; " + "; ".join(notes),
                   fix="restore the thresholds in the catalog and the triggers in the rules")
    return row(status=CheckStatus.INFO, evidence=evidence)


def cpu_only_check(spec: CpuOnlyCheck, catalog: Catalog, environ: dict[str, str]) -> Check:
    """CUDA_VISIBLE_DEVICES="" pinned where the project wants a CPU-only worker."""
    row = partial(Check, id=spec.id, title='CPU-only CI environment (CUDA_VISIBLE_DEVICES="")')
    pinned, inherit, gpu = [], [], []
    for selector in catalog.selectors.values():
        value = selector.env.get("CUDA_VISIBLE_DEVICES")
        (pinned if value == "" else inherit if value is None else gpu).append(
            selector.name if value in ("", None) else f"{selector.name}={value!r}")
    shell = environ.get("CUDA_VISIBLE_DEVICES")
    parts = [f'pinned to "" for {len(pinned)} selector(s)']
    if gpu:
        parts.append(f"GPU by design: {', '.join(gpu)}")
    if inherit:
        parts.append(f"inherit the environment: {', '.join(inherit)}")
    parts.append("this shell: " + ("unset" if shell is None else f'CUDA_VISIBLE_DEVICES="{shell}"'))
    workflows, unpinned = _workflows_pinning(catalog.root)
    if workflows:
        parts.append(f"workflows pinning it: {', '.join(workflows)}" + (f"; not: {', '.join(unpinned)}" if unpinned else ""))
    evidence = "; ".join(parts)
    details = {"pinned": pinned, "inherit": inherit, "gpu": gpu, "shell": shell, "workflows_unpinned": unpinned}
    loose = [name for name in spec.selectors if catalog.selectors[name].env.get("CUDA_VISIBLE_DEVICES") != ""]
    if loose:
        return row(status=CheckStatus.FAIL, evidence=evidence, details=details,
                   fix=" and ".join(f"set env = {{ CUDA_VISIBLE_DEVICES = \"\" }} on [selectors.{name}]" for name in loose)
                   + " (or in [defaults])")
    if inherit or unpinned:
        return row(status=CheckStatus.WARN, evidence=evidence, details=details,
                   fix='pin CUDA_VISIBLE_DEVICES = "" in [defaults] env (and the workflows\' env)')
    return row(status=CheckStatus.PASS, evidence=evidence, details=details)


def _workflows_pinning(root: Path) -> tuple[list[str], list[str]]:
    folder = root / ".github" / "workflows"
    if not folder.is_dir():
        return [], []
    import yaml

    from harness.yaml_loader import safe_load

    pinned, unpinned = [], []
    for path in sorted(folder.glob("*.yml")):
        try:
            document = safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            unpinned.append(f"{path.name} (unreadable)")
            continue
        env = document.get("env") or {}
        (pinned if isinstance(env, dict) and env.get("CUDA_VISIBLE_DEVICES") == "" else unpinned).append(path.stem)
    return pinned, unpinned


def webhooks_check(routes_path: Path, environ: dict[str, str]) -> Check:
    """The variables alerts/routes.yaml names: set or not (names only, never values)."""
    from harness.alerts.routes import load_routes

    title = "Webhook variables named by the routes"
    row = partial(Check, id="webhooks", title=title)
    if not Path(routes_path).exists():  # as for `harness run`: the alerts wait in the outbox, nothing is lost
        return row(status=CheckStatus.WARN, evidence=f"no routes file at {routes_path}: alerts are kept in the outbox, "
                   "not sent", fix="write one (docs/alerts.md) and pass --routes or set HARNESS_ROUTES")
    try:
        routes = load_routes(routes_path)
    except ConfigError as exc:
        return row(status=CheckStatus.FAIL, evidence=str(exc).splitlines()[0],
                   fix=f"fix {routes_path} (docs/alerts.md)")
    present, missing = [], []
    for sink in routes.sinks.values():
        for name in (sink.url_env, sink.secret_env):
            if name:
                (present if environ.get(name) else missing).append(name)
    present, missing = sorted(set(present)), sorted(set(missing))
    parts = [f"{routes.path}: {len(routes.sinks)} sink(s)", f"set: {', '.join(present) or 'none'}",
             f"missing: {', '.join(missing) or 'none'}"]
    details = {"routes": str(routes.path), "set": present, "missing": missing}
    from harness.alerts.delivery import notifications_disabled

    if notifications_disabled(environ):
        return row(status=CheckStatus.WARN, evidence="; ".join(parts) + "; HARNESS_NOTIFY=off: nothing is sent",
                   fix="unset HARNESS_NOTIFY to deliver alerts", details=details)
    if missing:
        return row(status=CheckStatus.WARN, evidence="; ".join(parts) + " (their messages wait in the outbox)",
                   fix="set them (CI: repository secrets passed through the workflow's env), then `harness alerts flush`",
                   details=details)
    return row(status=CheckStatus.PASS, evidence="; ".join(parts), details=details)


# -- checks: history ----------------------------------------------------------------------------------------


def history_check(history: Any, fix: bool) -> Check:
    """Reachable, ``PRAGMA integrity_check`` ok, schema version current (read-only; ``fix`` migrates)."""
    from harness import history_backend
    from harness.history_schema import latest_version

    title = "History database reachable and healthy"
    row = partial(Check, id="history", title=title)
    latest = latest_version()
    if history_backend.is_url(history):
        return _postgres_history_check(history, fix, title, latest)
    path = Path(history)
    if not path.exists():
        return row(status=CheckStatus.WARN, evidence=f"no history database at {path} yet",
                   fix="the first `harness run` creates it", details={"path": str(path)})
    try:
        version, runs, last, integrity = _read_sqlite(path)
    except sqlite3.DatabaseError as exc:
        return row(status=CheckStatus.FAIL, evidence=f"{path}: not a usable SQLite database: {exc}",
                   fix="move it aside; the next `harness run` starts a new one (CI: restore an older cache entry)",
                   details={"path": str(path)})
    migrated = False
    if integrity != ["ok"]:
        return row(status=CheckStatus.FAIL, evidence=f"{path}: integrity_check: {'; '.join(integrity[:3])}",
                   fix=f"sqlite3 {path} '.recover' > recovered.sql, or restore a backup",
                   details={"path": str(path)})
    if version < latest and fix:
        from harness.history import HistoryStore

        HistoryStore.open(path).close()  # applies the pending migrations in one transaction
        version, runs, last, integrity = _read_sqlite(path)
        migrated = True
    evidence = (f"{path}: integrity ok, schema version {version}" + (" (migrated now)" if migrated else "")
                + f", {runs} run(s)" + (f", newest {last}" if last else ""))
    details = {"path": str(path), "schema_version": version, "latest": latest, "runs": runs}
    if version > latest:
        return row(status=CheckStatus.FAIL, evidence=f"{evidence}; newer than this harness ({latest})",
                   fix="upgrade the harness (pip install --upgrade ptychopinn; in a checkout pip install -e .)", details=details)
    if version < latest:
        return row(status=CheckStatus.WARN, evidence=f"{evidence}; this harness expects {latest}",
                   fix="harness doctor --fix (or any harness command that writes history) migrates it",
                   details=details)
    return row(status=CheckStatus.PASS, evidence=evidence + " (current)", details=details)


def _read_sqlite(path: Path) -> tuple[int, int, str | None, list[str]]:
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        integrity = [row[0] for row in connection.execute("PRAGMA integrity_check").fetchall()]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = 0
        if "schema_migrations" in tables:
            version = int(connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0)
        runs, last = 0, None
        if "runs" in tables:
            runs, last = connection.execute("SELECT COUNT(*), MAX(started_at) FROM runs").fetchone()
        return version, int(runs), last, integrity
    finally:
        connection.close()


def _postgres_history_check(history: Any, fix: bool, title: str, latest: int) -> Check:
    from harness import history_backend

    row = partial(Check, id="history", title=title)
    try:
        connection = history_backend.connect(history)
    except ConfigError as exc:
        return row(status=CheckStatus.FAIL, evidence=str(exc),
                   fix="check the server, the URL and PGPASSWORD / ~/.pgpass")
    try:
        exists = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
        version = int(connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0) if exists else 0
    except sqlite3.DatabaseError as exc:
        return row(status=CheckStatus.FAIL, evidence=f"{history}: {exc}",
                   fix="check the database and the user's rights")
    finally:
        connection.close()
    evidence = f"{history}: reachable, schema version {version} (integrity_check is SQLite's; the server checks its own pages)"
    if version < latest and fix:
        from harness.history import HistoryStore

        HistoryStore.open(history).close()
        return row(status=CheckStatus.PASS, evidence=f"{evidence}; migrated to {latest} now")
    if version != latest:
        return row(status=CheckStatus.WARN if version < latest else CheckStatus.FAIL,
                   evidence=f"{evidence}; this harness expects {latest}",
                   fix="harness doctor --fix" if version < latest else "upgrade the harness")
    return row(status=CheckStatus.PASS, evidence=evidence + " (current)")


# -- everything -----------------------------------------------------------------------------------------


def diagnose(request: DoctorRequest) -> DoctorReport:
    """Run the generic checks and the catalog's declared ones (independent ones concurrently), in order:
    the catalog, its packages, pytest's plugins, the other declared checks, webhooks, history."""
    from harness.catalog import load_catalog
    from harness.environment import host_info
    from harness.locations import DEFAULT_RULES
    from harness.pipeline import StopSignals
    from harness.rule_schema import load_rules

    now = datetime.now(UTC)
    environ = request.environ
    catalog: Catalog | None = None
    rules: RuleSet | None = None
    catalog_row = partial(Check, id="catalog", title="Catalog and rules valid")
    try:
        catalog = load_catalog(request.catalog_path)
        rules = load_rules(request.rules_path or catalog.rules or DEFAULT_RULES)
        problems = rules.check_selectors(set(catalog.selectors))
        declared = len(catalog.doctor.checks)
        check_catalog = catalog_row(
            status=CheckStatus.WARN if problems else CheckStatus.PASS,
            evidence=f"{catalog.path} ({len(catalog.selectors)} selectors, cadences {', '.join(catalog.cadences)}, "
                     f"{declared} declared doctor check(s)); {rules.path} ({len(rules.triggers)} triggers)"
                     + (f"; {problems[0]}" if problems else ""),
            fix="correct the scope names" if problems else "")
    except ConfigError as exc:
        where = "rules" if catalog is not None else "catalog"
        check_catalog = catalog_row(
            status=CheckStatus.FAIL, evidence=str(exc).splitlines()[0] + " (its declared checks cannot run)",
            fix=f"fix the {where} file (`harness {where} --catalog ...` shows every problem)")
        if catalog is not None and rules is None:
            catalog = None
    python = catalog.python_executable(sys.executable) if catalog is not None else sys.executable
    cwd = catalog.root if catalog is not None else Path.cwd()
    host_key = host_info().host_key
    declared_checks = catalog.doctor.checks if catalog is not None else ()
    packages = [c for c in declared_checks if isinstance(c, PackageCheck)]

    to_run: list[Selector] = []
    for spec in declared_checks:
        if isinstance(spec, SelectorRunsCheck) or (isinstance(spec, SelectorPassesCheck) and request.run):
            if catalog.selectors[spec.selector] not in to_run:  # type: ignore[union-attr]
                to_run.append(catalog.selectors[spec.selector])  # type: ignore[union-attr]

    runs: dict[str, SelectorRun] = {}
    work: Path | None = None
    with StopSignals() as stop, ThreadPoolExecutor(max_workers=4) as pool:
        probed = pool.submit(package_checks, python, cwd, environ, packages)
        datasets = [(spec, pool.submit(dataset_check, spec, python, cwd, environ, request.fix))
                    for spec in declared_checks if isinstance(spec, DatasetCheck)]
        history_row = pool.submit(history_check, request.history, request.fix)
        if to_run:
            runs, work = run_selectors(catalog, to_run, request.jobs, request.progress, stop.event,  # type: ignore[arg-type]
                                       rules, host_key)
        package_rows, plugins_row = probed.result()
        dataset_rows = {id(spec): future.result() for spec, future in datasets}
        check_history = history_row.result()
        interrupted = stop.received is not None

    history_for_limits = request.history if _history_exists(request.history) else None
    rows = [check_catalog, *package_rows, plugins_row]
    for spec in declared_checks:
        if isinstance(spec, DatasetCheck):
            rows.append(dataset_rows[id(spec)])
        elif isinstance(spec, SelectorPassesCheck):
            run, why_not = _selector_run(spec.selector, runs, request.history, check_history, host_key, now)
            rows.append(selector_passes_check(spec, catalog, run, history_for_limits, host_key, why_not))  # type: ignore[arg-type]
        elif isinstance(spec, SelectorRunsCheck):
            rows.append(selector_runs_check(spec, catalog, runs.get(spec.selector)))  # type: ignore[arg-type]
        elif isinstance(spec, GuardrailsCheck):
            rows.append(guardrails_check(spec, catalog, rules))  # type: ignore[arg-type]
        elif isinstance(spec, CpuOnlyCheck):
            rows.append(cpu_only_check(spec, catalog, environ))  # type: ignore[arg-type]
    rows += [webhooks_check(request.routes_path, environ), check_history]
    if work is not None and all(run.state == "passed" for run in runs.values()):
        shutil.rmtree(work, ignore_errors=True)  # kept only when a failure's logs are worth reading
        work = None
    return DoctorReport(
        checks=rows,
        guardrails=guardrails(catalog) if catalog is not None else [],
        matrix=escalation_matrix(rules) if rules is not None else [],
        work_dir=None if work is None else str(work),
        interrupted=interrupted,
    )


def _selector_run(name: str, runs: dict[str, SelectorRun], history: Any, check_history: Check, host_key: str,
                  now: datetime) -> tuple[SelectorRun | None, str | None]:
    """The selector's run made now, else its latest recorded one; or why there is none."""
    if name in runs:
        return runs[name], None
    if not _history_exists(history):
        return None, f"no history database at {history}, so no recorded run: cannot tell"
    if check_history.status == CheckStatus.FAIL:
        return None, "the history database is not healthy (see the history row): cannot tell"
    try:
        return recorded_run(history, name, host_key, now), None
    except (ConfigError, sqlite3.DatabaseError) as exc:
        return None, f"history not readable ({exc}): cannot tell"


def _history_exists(history: Any) -> bool:
    from harness import history_backend

    return history is not None and (history_backend.is_url(history) or Path(history).exists())
