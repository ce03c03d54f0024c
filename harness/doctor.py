"""``harness doctor``: the brief's handoff checklist (§7) as checks a machine can run.

Each check says what it looked at (evidence) and, when it does not hold, how to fix it. A check
that cannot run says why (status ``unknown`` or ``skipped``) instead of passing silently, and a
required check only holds when its status is ``pass``, ``warn`` or ``info``.

Nothing here imports torch, lightning or tensorflow: the imports, the dataset path (``ptycho.simulate``)
and the selectors run in subprocesses of the catalog's interpreter, and the selectors go through the
harness runner exactly as in ``harness run`` (but nothing is recorded: doctor only reads history).
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
from pathlib import Path
from typing import Any

from harness.catalog import Catalog, Selector
from harness.errors import ConfigError
from harness.rules import RuleSet

PASS, WARN, FAIL, UNKNOWN, SKIPPED, INFO = "pass", "warn", "fail", "unknown", "skipped", "info"
HOLDING = frozenset({PASS, WARN, INFO})

MIN_TORCH = (2, 2)  # POLICY-001: PyTorch >= 2.2
INTEGRATION, BACKEND_SELECTION, CONFIG_SYNC = "integration", "backend_selection", "config_sync"
CONFIG_SYNC_TEST = "tests/torch/test_backend_selection.py::test_routes_to_selected_backend_after_config_sync"
BRIEF_DATASET = "datasets/sim_data/Run1084_recon3_postPC_shrunk_3.npz"
DATASET_KEYS = (("diffraction", "diff3d"), ("probeGuess",), ("xcoords",), ("ycoords",))
# Brief §3.4's trigger table: the escalation matrix doctor expects the rules to carry.
BRIEF_TRIGGERS = ("RT-001", "RT-002", "RT-003", "FAIL-001", "FAIL-002", "FAIL-003", "POLICY-001", "CONFIG-001",
                  "FORMAT-001", "PARITY-001", "ARTIF-001", "ARTIF-002")
PROBE_MARK = "HARNESS-DOCTOR "
IMPORT_TIMEOUT_S = 300.0  # lightning alone takes 6-7 s on an idle 2-core machine, much more when it is busy
FIX_TIMEOUT_S = 600.0
INSTALL_TORCH = "pip install 'torch>=2.2' --index-url https://download.pytorch.org/whl/cpu (CPU build)"

# Runs in the catalog's interpreter: what torch, lightning and pytest's plugins are there.
PACKAGES_PROBE = """
import importlib.util, json, sys
found = {"python": sys.version.split()[0], "executable": sys.executable}
for name in ("torch", "lightning"):
    try:
        module = __import__(name)
        found[name] = {"ok": True, "version": getattr(module, "__version__", None)}
    except BaseException as exc:
        found[name] = {"ok": False, "error": (type(exc).__name__ + ": " + str(exc)).splitlines()[0][:300]}
for name in ("pytest", "pytest_jsonreport", "pytest_timeout"):
    found[name] = importlib.util.find_spec(name) is not None
try:
    import pytest
    found["pytest_version"] = pytest.__version__
except BaseException:
    pass
print(%r + json.dumps(found))
""" % PROBE_MARK

DATASET_PROBE = """
import json
from ptycho.simulate import canonical_path
print(%r + json.dumps({"path": str(canonical_path())}))
""" % PROBE_MARK

DATASET_FIX = """
import json, time
from ptycho.simulate import ensure_canonical_dataset
start = time.perf_counter()
path = ensure_canonical_dataset()
print(%r + json.dumps({"path": str(path), "seconds": round(time.perf_counter() - start, 2)}))
""" % PROBE_MARK


@dataclass
class Check:
    """One line of the doctor's table."""

    id: str
    title: str
    required: bool
    status: str
    evidence: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def holds(self) -> bool:
        return self.status in HOLDING

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "required": self.required, "status": self.status,
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


