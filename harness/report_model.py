"""The harness's own result models: what a selector produced, what fired, and ``report.json``.

``report.json`` is ``RunReport.model_dump_json()``; its schema is versioned by
``REPORT_SCHEMA_VERSION`` (bump it on any incompatible change, and document it in
``docs/harness.md``). ``harness report-schema`` prints the JSON Schema.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Re-exported here too: the report speaks these words, and most callers import them from it.
from harness.states import DID_NOT_RUN_STATES, GOOD_STATES, SEVERITY_RANK, SelectorState, Severity  # noqa: F401

REPORT_SCHEMA = "ptycho-harness/report"
# 2: states did_not_run, setup_error and report_invalid (skipped and no_tests are no longer
# written); selectors carry skips, skip_expected and environment; tests carry fixture.
REPORT_SCHEMA_VERSION = 2


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageTimes(Model):
    setup: float | None = None
    call: float | None = None
    teardown: float | None = None

    @property
    def total(self) -> float:
        return sum(value for value in (self.setup, self.call, self.teardown) if value is not None)


class TestRecord(Model):
    """One test (or one failed collector, with ``kind = "collector"``) as the harness sees it."""

    __test__ = False  # not a pytest test class

    nodeid: str
    kind: Literal["test", "collector"] = "test"
    outcome: str
    durations: StageTimes = StageTimes()
    failed_stage: str | None = None
    message: str | None = Field(default=None, description="crash message of the failed stage, else longrepr's E lines")
    locations: list[str] = Field(default_factory=list, description="crash and traceback paths")
    longrepr: str | None = None
    fixture: str | None = Field(default=None, description="the fixture whose setup or teardown failed, when known")
    user_properties: dict[str, Any] = Field(default_factory=dict)

    @property
    def is_failure(self) -> bool:
        return self.outcome in ("failed", "error")

    @property
    def executed(self) -> bool:
        """The test body ran: a call phase was recorded and did not skip (a skip, a deselection
        or an error in setup leaves nothing to judge the code under test by)."""
        if self.kind != "test" or self.outcome == "skipped" or self.failed_stage in ("setup", "collect"):
            return False
        timed = (self.durations.setup, self.durations.call, self.durations.teardown)
        if all(value is None for value in timed):
            return True  # a record without stage timings (built by hand, another format): its outcome decides
        return self.durations.call is not None


class Counts(Model):
    """pytest-json-report's summary with the zero counts it omits filled in."""

    total: int = 0
    collected: int = 0
    deselected: int = 0
    passed: int = 0
    failed: int = 0
    error: int = 0
    skipped: int = 0
    xfailed: int = 0
    xpassed: int = 0
    rerun: int = 0


class ArtifactCheck(Model):
    """One artifact the rules looked at (ARTIF-001/002), with what was found."""

    kind: Literal["checkpoint", "png", "optional"]  # "optional": train_debug.log, reported when present
    property: str
    nodeid: str
    path: str | None
    ok: bool
    size_bytes: int | None = None
    detail: str


class SkipGroup(Model):
    """Tests of one selector skipped for the same reason."""

    reason: str
    count: int
    example: str = Field(description="the node id of one of them")


class SelectorEnvironment(Model):
    """What the selector's pytest process itself ran on, as its harness plugin recorded it."""

    python: str | None = Field(default=None, description="interpreter version")
    executable: str | None = Field(default=None, description="sys.executable inside the selector's process")
    packages: dict[str, str | None] = Field(default_factory=dict, description="installed versions (None: not installed)")


class FigureValue(Model):
    name: str
    nodeid: str
    value: float


class SelectorFiles(Model):
    """Files of a selector inside the run directory (relative paths)."""

    pytest_json: str | None = None
    stdout: str
    stderr: str
    basetemp: str


