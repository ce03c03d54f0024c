"""``harness reproduce``: the brief's escalation workflow (§3.5) as one command.

1. Reproduce: rerun the selector (``--selector``, or the one that fired ``--trigger`` last) with
   ``CUDA_VISIBLE_DEVICES=""`` and ``-vv``, its output tee'd to ``failure.log``.
2. Capture the environment in ``env.txt`` (python -V, pip show torch lightning, the CPU).
3. Document it in ``document.md``: error and stack trace, runtime, the diff from the last
   known-good run in history (runtime, artifact sizes, checkpoint keys), the matched trigger with
   its owner and SLA, the selector and the reproduction command.
4. File it: all of it under ``plans/active/<initiative>/reports/<timestamp>/escalation/`` (built
   aside and renamed into place, so there is never half a directory) and an entry appended to
   ``docs/fix_plan.md`` under each owning initiative.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import jinja2

from harness import artifacts, environment, process_tree
from harness.alerts.payloads import DEFAULT_TEMPLATES, template_loader
from harness.catalog import Catalog, Selector
from harness.errors import ConfigError, HarnessError
from harness.fix_plan_ledger import append_entry
from harness.history import HistoryStore
from harness.locations import REPO_ROOT
from harness.report_model import DID_NOT_RUN_STATES, GOOD_STATES, Alert, RunReport, SelectorResult
from harness.alerts.routes import owners_of
from harness.rule_schema import RuleSet
from harness.runner import STOP_GRACE_S, ProcessOutcome, SelectorPlan, exit_signal, launch, plan_in, utc_now
from harness.selector_env import SecretRedactor, redaction_notes
from harness.selector_result import ScratchDirectory, selector_result
from harness.verdict import judge_selector

# A reproduction that passed, or whose tests did not execute (skipped), did not reproduce the failure.
_NOT_REPRODUCED = GOOD_STATES | DID_NOT_RUN_STATES

TRACE_LINES = 120          # of each failing test's longrepr in document.md
MAX_FAILURES_SHOWN = 5
LOG_TAIL_LINES = 60        # of failure.log when no test failure explains the state
TIMESTAMP_FORMAT = "%Y-%m-%dT%H%M%SZ"  # the brief's reports/<timestamp>/ form: 2025-10-19T193425Z

# Brief §3.5 step 5: where to read next, by the kind of trigger.
RUNTIME_PROFILE = "plans/active/TEST-PYTORCH-001/reports/2025-10-19T193425Z/phase_d_hardening/runtime_profile.md"
BACKEND_SPEC = "specs/ptychodus_api_spec.md §4.8 (backend selection and dispatch)"
CHECKPOINTS = "docs/workflows/pytorch.md §6 (checkpoint management)"
AUTHORITIES = {
    "RT": RUNTIME_PROFILE,
    "CONFIG": f"{BACKEND_SPEC}; docs/findings.md#CONFIG-001",
    "POLICY": f"{BACKEND_SPEC}; docs/findings.md#POLICY-001",
    "FORMAT": "docs/findings.md#FORMAT-001",
    "FAIL-002": BACKEND_SPEC,
    "FAIL-003": CHECKPOINTS,
    "ARTIF": CHECKPOINTS,
    "PARITY": f"{BACKEND_SPEC}; plans/active/INTEGRATE-PYTORCH-001/reports/2025-10-19T201500Z/phase_d2_completion/parity_update.md",
}
TRIGGER_TABLE = "seed/test-pytorch-001-handoff-brief.md §3.4 (escalation trigger definitions)"


@dataclass
class ReproduceRequest:
    catalog: Catalog
    rules: RuleSet
    selector: Selector
    trigger: str | None
    history_path: Path | None
    reports_dir: Path
    plans_root: Path
    ledger: Path | None
    initiative: str | None = None
    echo: TextIO | None = None
    templates_dir: Path = DEFAULT_TEMPLATES


@dataclass
class KnownGood:
    run_key: str
    started_at: str
    git_sha: str | None
    host_key: str
    state: str
    runtime_s: float | None
    runtime_measure: str | None
    fired: list[str]
    report_dir: Path | None
    result: SelectorResult | None = None
    outcomes: dict[str, str] = field(default_factory=dict)


@dataclass
class Reproduction:
    directory: Path
    initiative: str
    owners: list[str]
    result: SelectorResult
    alerts: list[Alert]
    primary: Alert | None
    known_good: KnownGood | None
    diff: dict[str, Any]
    command: str
    ledger_entries: list[str]
    exit_code: int
    notes: list[str] = field(default_factory=list)  # e.g. secret values found in the output and redacted

    def to_json(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "initiative": self.initiative,
            "owners": self.owners,
            "selector": self.result.name,
            "state": self.result.state.value,
            "reason": self.result.reason,
            "reproduced": self.result.state not in _NOT_REPRODUCED,
            "runtime_s": self.result.runtime_s,
            "wall_s": self.result.wall_s,
            "exit_code": self.result.exit_code,
            "trigger": None if self.primary is None else {
                "id": self.primary.trigger, "severity": self.primary.severity, "owner": self.primary.owner,
                "sla": self.primary.sla, "summary": self.primary.summary,
            },
            "matched": [{"trigger": a.trigger, "severity": a.severity, "nodeid": a.nodeid, "summary": a.summary}
                        for a in self.alerts],
            "known_good": None if self.known_good is None else {
                "run": self.known_good.run_key, "started_at": self.known_good.started_at,
                "git_sha": self.known_good.git_sha, "runtime_s": self.known_good.runtime_s,
            },
            "diff": self.diff,
            "command": self.command,
            "ledger": self.ledger_entries,
            "notes": self.notes,
        }


# -- history lookups ------------------------------------------------------------------------------


def last_fired(history: HistoryStore, trigger: str) -> dict[str, Any] | None:
    """The newest firing of ``trigger`` in history: selector, test, run."""
    row = history.db.execute(
        """
        SELECT a.selector, a.nodeid, a.summary, a.created_at, r.run_key FROM alerts AS a JOIN runs AS r ON r.id = a.run_id
        WHERE a.trigger_id = ? AND a.status = 'firing' ORDER BY a.id DESC LIMIT 1
        """,
        (trigger,),
    ).fetchone()
    return None if row is None else dict(row)


def known_good(history: HistoryStore, selector: str, reports_dir: Path) -> KnownGood | None:
    """The selector's latest passing result that fired nothing (else its latest passing one)."""
    base = """
        SELECT r.id AS run_id, r.run_key, r.started_at, r.git_sha, r.host_key, r.report_dir, sr.id AS result_id,
               sr.state, sr.runtime_s, sr.runtime_measure,
               (SELECT GROUP_CONCAT(DISTINCT a.trigger_id) FROM alerts a
                 WHERE a.run_id = r.id AND a.selector = sr.selector AND a.status = 'firing') AS fired
        FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
        WHERE sr.selector = ? AND sr.state = 'passed' {extra}
        ORDER BY r.started_at DESC, r.id DESC LIMIT 1"""
    row = history.db.execute(base.format(extra="AND NOT EXISTS (SELECT 1 FROM alerts a WHERE a.run_id = r.id "
                                                "AND a.selector = sr.selector AND a.status = 'firing')"), (selector,)).fetchone()
    if row is None:
        row = history.db.execute(base.format(extra=""), (selector,)).fetchone()
    if row is None:
        return None
    report_dir = reports_dir / row["report_dir"] if row["report_dir"] else None
    good = KnownGood(
        run_key=row["run_key"], started_at=row["started_at"], git_sha=row["git_sha"], host_key=row["host_key"],
        state=row["state"], runtime_s=row["runtime_s"], runtime_measure=row["runtime_measure"],
        fired=sorted((row["fired"] or "").split(",")) if row["fired"] else [], report_dir=report_dir,
    )
    good.outcomes = {r[0]: r[1] for r in history.db.execute(
        "SELECT nodeid, outcome FROM test_results WHERE selector_result_id = ?", (row["result_id"],))}
    if report_dir is not None and (report_dir / "report.json").is_file():
        try:
            report = RunReport.model_validate_json((report_dir / "report.json").read_text(encoding="utf-8"))
            good.result = next((r for r in report.selectors if r.name == selector), None)
        except ValueError:
            good.result = None
    return good


