"""Parse pytest-json-report output and decide what a selector's run actually was.

pytest-json-report (1.5.0, unmaintained) omits zero counts from ``summary``, reports a
collection error as a failed collector with ``total: 0``, leaves ``collected > total`` when
a session is cut short, and writes nothing at all when the process is killed. Each of those
is a state of its own here, never "passed".
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from typing_extensions import NotRequired, TypedDict  # pydantic needs typing_extensions' TypedDict on 3.11

from harness.errors import ConfigError
from harness.report_model import Counts, SelectorState, StageTimes, TestRecord


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
    environment: dict[str, Any] | None = None


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
    tests = to_test_records(report.tests)
    failed_collectors = [c for c in report.collectors or () if c.outcome == "failed"]
    tests.extend(collector_record(c) for c in failed_collectors)
    tests_s = sum(record.durations.total for record in tests if record.kind == "test")
    parsed = ParsedSelector(
        state=SelectorState.PASSED,
        reason="",
        counts=counts,
        tests=tests,
        report_exitcode=report.exitcode,
        session_s=report.duration,
        tests_s=round(tests_s, 6),
        environment=report.environment or None,
    )
    effective_exit = report.exitcode if exit_code is None else exit_code
    failing = counts.failed + counts.error
    missing_tests = counts.collected - counts.deselected - counts.total

    if timed_out:
        parsed.state, parsed.reason = SelectorState.TIMEOUT, "killed by the harness at the selector's timeout_s"
    elif interrupted:
        parsed.state, parsed.reason = SelectorState.INTERRUPTED, "stopped by the harness (SIGINT/SIGTERM)"
    elif failed_collectors:
        names = ", ".join(c.nodeid or "<session>" for c in failed_collectors[:3])
        parsed.state, parsed.reason = SelectorState.COLLECTION_ERROR, f"collection failed: {names}"
    elif report.exitcode in (3, 4):
        parsed.state = _EXIT_STATES[report.exitcode]
        parsed.reason = f"pytest exit code {report.exitcode}"
    elif report.exitcode == 5 or (counts.total == 0 and counts.collected - counts.deselected == 0):
        parsed.state, parsed.reason = SelectorState.NO_TESTS, "no tests collected (or all deselected)"
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
        parsed.state = SelectorState.FAILED
        parsed.reason = f"{counts.failed} failed, {counts.error} errors"
        if missing_tests > 0:
            parsed.reason += f"; {missing_tests} selected tests have no result"
    elif report.exitcode not in (0, 1):
        parsed.state, parsed.reason = SelectorState.INTERNAL_ERROR, f"unknown pytest exit code {report.exitcode}"
    elif counts.rerun:
        parsed.state = SelectorState.FLAKY
        parsed.reason = f"{counts.rerun} test(s) passed only after a rerun"
    elif counts.total and counts.skipped == counts.total:
        parsed.state, parsed.reason = SelectorState.SKIPPED, "every test was skipped"
    else:
        parsed.reason = f"{counts.passed} passed"
    if effective_exit not in (report.exitcode, 7) and parsed.state in (SelectorState.PASSED, SelectorState.SKIPPED):
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