class SelectorResult(Model):
    """Everything the harness knows about one selector in one run."""

    name: str
    title: str
    owner: str
    argv: list[str]
    env: dict[str, str] = Field(description="the variables the catalog set (the rest is the documented pass-through)")
    state: SelectorState
    reason: str | None = Field(default=None, description="why the state is what it is, in words")
    exit_code: int | None = Field(default=None, description="the pytest process's own exit status")
    report_exitcode: int | None = Field(default=None, description="exitcode inside pytest's JSON report")
    signal: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    wall_s: float | None = Field(default=None, description="measured by the harness around the process")
    cpu_s: float | None = Field(default=None, description="user + system CPU seconds of the selector's whole "
                                "process tree (pytest and everything it started), measured by the harness")
    session_s: float | None = Field(default=None, description="pytest's own session duration")
    tests_s: float | None = Field(default=None, description="sum of the tests' stage durations")
    runtime_s: float | None = Field(default=None, description="the time the runtime rules compare")
    runtime_measure: str = "wall"
    thresholds: dict[str, Any] | None = Field(default=None, description="runtime thresholds in force (seconds)")
    counts: Counts = Counts()
    skips: list[SkipGroup] = Field(default_factory=list, description="skipped tests grouped by reason, most first")
    skip_expected: bool | None = Field(
        default=None, description="for a selector that did not run: whether the catalog expects that here (allow_skip)")
    environment: SelectorEnvironment | None = Field(default=None, description="interpreter and packages the tests saw")
    tests: list[TestRecord] = Field(default_factory=list)
    figures: list[FigureValue] = Field(default_factory=list)
    artifacts: list[ArtifactCheck] = Field(default_factory=list)
    files: SelectorFiles | None = None

    @property
    def failures(self) -> list[TestRecord]:
        return [test for test in self.tests if test.is_failure]

    @property
    def executed(self) -> bool:
        """Some test body ran in this process: runtime rules have something to judge."""
        return any(test.executed for test in self.tests)


class Alert(Model):
    """A fired trigger with its evidence (brief §3.4)."""

    trigger: str
    title: str
    severity: Severity
    owner: str
    sla: str
    fingerprint: str
    selector: str | None = None
    nodeid: str | None = None
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class ResolvedAlert(Model):
    """A fingerprint that fired in an earlier run and did not fire in this one."""

    trigger: str
    fingerprint: str
    selector: str | None
    nodeid: str | None
    first_fired_at: str | None = None
    last_fired_run: str | None = None


class GitInfo(Model):
    sha: str | None = None
    branch: str | None = None
    dirty: bool | None = None


class HostInfo(Model):
    hostname: str
    host_key: str = Field(description="what runtime history is grouped by: $HARNESS_HOST or CPU model x count")
    platform: str
    cpu_model: str | None = None
    cpu_count: int | None = None


class Gate(Model):
    passed: bool
    fail_on: Severity
    blocking: list[str] = Field(default_factory=list, description="fingerprints of alerts at or above fail_on")
    exit_code: int


class RunInfo(Model):
    id: str
    cadence: str
    started_at: str
    finished_at: str
    wall_s: float
    interrupted: bool = False
    status: Literal["passed", "failed", "interrupted"]
    catalog: str
    rules: str
    root: str
    jobs: int
    budget_s: float | None = None
    thresholds: Literal["catalog", "absolute", "baseline"] = "catalog"
    changed_files: list[str] | None = None
    harness_version: str
    git: GitInfo
    host: HostInfo
    versions: dict[str, str | None]
    # "i/n" for one shard of a run (harness run --shard); the shard run ids a merged
    # report was built from (harness merge).
    shard: str | None = None
    merged_from: list[str] | None = None


class RunReport(Model):
    """``report.json``."""

    schema_: str = Field(default=REPORT_SCHEMA, alias="schema")
    schema_version: int = REPORT_SCHEMA_VERSION
    run: RunInfo
    gate: Gate
    selectors: list[SelectorResult]
    alerts: list[Alert]
    resolved: list[ResolvedAlert] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="things the harness could not evaluate, in words")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True, indent=2)