# -- running -------------------------------------------------------------------------------------


@dataclass
class TeeOutcome:
    process: ProcessOutcome  # how the pytest process ended, as the runner records it
    redacted: list[str] = field(default_factory=list)  # variables whose secret values the output held


def run_tee(plan: SelectorPlan, log_path: Path, echo: TextIO | None,
            redactor: SecretRedactor | None = None) -> TeeOutcome:
    """Run the plan's pytest (launched by the runner, ``runner.launch``) with stdout and stderr
    merged, written to ``log_path`` and echoed live (``| tee failure.log``); the whole process
    tree is stopped at the selector's timeout or on Ctrl-C, the same way the runner stops a
    selector (harness.process_tree). With ``redactor``, each line is cleaned of the harness's
    secret values before it is written or echoed."""
    outcome = ProcessOutcome(name=plan.name, started=True, started_at=utc_now())
    start = time.monotonic()
    redacted: dict[str, None] = {}
    with open(log_path, "wb") as log:
        process = launch(plan, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

        def pump() -> None:
            assert process.stdout is not None
            for line in iter(process.stdout.readline, b""):
                if redactor:
                    line, found = redactor.redact(line)
                    redacted.update(dict.fromkeys(found))
                log.write(line)
                log.flush()
                if echo is not None:
                    echo.write(line.decode("utf-8", errors="replace"))
                    echo.flush()

        finished: list[process_tree.Finished] = []
        reader = threading.Thread(target=pump, daemon=True)
        waiter = threading.Thread(target=lambda: finished.append(process_tree.wait_tree(process)), daemon=True)
        reader.start()
        waiter.start()
        try:
            try:
                waiter.join(timeout=plan.selector.timeout_s)
                if waiter.is_alive():
                    outcome.timed_out = True
                    process_tree.stop_tree(process, lambda: bool(finished), STOP_GRACE_S)
            except KeyboardInterrupt:
                process_tree.stop_tree(process, lambda: bool(finished), STOP_GRACE_S)
                raise
        finally:
            waiter.join(timeout=10)
            reader.join(timeout=10)
    outcome.exit_code = process.returncode
    outcome.signal = exit_signal(process.returncode)
    outcome.wall_s = round(time.monotonic() - start, 3)
    outcome.cpu_s = finished[0].cpu_s if finished else None
    outcome.finished_at = utc_now()
    return TeeOutcome(process=outcome, redacted=list(redacted))


def reproduction_argv(selector: Selector) -> list[str]:
    """The selector's pytest arguments with ``-vv`` (brief §3.5 step 1)."""
    args = list(selector.args)
    if not any(arg in ("-vv", "-vvv") for arg in args):
        args.append("-vv")
    return args


def reproduction_command(selector: Selector, root: Path) -> str:
    """The brief's one-liner for a human: ``CUDA_VISIBLE_DEVICES="" pytest ... -vv | tee failure.log``
    (run from the repository root; another catalog root is named with ``cd``)."""
    extra = " ".join(f"{k}={shlex.quote(v)}" for k, v in selector.env.items() if k != "CUDA_VISIBLE_DEVICES")
    prefix = 'CUDA_VISIBLE_DEVICES=""' + (f" {extra}" if extra else "")
    command = f"{prefix} pytest {shlex.join(reproduction_argv(selector))} | tee failure.log"
    if Path(root).resolve() == REPO_ROOT.resolve():
        return command
    return f"cd {shlex.quote(str(root))} && {command}"


# -- comparing with the known-good run ---------------------------------------------------------------


def checkpoint_keys(path: Path) -> dict[str, Any]:
    """Top-level keys of a torch checkpoint and of its ``hyper_parameters`` (read without torch)."""
    try:
        content = artifacts.load_checkpoint_pickle(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is a finding, not a crash
        return {"error": f"{type(exc).__name__}: {exc}"}
    if not isinstance(content, dict):
        return {"error": f"holds a {type(content).__name__}, not a dict"}
    hyper = content.get("hyper_parameters")
    return {
        "keys": sorted(map(str, content)),
        "hyper_parameters": sorted(map(str, hyper)) if isinstance(hyper, dict) else None,
    }


def _artifact_view(result: SelectorResult | None, base: Path | None) -> dict[str, dict[str, Any]]:
    view: dict[str, dict[str, Any]] = {}
    if result is None:
        return view
    for check in result.artifacts:
        entry = {"kind": check.kind, "path": check.path, "size_bytes": check.size_bytes, "ok": check.ok,
                 "detail": check.detail}
        if check.kind == "checkpoint" and check.path:
            path = Path(check.path)
            if not path.is_absolute() and base is not None:
                path = base / path
            if path.is_file():
                entry["checkpoint"] = checkpoint_keys(path)
        view[check.property] = entry
    return view


def compare(now: SelectorResult, good: KnownGood | None, directory: Path) -> dict[str, Any]:
    """Runtime, artifacts (size, validity, checkpoint keys) and test outcomes: then and now."""
    diff: dict[str, Any] = {"runtime": {"now_s": now.runtime_s, "measure": now.runtime_measure}}
    now_artifacts = _artifact_view(now, directory)
    if good is None:
        diff["artifacts"] = {name: {"now": entry} for name, entry in now_artifacts.items()}
        return diff
    runtime = diff["runtime"]
    runtime["known_good_s"] = good.runtime_s
    if good.runtime_s and now.runtime_s is not None:
        runtime["delta_s"] = round(now.runtime_s - good.runtime_s, 3)
        runtime["ratio"] = round(now.runtime_s / good.runtime_s, 3)
    good_artifacts = _artifact_view(good.result, good.report_dir)
    table: dict[str, Any] = {}
    for name in sorted(set(now_artifacts) | set(good_artifacts)):
        entry: dict[str, Any] = {"now": now_artifacts.get(name), "known_good": good_artifacts.get(name)}
        before = (good_artifacts.get(name) or {}).get("checkpoint") or {}
        after = (now_artifacts.get(name) or {}).get("checkpoint") or {}
        for key in ("keys", "hyper_parameters"):
            if before.get(key) is not None or after.get(key) is not None:
                old, new = set(before.get(key) or ()), set(after.get(key) or ())
                entry[f"{key}_removed"] = sorted(old - new)
                entry[f"{key}_added"] = sorted(new - old)
        table[name] = entry
    diff["artifacts"] = table
    if not good_artifacts and good.result is None:
        diff["artifacts_note"] = (f"the known-good run's report ({good.report_dir}/report.json) is not available; "
                                  "artifact sizes and checkpoint keys cannot be compared")
    now_outcomes = {t.nodeid: t.outcome for t in now.tests if t.kind == "test"}
    diff["tests"] = [
        {"nodeid": nodeid, "known_good": good.outcomes.get(nodeid), "now": outcome}
        for nodeid, outcome in sorted(now_outcomes.items()) if good.outcomes.get(nodeid) != outcome
    ]
    return diff


# -- documents -------------------------------------------------------------------------------------


def _fence(text: str) -> str:
    """A code fence longer than any backtick run inside ``text``."""
    longest, run = 0, 0
    for char in text or "":
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    return "`" * max(3, longest + 1)


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _head(text: str | None, lines: int) -> str:
    rows = (text or "").splitlines()
    if len(rows) <= lines:
        return "\n".join(rows)
    return "\n".join(rows[:lines]) + f"\n... ({len(rows) - lines} more lines in failure.log)"


def _tail(path: Path, lines: int) -> str:
    try:
        rows = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(rows[-lines:])


def _environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=template_loader(templates_dir), undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(["html", "htm", "xml"]), keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True,
    )
    env.filters.update(fence=_fence, cell=_cell, head=_head)
    return env


def authorities(trigger: str | None) -> list[str]:
    found = []
    if trigger:
        for prefix, where in AUTHORITIES.items():
            if trigger == prefix or trigger.startswith(prefix + "-"):
                found.append(where)
    found.append(TRIGGER_TABLE)
    return list(dict.fromkeys(found))


# -- the workflow -----------------------------------------------------------------------------------


def _owner_of_trigger(rules: RuleSet, trigger: str, selector: Selector) -> str:
    try:
        owner = rules.trigger(trigger).owner
    except KeyError:
        return selector.owner
    return selector.owner if owner == "selector" else owner


# An initiative becomes one folder under the plans root: a name, never a path (no "..", no "/").
_INITIATIVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._ -]*")


