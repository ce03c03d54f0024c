"""How a selector ended and how grave an alert is: the words rules, reports and history share.

Kept apart from the pydantic report models so that loading the rules before a run starts
costs no model building (``harness run`` launches its first pytest process sooner).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

Severity = Literal["info", "warning", "medium", "high", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "medium": 2, "high": 3, "critical": 4}


class SelectorState(StrEnum):
    """How a selector's pytest process ended. Only ``passed`` is good news: a selector whose
    tests never executed (``did_not_run``) says nothing about the code under test."""

    PASSED = "passed"                        # exit 0, tests executed, no failure, no rerun
    DID_NOT_RUN = "did_not_run"              # every test skipped or deselected, or none collected
    FLAKY = "flaky"                          # passed only after reruns (outcome "rerun")
    FAILED = "failed"                        # a test failed in its call (the code under test)
    SETUP_ERROR = "setup_error"              # tests errored in setup/teardown (fixtures) only, none in a call
    COLLECTION_ERROR = "collection_error"    # a collector failed (exit 2, total 0)
    TRUNCATED = "truncated"                  # collected - deselected > total: tests went missing
    INTERRUPTED = "interrupted"              # exit 2 without collection error, or stopped by the harness
    INTERNAL_ERROR = "internal_error"        # exit 3 (or an exit code pytest does not define)
    USAGE_ERROR = "usage_error"              # exit 4: bad pytest arguments
    WARNINGS_EXCEEDED = "warnings_exceeded"  # exit 6: --max-warnings exceeded
    REPORT_MISSING = "report_missing"        # no (valid) JSON report: killed, crashed, thread timeout, OOM
    REPORT_INVALID = "report_invalid"        # a report pytest cannot have written: unknown outcome, impossible duration
    TIMEOUT = "timeout"                      # the harness killed it at the selector's timeout_s
    NOT_RUN = "not_run"                      # not required by the changed files, or the run stopped first
    # Older reports and history rows only; today both are ``did_not_run``.
    SKIPPED = "skipped"                      # exit 0, every test skipped
    NO_TESTS = "no_tests"                    # exit 5: nothing collected or all deselected


GOOD_STATES = frozenset({SelectorState.PASSED})
# The selector was started but none of its tests executed: skipped, deselected, not collected.
DID_NOT_RUN_STATES = frozenset({SelectorState.DID_NOT_RUN, SelectorState.SKIPPED, SelectorState.NO_TESTS})
# Runs whose time says nothing about the code under test: never started, stopped, or no test body
# executed (skipped, nothing collected, fixtures or collection failed, a crafted report). Runtime
# rules, baselines and the dashboard's runtime charts leave them out.
UNTIMED_STATES = frozenset({
    SelectorState.NOT_RUN, SelectorState.INTERRUPTED, *DID_NOT_RUN_STATES, SelectorState.SETUP_ERROR,
    SelectorState.COLLECTION_ERROR, SelectorState.USAGE_ERROR, SelectorState.REPORT_INVALID,
})
# The states as a reader says them; the others read well as they are.
STATE_LABELS: dict[str, str] = {
    SelectorState.DID_NOT_RUN: "did not run", SelectorState.SKIPPED: "did not run", SelectorState.NO_TESTS: "did not run",
    SelectorState.SETUP_ERROR: "errored in setup", SelectorState.COLLECTION_ERROR: "collection error",
    SelectorState.REPORT_MISSING: "no report", SelectorState.REPORT_INVALID: "invalid report",
    SelectorState.NOT_RUN: "not required", SelectorState.INTERNAL_ERROR: "internal error",
    SelectorState.USAGE_ERROR: "usage error", SelectorState.WARNINGS_EXCEEDED: "warnings exceeded",
}
# The outcomes pytest (with pytest-json-report and pytest-rerunfailures) writes for a test;
# anything else in a report was not written by pytest.
TEST_OUTCOMES = frozenset({"passed", "failed", "error", "skipped", "xfailed", "xpassed", "rerun"})