def probe(python: str, code: str, cwd: Path, env: dict[str, str], timeout: float) -> tuple[dict[str, Any] | None, str]:
    """Run ``python -c code``; its JSON answer (the line after PROBE_MARK), or None and why not."""
    try:
        done = subprocess.run([python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True,  # noqa: S603
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


def _cmd(python: str) -> str:
    return "pip" if Path(python).resolve() == Path(sys.executable).resolve() else f"{python} -m pip"


# -- checks: packages --------------------------------------------------------------------------------


def package_checks(python: str, cwd: Path, environ: dict[str, str]) -> list[Check]:
    """torch >= 2.2, lightning, pytest plugins: imported (really) by the catalog's interpreter."""
    found, why = probe(python, PACKAGES_PROBE, cwd, probe_env(environ), IMPORT_TIMEOUT_S)
    pip = _cmd(python)
    if found is None:
        reason = f"cannot ask {python}: {why}"
        return [
            Check("torch", "PyTorch >= 2.2 importable (POLICY-001)", True, UNKNOWN, reason,
                  "fix the catalog's `python` (or the environment it runs in)"),
            Check("lightning", "Lightning importable", True, UNKNOWN, reason, "as above"),
            Check("pytest_plugins", "pytest, pytest-json-report, pytest-timeout installed", True, UNKNOWN, reason,
                  "as above"),
        ]
    where = f"python {found.get('python')} ({found.get('executable')})"
    checks = []
    torch = found.get("torch") or {}
    if not torch.get("ok"):
        checks.append(Check("torch", "PyTorch >= 2.2 importable (POLICY-001)", True, FAIL,
                            f"import torch failed in {where}: {torch.get('error')}", INSTALL_TORCH.replace("pip", pip, 1),
                            {"python": found.get("executable")}))
    else:
        version = torch.get("version")
        parsed = version_tuple(version)
        good = parsed is not None and parsed[:2] >= MIN_TORCH
        checks.append(Check(
            "torch", "PyTorch >= 2.2 importable (POLICY-001)", True, PASS if good else FAIL,
            f"torch {version} imports in {where}" + ("" if good else f"; POLICY-001 needs >= {'.'.join(map(str, MIN_TORCH))}"),
            "" if good else INSTALL_TORCH.replace("pip", pip, 1), {"version": version, "python": found.get("executable")}))
    lightning = found.get("lightning") or {}
    if lightning.get("ok"):
        checks.append(Check("lightning", "Lightning importable", True, PASS,
                            f"lightning {lightning.get('version')} imports in {where}", "",
                            {"version": lightning.get("version")}))
    else:
        checks.append(Check("lightning", "Lightning importable", True, FAIL,
                            f"import lightning failed in {where}: {lightning.get('error')}",
                            f"{pip} install -e '.[dev]' (pyproject pins lightning)"))
    missing = [label for key, label in (("pytest", "pytest"), ("pytest_jsonreport", "pytest-json-report"),
                                        ("pytest_timeout", "pytest-timeout")) if not found.get(key)]
    checks.append(Check(
        "pytest_plugins", "pytest, pytest-json-report, pytest-timeout installed", True, FAIL if missing else PASS,
        (f"missing in {where}: {', '.join(missing)}" if missing
         else f"pytest {found.get('pytest_version')} with pytest-json-report and pytest-timeout in {where}"),
        f"{pip} install -e '.[dev]'" if missing else ""))
    return checks


# -- checks: the canonical dataset ---------------------------------------------------------------------


def npz_keys(path: Path) -> list[str]:
    """The arrays of an .npz (a zip of ``<key>.npy``), read from its directory, no numpy needed."""
    with zipfile.ZipFile(path) as archive:
        return [name.removesuffix(".npy") for name in archive.namelist() if name.endswith(".npy")]


def dataset_check(python: str, cwd: Path, environ: dict[str, str], fix: bool) -> Check:
    title = "Canonical dataset present"
    env = probe_env(environ)
    found, why = probe(python, DATASET_PROBE, cwd, env, 120)
    if found is None:
        return Check("dataset", title, True, UNKNOWN,
                     f"cannot locate it: ptycho.simulate does not load in {python}: {why}",
                     "install the project in that interpreter: pip install -e '.[dev]'")
    path = Path(found["path"])
    generated = None
    if not path.exists() and fix:
        made, why = probe(python, DATASET_FIX, cwd, env, FIX_TIMEOUT_S)
        if made is None:
            return Check("dataset", title, True, FAIL, f"{path} is missing and generating it failed: {why}",
                         "run `ptycho-simulate --canonical` and read its error", {"path": str(path)})
        generated = made.get("seconds")
    if not path.exists():
        return Check("dataset", title, True, FAIL, f"{path} is missing (it stands in for the brief's {BRIEF_DATASET})",
                     "harness doctor --fix (runs ptycho.simulate.ensure_canonical_dataset), or ptycho-simulate --canonical",
                     {"path": str(path)})
    try:
        keys = npz_keys(path)
    except (zipfile.BadZipFile, OSError) as exc:
        return Check("dataset", title, True, FAIL, f"{path} is not a readable .npz: {exc}",
                     "delete it and run `harness doctor --fix` (or ptycho-simulate --canonical --force)", {"path": str(path)})
    missing = [" or ".join(group) for group in DATASET_KEYS if not any(key in keys for key in group)]
    size_mb = path.stat().st_size / 1e6
    if missing:
        return Check("dataset", title, True, FAIL, f"{path} ({size_mb:.1f} MB) lacks {', '.join(missing)}",
                     "ptycho-simulate --canonical --force", {"path": str(path), "keys": keys})
    made = f"generated now in {generated:g} s; " if generated is not None else ""
    return Check("dataset", title, True, PASS,
                 f"{made}{path} ({size_mb:.1f} MB; {', '.join(sorted(keys))}), standing in for the brief's {BRIEF_DATASET}",
                 "", {"path": str(path), "bytes": path.stat().st_size, "generated": generated is not None})


# -- checks: selectors ----------------------------------------------------------------------------------


class _Scratch:
    """Where doctor's selector runs write (a temporary folder; not a published run directory)."""

    def __init__(self, path: Path) -> None:
        self.staging = self.final = path

    def relative(self, path: Path) -> str:
        try:
            return Path(path).resolve().relative_to(self.final.resolve()).as_posix()
        except ValueError:
            return str(path)


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


def run_selectors(catalog: Catalog, selectors: list[Selector], jobs: int, progress: str,
                  stop: threading.Event) -> tuple[dict[str, SelectorRun], Path]:
    """Run the selectors through the harness runner (as `harness run` does) in a scratch folder."""
    from harness.evaluation import runtime_of
    from harness.pipeline import selector_result
    from harness.progress import make_progress
    from harness.runner import Runner, plan_selector

    work = Path(tempfile.mkdtemp(prefix="harness-doctor-"))
    scratch = _Scratch(work)
    run_id = f"doctor-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    plans = [plan_selector(catalog, selector, work, run_id) for selector in selectors]
    sink = make_progress(progress, len(plans))
    try:
        outcomes = Runner(plans, jobs, sink, stop).run()
    finally:
        close = getattr(sink, "close", None)
        if close:
            close()
    found = {}
    for plan in plans:
        result = selector_result(plan, outcomes[plan.name], scratch)  # type: ignore[arg-type]
        runtime, measure = runtime_of(result, plan.selector.runtime.measure)
        failing = next((t for t in result.tests if t.outcome in ("failed", "error")), None)
        found[plan.name] = SelectorRun(
            state=result.state.value, reason=result.reason, runtime_s=runtime, measure=measure,
            passed=result.counts.passed, total=result.counts.total, source="run now",
            logs=str(plan.stdout_path),
            first_failure=None if failing is None else f"{failing.nodeid}: {(failing.message or '').splitlines()[0][:200] if failing.message else failing.outcome}",
        )
    return found, work


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
    """The selector's latest recorded result (that ran), preferring this machine's host key."""
    with reading(history) as db:
        rows = db.execute(
            """
            SELECT r.run_key, r.started_at, r.host_key, sr.state, sr.reason, sr.runtime_s, sr.runtime_measure,
                   sr.total, sr.passed, sr.id AS result_id
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
            "SELECT nodeid, message, outcome FROM test_results WHERE selector_result_id = ? "
            "AND outcome IN ('failed', 'error') ORDER BY id LIMIT 1", (row["result_id"],)).fetchone()
    other = row["host_key"] != host_key
    source = f"run {row['run_key']}, {age_text(_parse_time(row['started_at']), now)}, host {row['host_key']}"
    return SelectorRun(
        state=row["state"], reason=row["reason"], runtime_s=row["runtime_s"], measure=row["runtime_measure"],
        passed=row["passed"] or 0, total=row["total"] or 0, source=source, other_host=other,
        first_failure=None if failing is None else f"{failing['nodeid']}: {(failing['message'] or failing['outcome']).splitlines()[0][:200]}",
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


def selector_check(check_id: str, catalog: Catalog | None, name: str, which: str, run: SelectorRun | None,
                   history: Any, host_key: str, why_not: str | None = None) -> Check:
    """Passes, within the catalog's ``which`` runtime threshold (integration: critical 90 s; backend
    selection: warning 5 s)."""
    if catalog is None:
        return Check(check_id, f"{name} passes", True, SKIPPED, why_not or "the catalog did not load",
                     "fix the catalog first (see the catalog row)")
    if name not in catalog.selectors:
        return Check(check_id, f"{name} passes", True, SKIPPED,
                     f"the catalog {catalog.path} has no selector {name!r}",
                     f"add [selectors.{name}] to the catalog (docs/guide.md#adding-a-selector)")
    selector = catalog.selectors[name]
    limit, mode = _limit(selector, which, history, host_key)
    what = {"critical": "within", "warning": "in under"}[which]
    title = f"{name} passes" + (f" {what} {limit:g} s" if limit else "")
    command = f"harness doctor --run (or harness run --cadence manual --selector {name})"
    if run is None:
        return Check(check_id, title, True, UNKNOWN,
                     why_not or "no recorded run of it in history: cannot tell",
                     command)
    measure = f"{run.measure}" if run.measure else "wall"
    runtime = "-" if run.runtime_s is None else f"{run.runtime_s:.1f} s"
    details = {"state": run.state, "runtime_s": run.runtime_s, "measure": run.measure, "limit_s": limit,
               "threshold_mode": mode, "source": run.source, "passed": run.passed, "total": run.total}
    if run.state != "passed":
        evidence = f"{run.state} ({run.reason}) [{run.source}]"
        if run.first_failure:
            evidence += f"; first failure: {run.first_failure}"
        if run.logs:
            evidence += f"; log: {run.logs}"
        return Check(check_id, title, True, FAIL, evidence,
                     f"harness reproduce --selector {name} (brief §3.5: failure.log, env.txt, fix_plan entry)", details)
    base = f"{run.passed}/{run.total} tests passed in {runtime} ({measure}"
    base += f"; limit {limit:g} s, {mode})" if limit else "; the catalog sets no limit)"
    base += f" [{run.source}]"
    if limit is not None and run.runtime_s is not None and run.runtime_s > limit:
        return Check(check_id, title, True, FAIL, f"{base}: over the limit", "profile the slow test (harness history "
                     f"--selector {name}; brief §2.3 runtime profile)", details)
    if run.other_host:
        return Check(check_id, title, True, WARN, f"{base}: recorded on another machine",
                     "harness doctor --run to check this one", details)
    suspicious, _ = _limit(selector, "suspicious", history, host_key)
    if suspicious is not None and run.runtime_s is not None and run.runtime_s < suspicious:
        return Check(check_id, title, True, WARN, f"{base}: under {suspicious:g} s, suspiciously fast (RT-003)",
                     "check that the test really trained and inferred", details)
    return Check(check_id, title, True, PASS, base, "", details)


def config_check(catalog: Catalog | None, run: SelectorRun | None, why_not: str | None = None) -> Check:
    title = "CONFIG-001: params.cfg synced before the dispatcher routes"
    if catalog is None:
        return Check("config_001", title, True, SKIPPED, why_not or "the catalog did not load", "fix the catalog first")
    if CONFIG_SYNC not in catalog.selectors:
        return Check("config_001", title, True, SKIPPED,
                     f"the catalog {catalog.path} has no selector {CONFIG_SYNC!r} to run the dispatcher's CONFIG-001 "
                     f"test ({CONFIG_SYNC_TEST})",
                     f"add [selectors.{CONFIG_SYNC}] running that test (docs/guide.md#doctor-the-handoff-checklist-in-one-command)")
    selector = catalog.selectors[CONFIG_SYNC]
    if run is None:
        return Check("config_001", title, True, UNKNOWN, why_not or "not run", f"harness run --cadence manual --selector {CONFIG_SYNC}")
    test = " ".join(arg for arg in selector.args if arg not in ("-v", "-vv", "-q"))
    if run.state == "passed":
        return Check("config_001", title, True, PASS,
                     f"{run.passed}/{run.total} passed: {test} (update_legacy_dict before the backend import)", "",
                     {"state": run.state, "selector": CONFIG_SYNC})
    evidence = f"{run.state} ({run.reason}): {test}"
    if run.first_failure:
        evidence += f"; first failure: {run.first_failure}"
    if run.logs:
        evidence += f"; log: {run.logs}"
    return Check("config_001", title, True, FAIL, evidence,
                 "call update_legacy_dict(params.cfg, config) before inspecting config.backend or importing a backend "
                 "(brief §1.2, docs/findings.md#CONFIG-001)", {"state": run.state, "selector": CONFIG_SYNC})


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


def guardrails_check(catalog: Catalog | None, rules: RuleSet | None) -> Check:
    title = "Runtime guardrails and escalation matrix (optional)"
    if catalog is None or rules is None:
        return Check("guardrails", title, False, SKIPPED, "the catalog or the rules did not load", "see the catalog row")
    notes = []
    selector = catalog.selectors.get(INTEGRATION)
    if selector is None:
        notes.append(f"no {INTEGRATION!r} selector")
        summary = ""
    else:
        spec = selector.runtime
        missing = [name for name, value in (("critical_s", spec.critical_s), ("warning_s", spec.warning_s),
                                            ("suspicious_below_s", spec.suspicious_below_s)) if value is None]
        if missing and spec.mode == "absolute":
            notes.append(f"{INTEGRATION} has no {', '.join(missing)}")
        summary = (f"{INTEGRATION}: hard limit {_secs(spec.critical_s)} (RT-001), warning {_secs(spec.warning_s)} "
                   f"x3 runs (RT-002), suspicious < {_secs(spec.suspicious_below_s)} (RT-003), baseline "
                   f"{_secs(spec.baseline_s)}, mode {spec.mode}; ")
    ids = {t.id for t in rules.triggers}
    absent = [t for t in BRIEF_TRIGGERS if t not in ids]
    if absent:
        notes.append(f"rules lack {', '.join(absent)}")
    evidence = f"{summary}{len(rules.triggers)} triggers in {rules.path} (tables below)"
    if notes:
        return Check("guardrails", title, False, WARN, f"{evidence}; " + "; ".join(notes),
                     "restore the brief's §2.3 thresholds in the catalog and §3.4 triggers in the rules")
    return Check("guardrails", title, False, INFO, evidence, "")


def cpu_only_check(catalog: Catalog | None, environ: dict[str, str]) -> Check:
    """CUDA_VISIBLE_DEVICES="" pinned where the brief wants a CPU-only worker (the integration test)."""
    title = 'CPU-only CI environment (CUDA_VISIBLE_DEVICES="")'
    if catalog is None:
        return Check("cpu_only", title, True, SKIPPED, "the catalog did not load", "see the catalog row")
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
    integration = catalog.selectors.get(INTEGRATION)
    if integration is not None and integration.env.get("CUDA_VISIBLE_DEVICES") != "":
        return Check("cpu_only", title, True, FAIL, evidence,
                     f'set env = {{ CUDA_VISIBLE_DEVICES = "" }} on [selectors.{INTEGRATION}] (or [defaults])', details)
    if inherit or unpinned:
        return Check("cpu_only", title, True, WARN, evidence,
                     'pin CUDA_VISIBLE_DEVICES = "" in [defaults] env (and the workflows\' env)', details)
    return Check("cpu_only", title, True, PASS, evidence, "", details)


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
    from harness.routes import load_routes

    title = "Webhook variables named by the routes"
    try:
        routes = load_routes(routes_path)
    except ConfigError as exc:
        return Check("webhooks", title, True, FAIL, str(exc).splitlines()[0], f"fix {routes_path} (docs/alerts.md)")
    present, missing = [], []
    for sink in routes.sinks.values():
        for name in (sink.url_env, sink.secret_env):
            if name:
                (present if environ.get(name) else missing).append(name)
    present, missing = sorted(set(present)), sorted(set(missing))
    parts = [f"{routes.path}: {len(routes.sinks)} sink(s)", f"set: {', '.join(present) or 'none'}",
             f"missing: {', '.join(missing) or 'none'}"]
    details = {"routes": str(routes.path), "set": present, "missing": missing}
    from harness.alerting import notifications_disabled

    if notifications_disabled(environ):
        return Check("webhooks", title, True, WARN, "; ".join(parts) + "; HARNESS_NOTIFY=off: nothing is sent",
                     "unset HARNESS_NOTIFY to deliver alerts", details)
    if missing:
        return Check("webhooks", title, True, WARN, "; ".join(parts) + " (their messages wait in the outbox)",
                     "set them (CI: repository secrets passed through the workflow's env), then `harness alerts flush`",
                     details)
    return Check("webhooks", title, True, PASS, "; ".join(parts), "", details)


# -- checks: history ----------------------------------------------------------------------------------------


def history_check(history: Any, fix: bool) -> Check:
    """Reachable, ``PRAGMA integrity_check`` ok, schema version current (read-only; ``fix`` migrates)."""
    from harness import history_backend
    from harness.history_schema import latest_version

    title = "History database reachable and healthy"
    latest = latest_version()
    if history_backend.is_url(history):
        return _postgres_history_check(history, fix, title, latest)
    path = Path(history)
    if not path.exists():
        return Check("history", title, True, WARN, f"no history database at {path} yet",
                     "the first `harness run` creates it", {"path": str(path)})
    try:
        version, runs, last, integrity = _read_sqlite(path)
    except sqlite3.DatabaseError as exc:
        return Check("history", title, True, FAIL, f"{path}: not a usable SQLite database: {exc}",
                     "move it aside; the next `harness run` starts a new one (CI: restore an older cache entry)",
                     {"path": str(path)})
    migrated = False
    if integrity != ["ok"]:
        return Check("history", title, True, FAIL, f"{path}: integrity_check: {'; '.join(integrity[:3])}",
                     f"sqlite3 {path} '.recover' > recovered.sql, or restore a backup", {"path": str(path)})
    if version < latest and fix:
        from harness.history import HistoryStore

        HistoryStore.open(path).close()  # applies the pending migrations in one transaction
        version, runs, last, integrity = _read_sqlite(path)
        migrated = True
    evidence = (f"{path}: integrity ok, schema version {version}" + (" (migrated now)" if migrated else "")
                + f", {runs} run(s)" + (f", newest {last}" if last else ""))
    details = {"path": str(path), "schema_version": version, "latest": latest, "runs": runs}
    if version > latest:
        return Check("history", title, True, FAIL, f"{evidence}; newer than this harness ({latest})",
                     "upgrade the harness (pip install -e .)", details)
    if version < latest:
        return Check("history", title, True, WARN, f"{evidence}; this harness expects {latest}",
                     "harness doctor --fix (or any harness command that writes history) migrates it", details)
    return Check("history", title, True, PASS, evidence + " (current)", "", details)


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

    try:
        connection = history_backend.connect(history)
    except ConfigError as exc:
        return Check("history", title, True, FAIL, str(exc), "check the server, the URL and PGPASSWORD / ~/.pgpass")
    try:
        exists = connection.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").fetchone()
        version = int(connection.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0] or 0) if exists else 0
    except sqlite3.DatabaseError as exc:
        return Check("history", title, True, FAIL, f"{history}: {exc}", "check the database and the user's rights")
    finally:
        connection.close()
    evidence = f"{history}: reachable, schema version {version} (integrity_check is SQLite's; the server checks its own pages)"
    if version < latest and fix:
        from harness.history import HistoryStore

        HistoryStore.open(history).close()
        return Check("history", title, True, PASS, f"{evidence}; migrated to {latest} now", "")
    if version != latest:
        return Check("history", title, True, WARN if version < latest else FAIL,
                     f"{evidence}; this harness expects {latest}",
                     "harness doctor --fix" if version < latest else "upgrade the harness")
    return Check("history", title, True, PASS, evidence + " (current)", "")


# -- everything -----------------------------------------------------------------------------------------


def diagnose(request: DoctorRequest) -> DoctorReport:
    """Run every check (independent ones concurrently) and return them in checklist order."""
    from harness.catalog import load_catalog
    from harness.environment import host_info
    from harness.locations import DEFAULT_RULES
    from harness.pipeline import StopSignals
    from harness.rules import load_rules

    now = datetime.now(UTC)
    environ = request.environ
    catalog: Catalog | None = None
    rules: RuleSet | None = None
    try:
        catalog = load_catalog(request.catalog_path)
        rules = load_rules(request.rules_path or catalog.rules or DEFAULT_RULES)
        problems = rules.check_selectors(set(catalog.selectors))
        catalog_row = Check("catalog", "Catalog and rules valid", True, WARN if problems else PASS,
                            f"{catalog.path} ({len(catalog.selectors)} selectors, cadences "
                            f"{', '.join(catalog.cadences)}); {rules.path} ({len(rules.triggers)} triggers)"
                            + (f"; {problems[0]}" if problems else ""),
                            "correct the scope names" if problems else "")
    except ConfigError as exc:
        where = "rules" if catalog is not None else "catalog"
        catalog_row = Check("catalog", "Catalog and rules valid", True, FAIL, str(exc).splitlines()[0],
                            f"fix the {where} file (`harness {where} --catalog ...` shows every problem)")
        if catalog is not None and rules is None:
            catalog = None
    python = catalog.python_executable(sys.executable) if catalog is not None else sys.executable
    cwd = catalog.root if catalog is not None else Path.cwd()
    host_key = host_info().host_key

    to_run: list[Selector] = []
    if catalog is not None:
        names = [INTEGRATION, BACKEND_SELECTION, CONFIG_SYNC] if request.run else [CONFIG_SYNC]
        to_run = [catalog.selectors[name] for name in names if name in catalog.selectors]

    runs: dict[str, SelectorRun] = {}
    work: Path | None = None
    interrupted = False
    with StopSignals() as stop, ThreadPoolExecutor(max_workers=4) as pool:
        packages = pool.submit(package_checks, python, cwd, environ)
        dataset = pool.submit(dataset_check, python, cwd, environ, request.fix)
        history_row = pool.submit(history_check, request.history, request.fix)
        if to_run:
            runs, work = run_selectors(catalog, to_run, request.jobs, request.progress, stop.event)  # type: ignore[arg-type]
        checks_packages = packages.result()
        check_dataset = dataset.result()
        check_history = history_row.result()
        interrupted = stop.received is not None

    recorded: dict[str, SelectorRun | None] = {}
    why_not: dict[str, str] = {}
    for name in (INTEGRATION, BACKEND_SELECTION):
        if name in runs:
            continue
        if not _history_exists(request.history):
            why_not[name] = f"no history database at {request.history}, so no recorded run: cannot tell"
        elif check_history.status == FAIL:
            why_not[name] = "the history database is not healthy (see the history row): cannot tell"
        else:
            try:
                recorded[name] = recorded_run(request.history, name, host_key, now)
            except (ConfigError, sqlite3.DatabaseError) as exc:
                why_not[name] = f"history not readable ({exc}): cannot tell"

    def pick(name: str) -> SelectorRun | None:
        return runs.get(name) or recorded.get(name)

    history_for_limits = request.history if _history_exists(request.history) else None
    checks = [
        catalog_row,
        *checks_packages,
        check_dataset,
        selector_check("integration", catalog, INTEGRATION, "critical", pick(INTEGRATION),
                       history_for_limits, host_key, why_not.get(INTEGRATION)),
        selector_check("backend_selection", catalog, BACKEND_SELECTION, "warning", pick(BACKEND_SELECTION),
                       history_for_limits, host_key, why_not.get(BACKEND_SELECTION)),
        config_check(catalog, runs.get(CONFIG_SYNC)),
        guardrails_check(catalog, rules),
        cpu_only_check(catalog, environ),
        webhooks_check(request.routes_path, environ),
        check_history,
    ]
    if work is not None and all(run.state == "passed" for run in runs.values()):
        shutil.rmtree(work, ignore_errors=True)  # kept only when a failure's logs are worth reading
        work = None
    return DoctorReport(
        checks=checks,
        guardrails=guardrails(catalog) if catalog is not None else [],
        matrix=escalation_matrix(rules) if rules is not None else [],
        work_dir=None if work is None else str(work),
        interrupted=interrupted,
    )


def _history_exists(history: Any) -> bool:
    from harness import history_backend

    return history is not None and (history_backend.is_url(history) or Path(history).exists())