def check_initiative(name: str, source: str) -> str:
    """``name`` if it is a plain folder name; a usage error naming ``source`` otherwise."""
    if not _INITIATIVE_NAME.fullmatch(name) or ".." in name:
        raise HarnessError(f"{source} {name!r}: expected an initiative name (letters, digits, '.', '_', '-', ' '; "
                           "one folder under plans/active/), not a path")
    return name


def _free_final(plans_root: Path, initiative: str, stamp: str) -> tuple[Path, str]:
    check_initiative(initiative, "initiative")
    for attempt in range(1, 1000):
        name = stamp if attempt == 1 else f"{stamp}-{attempt}"
        final = plans_root / initiative / "reports" / name / "escalation"
        if not final.exists():
            return final, name
    raise HarnessError(f"no free escalation directory for {stamp} under {plans_root / initiative}")  # pragma: no cover


def reproduce(request: ReproduceRequest) -> Reproduction:
    """Run the whole escalation workflow; returns what was written (exit code 1 = reproduced)."""
    catalog, selector = request.catalog, request.selector
    if request.initiative is not None:
        check_initiative(request.initiative, "--initiative")
    started = datetime.now(UTC)
    stamp = started.strftime(TIMESTAMP_FORMAT)
    # Built aside in an ignored folder (plans/active/*/reports/), renamed into place when complete.
    staging_parent = request.plans_root / check_initiative((owners_of(selector.owner) or [selector.owner])[0],
                                                           f"selector {selector.name}: owner") / "reports"
    created = [p for p in (staging_parent, *staging_parent.parents) if not p.exists()]  # deepest first
    staging_parent.mkdir(parents=True, exist_ok=True)
    staging = staging_parent / f".staging-{stamp}-{os.getpid()}"
    staging.mkdir()
    try:
        python = catalog.python_executable(sys.executable)
        # The selector as the brief's reproduction runs it (§3.5 step 1): -vv, and
        # CUDA_VISIBLE_DEVICES="" whatever the catalog says; planned like any selector run, its
        # output tee'd into failure.log.
        repro_selector = selector.model_copy(update={"args": tuple(reproduction_argv(selector)),
                                                     "env": {**selector.env, "CUDA_VISIBLE_DEVICES": ""}})
        plan = replace(plan_in(catalog, repro_selector, staging, f"escalation-{stamp}"),
                       stdout_path=staging / "failure.log", stderr_path=staging / "failure.log")
        env = plan.env
        env_thread_result: dict[str, str] = {}
        env_thread = threading.Thread(
            target=lambda: env_thread_result.setdefault("text", environment.env_text(python, catalog.root, env=env)),
            daemon=True)
        env_thread.start()
        if request.echo is not None:
            request.echo.write(f"$ {reproduction_command(selector, catalog.root)}\n")
            request.echo.flush()
        # The reproduction's environment holds no routes variable (selector_environment), but a test
        # may read a secret elsewhere: what it wrote is cleaned before anything reads or files it.
        redactor = SecretRedactor()
        ran = run_tee(plan, plan.stdout_path, request.echo, redactor)
        env_thread.join(timeout=120)
        (staging / "env.txt").write_text(env_thread_result.get("text", "environment capture timed out\n"),
                                         encoding="utf-8")
        notes = redaction_notes(ran.redacted, "failure.log")
        for name in ("pytest.json", "env.txt"):
            notes.extend(redaction_notes(redactor.redact_file(staging / name), name))

        scratch = ScratchDirectory(staging)
        result = selector_result(plan, ran.process, scratch)

        history = HistoryStore.open(request.history_path, create=False) if request.history_path and request.history_path.exists() else None
        try:
            from harness.environment import host_info

            alerts = judge_selector(result, selector, rules=request.rules, history=history, host_key=host_info().host_key,
                                    cwd=catalog.root, display_path=scratch.relative).alerts
            good = known_good(history, selector.name, request.reports_dir) if history is not None else None
        finally:
            if history is not None:
                history.close()

        primary = next((a for a in alerts if a.trigger == request.trigger), None) or (alerts[0] if alerts else None)
        if request.initiative:
            owners = [request.initiative]
        elif primary is not None:
            owners = owners_of(primary.owner) or [selector.owner]
        elif request.trigger:
            owners = owners_of(_owner_of_trigger(request.rules, request.trigger, selector)) or [selector.owner]
        else:
            owners = owners_of(selector.owner) or [selector.owner]
        initiative = owners[0]
        final, folder = _free_final(request.plans_root, initiative, stamp)
        diff = compare(result, good, staging)
        command = reproduction_command(selector, catalog.root)
        reproduced = result.state not in _NOT_REPRODUCED
        rel_final = _relative(final, catalog.root)
        context = {
            "stamp": folder, "selector": selector, "result": result, "alerts": alerts, "primary": primary,
            "requested_trigger": request.trigger, "owners": owners, "initiative": initiative, "good": good,
            "diff": diff, "command": command, "harness_command": _harness_command(request),
            "reproduced": reproduced, "failures": result.failures[:MAX_FAILURES_SHOWN],
            "more_failures": max(0, len(result.failures) - MAX_FAILURES_SHOWN), "trace_lines": TRACE_LINES,
            "log_tail": "" if result.failures or not reproduced else _tail(staging / "failure.log", LOG_TAIL_LINES),
            "directory": rel_final, "authorities": authorities(primary.trigger if primary else request.trigger),
            "thresholds": result.thresholds or {}, "host": environment.host_info(), "git": environment.git_info(catalog.root),
        }
        templates = _environment(request.templates_dir)
        (staging / "document.md").write_text(templates.get_template("escalation_document.md.j2").render(**context),
                                             encoding="utf-8")
        entries = [templates.get_template("fix_plan_entry.md.j2").render(**context, owner=owner).strip() for owner in owners]
        outcome = Reproduction(directory=final, initiative=initiative, owners=owners, result=result, alerts=alerts,
                               primary=primary, known_good=good, diff=diff, command=command, ledger_entries=entries,
                               exit_code=1 if reproduced else 0, notes=notes)
        (staging / "escalation.json").write_text(json.dumps(outcome.to_json() | {"directory": rel_final}, indent=2,
                                                            default=str) + "\n", encoding="utf-8")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        for folder in created:  # only folders this call made, and only if left empty
            try:
                folder.rmdir()
            except OSError:
                pass
    if request.ledger is not None:
        for owner, entry in zip(owners, entries, strict=True):
            append_entry(request.ledger, owner, entry)
    return outcome


