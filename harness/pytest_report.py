"""Parse pytest-json-report output and decide what a selector's run actually was.

pytest-json-report (1.5.0, unmaintained) omits zero counts from ``summary``, reports a
collection error as a failed collector with ``total: 0``, leaves ``collected > total`` when
a session is cut short, and writes nothing at all when the process is killed. Each of those
is a state of its own here, never "passed".
"""

from __future__ import annotations

import ast
import gc
import math
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict  # pydantic needs typing_extensions' TypedDict on 3.11

from harness.errors import ConfigError
from harness.report_model import Counts, SelectorEnvironment, SelectorState, SkipGroup, StageTimes, TestRecord
from harness.states import TEST_OUTCOMES


class _Lenient(BaseModel):
    """The report is someone else's schema: keep what we know, ignore what we do not."""

    model_config = ConfigDict(extra="ignore")


# A test entry is validated into plain dicts (TypedDicts), not model instances: a 10,000-test
# report has some 40,000 of these objects, and dicts are several times cheaper to build. The
# validation (types, required keys, error locations such as ``tests.12.nodeid``) is the same.
_IGNORE_EXTRA = ConfigDict(extra="ignore")


class Crash(TypedDict, total=False):
    __pydantic_config__ = _IGNORE_EXTRA  # type: ignore[misc]
    path: str | None
    lineno: int | None
    message: str


class TracebackEntry(TypedDict, total=False):
    __pydantic_config__ = _IGNORE_EXTRA  # type: ignore[misc]
    path: str | None
    lineno: int | None
    message: str | None


class Stage(TypedDict, total=False):
    """setup / call / teardown; absent keys mean pytest-json-report's defaults (0 s, passed)."""

    __pydantic_config__ = _IGNORE_EXTRA  # type: ignore[misc]
    duration: float
    outcome: str
    crash: Crash | None
    traceback: list[TracebackEntry] | None
    longrepr: str | None


class JsonTest(TypedDict):
    __pydantic_config__ = _IGNORE_EXTRA  # type: ignore[misc]
    nodeid: str
    outcome: str
    lineno: NotRequired[int | None]
    setup: NotRequired[Stage | None]
    call: NotRequired[Stage | None]
    teardown: NotRequired[Stage | None]
    user_properties: NotRequired[list[Any] | None]


class CollectorItem(_Lenient):
    nodeid: str
    type: str | None = None


class Collector(_Lenient):
    nodeid: str
    outcome: str
    result: list[CollectorItem] = Field(default_factory=list)
    longrepr: str | None = None


class JsonSummary(_Lenient):
    model_config = ConfigDict(extra="allow")
    total: int = 0
    collected: int = 0
    deselected: int = 0


class PytestJsonReport(_Lenient):
    """The top level of a pytest-json-report file."""

    created: float | None = None
    duration: float | None = None
    exitcode: int
    root: str | None = None
    environment: dict[str, Any] = Field(default_factory=dict)
    summary: JsonSummary
    collectors: list[Collector] | None = None
    tests: list[JsonTest] = Field(default_factory=list)


@dataclass
class ParsedSelector:
    """What one pytest process amounted to."""

    state: SelectorState
    reason: str
    counts: Counts
    tests: list[TestRecord]
    report_exitcode: int | None = None
    session_s: float | None = None
    tests_s: float | None = None
    environment: SelectorEnvironment | None = None
    skips: list[SkipGroup] = field(default_factory=list)


_TEST_RECORDS = TypeAdapter(list[TestRecord])
_E_LINE = re.compile(r"^E\s{2,}(.*)$", re.MULTILINE)
_EXIT_STATES = {
    2: SelectorState.INTERRUPTED,
    3: SelectorState.INTERNAL_ERROR,
    4: SelectorState.USAGE_ERROR,
    5: SelectorState.NO_TESTS,
    6: SelectorState.WARNINGS_EXCEEDED,
}


