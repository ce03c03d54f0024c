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
    """How a selector's pytest process ended. Only ``passed`` (and ``skipped``) are good news."""

    PASSED = "passed"                        # exit 0, no failure, no rerun
    SKIPPED = "skipped"                      # exit 0, every test skipped
    FLAKY = "flaky"                          # passed only after reruns (outcome "rerun")
    FAILED = "failed"                        # exit 1: a test failed or errored
    COLLECTION_ERROR = "collection_error"    # a collector failed (exit 2, total 0)
    NO_TESTS = "no_tests"                    # exit 5: nothing collected or all deselected
    TRUNCATED = "truncated"                  # collected - deselected > total: tests went missing
    INTERRUPTED = "interrupted"              # exit 2 without collection error, or stopped by the harness
    INTERNAL_ERROR = "internal_error"        # exit 3 (or an exit code pytest does not define)
    USAGE_ERROR = "usage_error"              # exit 4: bad pytest arguments
    WARNINGS_EXCEEDED = "warnings_exceeded"  # exit 6: --max-warnings exceeded
    REPORT_MISSING = "report_missing"        # no (valid) JSON report: killed, crashed, thread timeout, OOM
    TIMEOUT = "timeout"                      # the harness killed it at the selector's timeout_s
    NOT_RUN = "not_run"                      # not required by the changed files, or the run stopped first


GOOD_STATES = frozenset({SelectorState.PASSED, SelectorState.SKIPPED})