def _relative(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def _harness_command(request: ReproduceRequest) -> str:
    if request.trigger:
        return f"harness reproduce --trigger {shlex.quote(request.trigger)}"
    return f"harness reproduce --selector {shlex.quote(request.selector.name)}"


def resolve_selector(catalog: Catalog, rules: RuleSet, selector: str | None, trigger: str | None,
                     history_path: Path | None) -> tuple[Selector, dict[str, Any] | None]:
    """``--selector NAME``, or the selector that fired ``--trigger ID`` last (from history)."""
    if trigger is not None:
        try:
            rules.trigger(trigger)
        except KeyError:
            known = ", ".join(t.id for t in rules.triggers)
            raise ConfigError(f"--trigger: {trigger!r} is not a trigger of {rules.path} (known: {known})") from None
    if selector is not None:
        return catalog.selector(selector), None
    assert trigger is not None
    if history_path is None or not history_path.exists():  # a Path, or a HistoryURL (--history-url)
        raise ConfigError(f"--trigger {trigger}: no history database at {history_path}; name the --selector instead")
    with HistoryStore.open(history_path, create=False) as history:
        fired = last_fired(history, trigger)
    if fired is None:
        raise ConfigError(f"--trigger {trigger}: it has not fired in {history_path}; name the --selector instead")
    if not fired["selector"]:
        raise ConfigError(f"--trigger {trigger}: a run-level trigger (no selector); name the --selector to reproduce")
    return catalog.selector(fired["selector"]), fired