def load_report(path: Path) -> PytestJsonReport:
    """Read one report file; a ConfigError names the file and what is wrong with it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: report file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read report: {exc.strerror}") from None
    return parse_report_text(text, source=str(path))


def parse_report_text(text: str, source: str = "<report>") -> PytestJsonReport:
    """Validate the JSON text of a pytest-json-report file."""
    try:
        with bulk_allocation():
            return PytestJsonReport.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or "(top level)"
        problem = first["msg"]
        if first["type"] == "json_invalid":
            problem = f"not valid JSON ({first.get('ctx', {}).get('error', problem)}); truncated?"
        raise ConfigError(f"{source}: {location}: {problem}") from None


def user_properties(raw: list[Any] | None) -> dict[str, Any]:
    """pytest-json-report stores ``record_property`` as a list of one-key dicts; flatten it."""
    flat: dict[str, Any] = {}
    for entry in raw or ():
        if isinstance(entry, dict):
            flat.update(entry)
        elif isinstance(entry, (list, tuple)) and len(entry) == 2:
            flat[str(entry[0])] = entry[1]
    return flat


def error_lines(longrepr: str | None) -> str | None:
    """The ``E   ...`` lines of a longrepr (the exception), else its last non-empty line."""
    if not longrepr:
        return None
    lines = _E_LINE.findall(longrepr)
    if lines:
        return "\n".join(line.rstrip() for line in lines)
    tail = [line for line in longrepr.strip().splitlines() if line.strip()]
    return tail[-1].strip() if tail else None


_SKIP_PREFIX = re.compile(r"^(Skipped|Deselected):\s*")
# Where a fixture's name shows in the longrepr of a failed setup/teardown: pytest's "fixture 'x'
# not found", the fixture's own ``def`` line (long tracebacks start in the fixture), or the
# "file:line: in name" header of short tracebacks.
_FIXTURE_PATTERNS = (
    re.compile(r"fixture '([^']+)' not found"),
    re.compile(r"^>?\s*(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", re.MULTILINE),  # ">": the failing line
    re.compile(r"^\S[^\n]*:\d+: in ([A-Za-z_]\w*)\s*$", re.MULTILINE),
)


def skip_reason(longrepr: str | None) -> str | None:
    """The reason of a skip: pytest-json-report stores it as the repr of ``(path, line, "Skipped: why")``."""
    if not longrepr:
        return None
    text = longrepr.strip()
    if text.startswith("(") and text.endswith(")"):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = None
        if isinstance(value, tuple) and len(value) == 3 and isinstance(value[2], str):
            text = value[2]
    return _SKIP_PREFIX.sub("", text.strip()).strip() or None


def fixture_name(longrepr: str | None) -> str | None:
    """The fixture a setup/teardown error happened in, read from its longrepr (None if unsure)."""
    for pattern in _FIXTURE_PATTERNS:
        match = pattern.search(longrepr or "")
        if match:
            return match.group(1)
    return None


def _duration(stage: Stage | None) -> float | None:
    return None if stage is None else stage.get("duration", 0.0)


def test_record_fields(test: JsonTest) -> dict[str, Any]:
    """One JSON test entry as TestRecord fields, with the error text of the stage that failed."""
    setup, call, teardown = test.get("setup"), test.get("call"), test.get("teardown")
    outcome = test["outcome"]
    failed_stage = None
    source_stage: Stage | None = None
    for name, stage in (("setup", setup), ("call", call), ("teardown", teardown)):
        if stage is not None and stage.get("outcome", "passed") == "failed":
            failed_stage, source_stage = name, stage
            break
    if source_stage is None and outcome in ("xfailed", "skipped", "xpassed"):
        # xfail/skip keep their reason too: the crash of the skipped stage, else its longrepr.
        source_stage = next((s for s in (setup, call, teardown)
                             if s is not None and s.get("outcome", "passed") == "skipped"), None)
    message = None
    locations: list[str] = []
    longrepr = None
    if source_stage is not None:
        longrepr = source_stage.get("longrepr")
        crash = source_stage.get("crash")
        crash_message = crash.get("message") if crash is not None else None
        if outcome == "skipped" and not crash_message:
            message = skip_reason(longrepr)
        else:
            message = crash_message or error_lines(longrepr)
        if crash is not None and crash.get("path"):
            locations.append(crash["path"])  # type: ignore[arg-type]
        for entry in source_stage.get("traceback") or ():
            path = entry.get("path")
            if path and path not in locations:
                locations.append(path)
    return {
        "nodeid": test["nodeid"],
        "outcome": outcome,
        "durations": {"setup": _duration(setup), "call": _duration(call), "teardown": _duration(teardown)},
        "failed_stage": failed_stage,
        "message": message,
        "locations": locations,
        "longrepr": longrepr if failed_stage else None,
        "fixture": fixture_name(longrepr) if failed_stage in ("setup", "teardown") else None,
        "user_properties": user_properties(test.get("user_properties")),
    }


@contextmanager
def bulk_allocation() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects at once.

    Parsing a 10,000-test report allocates ~10^5 containers; each allocation burst triggers
    collections that walk the whole (growing) heap, which cost more than the parsing itself.
    Nothing built here forms reference cycles, so nothing is left for the collector; it is
    re-enabled on exit (only if it was enabled on entry, so nesting and threads stay safe).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def to_test_records(tests: list[JsonTest]) -> list[TestRecord]:
    """All tests at once: one validation of the whole list in pydantic-core is about twice as fast
    as building the records one by one (a 10,000-test report must parse in well under a second)."""
    with bulk_allocation():
        return _TEST_RECORDS.validate_python([test_record_fields(test) for test in tests])


def to_test_record(test: JsonTest) -> TestRecord:
    return to_test_records([test])[0]


def collector_record(collector: Collector) -> TestRecord:
    """A failed collector (import error, syntax error) as a record the rules can match."""
    locations = []
    match = re.search(r"while importing test module '([^']+)'", collector.longrepr or "")
    if match:
        locations.append(match.group(1))
    return TestRecord(
        nodeid=collector.nodeid or "<session>",
        kind="collector",
        outcome="error",
        failed_stage="collect",
        message=error_lines(collector.longrepr),
        locations=locations,
        longrepr=collector.longrepr,
    )


def counts_of(report: PytestJsonReport) -> Counts:
    """The summary with its omitted zero counts filled in."""
    summary = report.summary.model_dump()
    known = {name: int(summary.get(name) or 0) for name in Counts.model_fields}
    return Counts(**known)


def report_problems(report: PytestJsonReport) -> list[str]:
    """What in a report pytest cannot have written: an outcome it never produces, a stage or
    session duration that is missing, not a number, infinite or negative. Such a report is
    crafted or corrupted and decides nothing (its state is ``report_invalid``)."""
    problems: list[str] = []

    def bad(value: object) -> bool:
        return not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0

    if report.duration is not None and bad(report.duration):
        problems.append(f"session duration {report.duration!r}")
    for index, test in enumerate(report.tests):
        name = test.get("nodeid") or f"tests[{index}]"
        if test["outcome"] not in TEST_OUTCOMES:
            problems.append(f"{name}: outcome {test['outcome']!r} (pytest writes {', '.join(sorted(TEST_OUTCOMES))})")
        for stage_name in ("setup", "call", "teardown"):
            stage = test.get(stage_name)
            if stage is None:
                continue
            if "duration" not in stage:
                problems.append(f"{name}: {stage_name} has no duration")
            elif bad(stage["duration"]):
                problems.append(f"{name}: {stage_name} duration {stage['duration']!r}")
        if len(problems) >= 20:
            break
    return problems


def skip_groups(tests: list[TestRecord], collectors: Iterable[Collector] = ()) -> list[SkipGroup]:
    """Skipped tests (and modules skipped at collection) grouped by reason, most frequent first."""
    groups: dict[str, list[str]] = {}
    for test in tests:
        if test.kind == "test" and test.outcome == "skipped":
            groups.setdefault(test.message or "no reason given", []).append(test.nodeid)
    for collector in collectors:
        if collector.outcome == "skipped":
            groups.setdefault(skip_reason(collector.longrepr) or "no reason given", []).append(collector.nodeid)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [SkipGroup(reason=reason, count=len(nodeids), example=nodeids[0]) for reason, nodeids in ordered]


def describe_skips(groups: list[SkipGroup], limit: int = 3) -> str:
    """``"1 skipped — CUDA GPU required"``; several reasons: ``"5 skipped — 3× no GPU; 2× slow"``."""
    total = sum(group.count for group in groups)
    if len(groups) == 1:
        return f"{total} skipped — {groups[0].reason}"
    parts = [f"{group.count}× {group.reason}" for group in groups[:limit]]
    if len(groups) > limit:
        parts.append(f"{len(groups) - limit} more reasons")
    return f"{total} skipped — {'; '.join(parts)}"


def selector_environment_of(report: PytestJsonReport) -> SelectorEnvironment | None:
    """The interpreter and package versions the harness plugin recorded inside the process."""
    recorded = report.environment or {}
    if not isinstance(recorded, dict) or not (recorded.get("executable") or recorded.get("python")):
        return None
    packages = recorded.get("packages")
    packages = {str(k): (None if v is None else str(v)) for k, v in packages.items()} if isinstance(packages, dict) else {}
    return SelectorEnvironment(
        python=None if recorded.get("python") is None else str(recorded["python"]),
        executable=None if recorded.get("executable") is None else str(recorded["executable"]),
        packages=packages,
    )


def _setup_error_reason(tests: list[TestRecord]) -> str:
    errored = [t for t in tests if t.kind == "test" and t.is_failure]
    first = errored[0]
    where = f"fixture {first.fixture!r}" if first.fixture else "a fixture"
    line = (first.message or "").strip().splitlines()
    what = f": {line[0][:200]}" if line else ""
    stages = sorted({t.failed_stage or "setup" for t in errored})
    return f"{len(errored)} error(s) in {' and '.join(stages)} of {where}{what}"


def classify(
    report: PytestJsonReport | None,
    exit_code: int | None,
    *,
    timed_out: bool = False,
    interrupted: bool = False,
    missing_reason: str | None = None,
) -> ParsedSelector:
    """Decide the selector state from the report (if any) and the process's exit status."""
    if report is None:
        if timed_out:
            state, reason = SelectorState.TIMEOUT, "killed by the harness at the selector's timeout_s"
        elif interrupted:
            state, reason = SelectorState.INTERRUPTED, "stopped by the harness (SIGINT/SIGTERM) before pytest wrote a report"
        else:
            state = SelectorState.REPORT_MISSING
            reason = missing_reason or "pytest wrote no JSON report (killed, crashed, thread timeout or out of memory)"
        return ParsedSelector(state=state, reason=reason, counts=Counts(), tests=[])

    counts = counts_of(report)
    problems = report_problems(report)
    tests = to_test_records(report.tests)
    failed_collectors = [c for c in report.collectors or () if c.outcome == "failed"]
    tests.extend(collector_record(c) for c in failed_collectors)
    finite = [record.durations.total for record in tests if record.kind == "test"]
    tests_s = sum(value for value in finite if math.isfinite(value))
    parsed = ParsedSelector(
        state=SelectorState.PASSED,
        reason="",
        counts=counts,
        tests=tests,
        report_exitcode=report.exitcode,
        session_s=report.duration if report.duration is not None and math.isfinite(report.duration) else None,
        tests_s=round(tests_s, 6),
        environment=selector_environment_of(report),
        skips=skip_groups(tests, report.collectors or []),
    )
    effective_exit = report.exitcode if exit_code is None else exit_code
    failing = counts.failed + counts.error
    missing_tests = counts.collected - counts.deselected - counts.total
    test_records = [t for t in tests if t.kind == "test"]
    call_failures = [t for t in test_records if t.is_failure and t.failed_stage not in ("setup", "teardown")]

    if timed_out:
        parsed.state, parsed.reason = SelectorState.TIMEOUT, "killed by the harness at the selector's timeout_s"
    elif interrupted:
        parsed.state, parsed.reason = SelectorState.INTERRUPTED, "stopped by the harness (SIGINT/SIGTERM)"
    elif problems:
        parsed.state = SelectorState.REPORT_INVALID
        parsed.reason = f"not a report pytest writes: {'; '.join(problems[:3])}"
        if len(problems) > 3:
            parsed.reason += f"; {len(problems) - 3} more"
    elif failed_collectors:
        first = failed_collectors[0]
        names = ", ".join(c.nodeid or "<session>" for c in failed_collectors[:3])
        message = (error_lines(first.longrepr) or "").strip().splitlines()
        parsed.state = SelectorState.COLLECTION_ERROR
        parsed.reason = f"collection failed: {names}" + (f": {message[0][:200]}" if message else "")
    elif report.exitcode in (3, 4):
        parsed.state = _EXIT_STATES[report.exitcode]
        parsed.reason = f"pytest exit code {report.exitcode}"
    elif report.exitcode == 5 or (counts.total == 0 and counts.collected - counts.deselected == 0):
        parsed.state = SelectorState.DID_NOT_RUN
        if parsed.skips:
            parsed.reason = describe_skips(parsed.skips) + " (at collection)"
        elif counts.deselected:
            parsed.reason = f"all {counts.deselected} collected tests deselected"
        else:
            parsed.reason = "no tests collected"
    elif missing_tests > 0 and not failing:
        parsed.state = SelectorState.TRUNCATED
        parsed.reason = (
            f"{missing_tests} of {counts.collected - counts.deselected} selected tests have no result "
            "(session cut short: --session-timeout, -x, xdist worker lost)"
        )
    elif report.exitcode in _EXIT_STATES:
        parsed.state = _EXIT_STATES[report.exitcode]
        parsed.reason = f"pytest exit code {report.exitcode}"
    elif failing or report.exitcode == 1:
        if failing and not call_failures and test_records and any(t.is_failure for t in test_records):
            # Only fixtures failed: the code under test was never (or completely) exercised.
            parsed.state, parsed.reason = SelectorState.SETUP_ERROR, _setup_error_reason(test_records)
        else:
            parsed.state = SelectorState.FAILED
            parsed.reason = f"{counts.failed} failed, {counts.error} errors"
        if missing_tests > 0:
            parsed.reason += f"; {missing_tests} selected tests have no result"
    elif report.exitcode not in (0, 1):
        parsed.state, parsed.reason = SelectorState.INTERNAL_ERROR, f"unknown pytest exit code {report.exitcode}"
    elif counts.rerun:
        parsed.state = SelectorState.FLAKY
        parsed.reason = f"{counts.rerun} test(s) passed only after a rerun"
    elif test_records and not any(t.executed for t in test_records):
        parsed.state = SelectorState.DID_NOT_RUN
        parsed.reason = describe_skips(parsed.skips) if parsed.skips else "no test executed"
        if counts.deselected:
            parsed.reason += f"; {counts.deselected} deselected"
    elif not test_records and counts.total and counts.skipped == counts.total:
        parsed.state = SelectorState.DID_NOT_RUN
        parsed.reason = f"{counts.skipped} skipped"
    else:
        parsed.reason = f"{counts.passed} passed"
        if counts.skipped:
            parsed.reason += f", {describe_skips(parsed.skips) if parsed.skips else f'{counts.skipped} skipped'}"
    if effective_exit not in (report.exitcode, 7) and parsed.state in (SelectorState.PASSED, SelectorState.DID_NOT_RUN):
        # The process disagrees with its own report (a plugin changed the status at exit).
        parsed.state = SelectorState.INTERNAL_ERROR
        parsed.reason = f"process exit code {effective_exit} but the report says {report.exitcode}"
    if exit_code == 7 and parsed.state == SelectorState.PASSED:
        parsed.state, parsed.reason = SelectorState.FLAKY, "pytest-rerunfailures --fail-on-flaky (exit 7)"
    return parsed


def read_for_classification(path: Path) -> tuple[PytestJsonReport | None, str | None]:
    """The report if it exists and validates; otherwise None and why (never raises)."""
    try:
        return load_report(path), None
    except ConfigError as exc:
        return None, str(exc)

