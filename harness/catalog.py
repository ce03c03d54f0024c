"""The selector catalog: which pytest selectors exist, how to run them, and on which cadence.

The catalog is data (``harness/catalog.toml``) validated here with pydantic; an invalid file
fails with a message naming the file, the field and what was expected.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError, read_config_text

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
CADENCE_NAMES = ("pr", "nightly", "weekly", "manual")
CADENCE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def regular_expressions(values: tuple[str, ...]) -> tuple[str, ...]:
    """``values`` unchanged once each compiles (a field validator's check, for the catalog and the
    rules alike); a ValueError names the first that does not."""
    for value in values:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression {value!r}: {exc}") from None
    return values


class StrictModel(BaseModel):
    """Unknown keys are typos: reject them instead of silently ignoring a setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class RuntimeSpec(StrictModel):
    """Runtime thresholds of one selector (brief §2.3).

    ``mode = "absolute"`` compares against the ``*_s`` numbers; ``mode = "baseline"`` multiplies
    the calibrated baseline of this host (or ``baseline_s``) by the ``*_factor`` numbers.
    ``measure`` says which time is compared: the harness's own wall clock of the pytest process
    (``wall``), pytest's session duration (``session``) or the sum of the tests' stage
    durations (``tests``).
    """

    mode: Literal["absolute", "baseline"] = "absolute"
    measure: Literal["wall", "session", "tests"] = "wall"
    baseline_s: float | None = Field(default=None, gt=0)
    critical_s: float | None = Field(default=None, gt=0)
    warning_s: float | None = Field(default=None, gt=0)
    suspicious_below_s: float | None = Field(default=None, gt=0)
    critical_factor: float = Field(default=2.5, gt=0)
    warning_factor: float = Field(default=1.7, gt=0)
    suspicious_factor: float = Field(default=0.55, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> RuntimeSpec:
        if self.critical_s and self.warning_s and self.warning_s > self.critical_s:
            raise ValueError("warning_s must not exceed critical_s")
        if self.suspicious_below_s and self.warning_s and self.suspicious_below_s >= self.warning_s:
            raise ValueError("suspicious_below_s must be below warning_s")
        return self


class ArtifactSpec(StrictModel):
    """Which ``user_properties`` of the selector's tests name artifacts to check (ARTIF-001/002)."""

    checkpoint_property: str | None = None
    checkpoint_required_key: str = "hyper_parameters"
    png_properties: tuple[str, ...] = ()
    png_shape_property: str | None = None
    min_png_bytes: int = Field(default=1024, ge=0)
    # Optional artifacts (brief §3.1 train_debug.log, debug mode only), looked for beside the
    # recorded PNGs (the test's output_dir): reported when present, never an alert when absent.
    optional_files: tuple[str, ...] = ()


class FigureSpec(StrictModel):
    """A quality figure a selector records with ``record_property`` and QUAL-001 watches."""

    name: str
    direction: Literal["higher", "lower"] = "higher"
    tolerance: float = Field(default=0.0, ge=0)
    baseline: float | None = None
    minimum: float | None = None
    maximum: float | None = None


class Selector(StrictModel):
    """One pytest invocation the harness runs as a unit (brief §2.1)."""

    name: str
    title: str
    args: tuple[str, ...] = Field(min_length=1)
    owner: str
    priority: Literal["high", "medium", "low"] = "medium"
    brief: str | None = None
    description: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    test_timeout_s: float = Field(default=300, gt=0)
    timeout_method: Literal["signal", "thread"] = "signal"
    timeout_s: float = Field(default=1800, gt=0)
    cpus: int = Field(default=1, ge=1)
    reruns: int = Field(default=0, ge=0)
    paths: tuple[str, ...] = ()
    runtime: RuntimeSpec = RuntimeSpec()
    artifacts: ArtifactSpec | None = None
    figures: tuple[FigureSpec, ...] = ()
    # `harness run --shard`: "test" splits this selector's test ids across the shards.
    shard_by: Literal["selector", "test"] = "selector"
    # A selector whose tests all skip did not run. That fails the gate (HARNESS-002) unless it is
    # expected: everywhere (true), in the cadences named, or when every skip reason matches one of
    # expected_skip_reasons (regular expressions, case-insensitive; e.g. "CUDA" on CPU runners).
    allow_skip: bool | tuple[str, ...] = False
    expected_skip_reasons: tuple[str, ...] = ()

    @field_validator("expected_skip_reasons")
    @classmethod
    def _skip_patterns(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return regular_expressions(values)

    def skip_expected(self, cadence: str | None, reasons: list[str]) -> bool:
        """Whether a run of this selector in ``cadence`` whose tests all skipped for ``reasons``
        is what the catalog expects (then it does not fail the gate)."""
        if self.allow_skip is True or (cadence is not None and not isinstance(self.allow_skip, bool)
                                       and cadence in self.allow_skip):
            return True
        patterns = [re.compile(p, re.IGNORECASE) for p in self.expected_skip_reasons]
        return bool(patterns and reasons) and all(any(p.search(reason) for p in patterns) for reason in reasons)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_PATTERN.match(value):
            raise ValueError("must be lower_snake_case (letters, digits, underscores)")
        return value

    @model_validator(mode="after")
    def _timeouts(self) -> Selector:
        if self.timeout_s < self.test_timeout_s:
            raise ValueError(
                f"timeout_s ({self.timeout_s}) is the whole selector's limit and must be at least "
                f"test_timeout_s ({self.test_timeout_s})"
            )
        return self


class Cadence(StrictModel):
    """When a group of selectors runs (brief §2.2) and what it may cost."""

    name: str
    description: str = ""
    selectors: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    budget_s: float | None = Field(default=None, gt=0)
    environment_capture: Literal["basic", "full"] = "basic"
    any_selector: bool = False
    # `harness serve`: cron schedule in UTC, 5 fields (or 6, the last one seconds).
    schedule: str | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            from croniter import croniter

            if not croniter.is_valid(value):
                raise ValueError(f"{value!r} is not a cron expression (e.g. '17 3 * * *': 03:17 UTC daily)")
        return value


# --- `harness prune`: how long each kind of evidence is kept (brief §3.2) -------------------------
MIN_REGRESSION_DAYS = 90  # brief §3.2: keep regression evidence for >= 3 months


class RetentionSpec(StrictModel):
    """``[retention]``: what `harness prune` may remove, by kind of evidence.

    Regression evidence (report directories and the history rows of their runs, superseded
    baselines) is kept at least 90 days; the alert delivery log (delivered messages, events,
    ended silences) for ``delivery_log_days``; escalation evidence (``plans/active/*/reports/*/
    escalation/``) forever. Whatever the age, prune keeps each selector's latest result, last
    passing and last known-good run, open alerts and the current baselines.
    """

    regression_evidence_days: int = MIN_REGRESSION_DAYS
    delivery_log_days: int = Field(default=90, ge=1)
    escalation_evidence: Literal["forever"] = "forever"

    @field_validator("regression_evidence_days")
    @classmethod
    def _at_least_three_months(cls, value: int) -> int:
        if value < MIN_REGRESSION_DAYS:
            raise ValueError(f"must be at least {MIN_REGRESSION_DAYS} (brief §3.2: keep regression evidence "
                             f"for >= 3 months), got {value}")
        return value


class PackageCheck(StrictModel):
    """``harness doctor``: a module the catalog's interpreter must import, at least ``minimum``."""

    kind: Literal["package"]
    module: str
    minimum: str | None = Field(default=None, pattern=r"^\d+(\.\d+)*$")
    id: str | None = None
    title: str | None = None
    fix: str | None = Field(default=None, description="how to install it; `pip` is run by the catalog's interpreter")


class DatasetCheck(StrictModel):
    """``harness doctor``: a data file the project's own code locates (``module:function`` returning a path,
    run in the catalog's interpreter), an .npz holding ``keys`` (each entry: one of these names);
    ``generate`` (``module:function``) creates it under ``doctor --fix``."""

    kind: Literal["dataset"]
    locate: str = Field(pattern=r"^[\w.]+:\w+$")
    generate: str | None = Field(default=None, pattern=r"^[\w.]+:\w+$")
    keys: tuple[tuple[str, ...], ...] = ()
    stands_in_for: str | None = None
    id: str = "dataset"
    title: str = "Dataset present"


class SelectorPassesCheck(StrictModel):
    """``harness doctor``: the selector's last recorded run (or a run now, with --run) passed the gate,
    within its ``limit`` runtime threshold."""

    kind: Literal["selector_passes"]
    selector: str
    limit: Literal["critical", "warning"] = "critical"
    id: str | None = None


class SelectorRunsCheck(StrictModel):
    """``harness doctor``: run the selector now (a wiring test); ``fix`` is the advice when its test fails."""

    kind: Literal["selector_runs"]
    selector: str
    id: str
    title: str
    fix: str | None = None


class CpuOnlyCheck(StrictModel):
    """``harness doctor``: these selectors (and the CI workflows) pin ``CUDA_VISIBLE_DEVICES=""``."""

    kind: Literal["cpu_only"]
    selectors: tuple[str, ...] = Field(min_length=1)
    id: str = "cpu_only"


class GuardrailsCheck(StrictModel):
    """``harness doctor`` (informational): ``selector`` has its runtime guardrails and the rules carry ``triggers``."""

    kind: Literal["guardrails"]
    selector: str
    triggers: tuple[str, ...] = ()
    id: str = "guardrails"


DoctorCheck = Annotated[PackageCheck | DatasetCheck | SelectorPassesCheck | SelectorRunsCheck | CpuOnlyCheck
                        | GuardrailsCheck, Field(discriminator="kind")]


class DoctorSpec(StrictModel):
    """``[doctor]``: the project's own checks, beside the generic ones doctor runs for any catalog."""

    checks: tuple[DoctorCheck, ...] = ()


class Catalog(StrictModel):
    """The whole catalog file, with the root its selectors run in."""

    version: Literal[1] = 1
    path: Path
    root: Path
    rules: Path | None = None
    python: str | None = None
    pytest_args: tuple[str, ...] = ()
    # Variables of the harness's environment that selectors also get, beyond the documented
    # defaults (harness.selector_env): names or shell-style patterns such as "MY_PROJECT_*".
    pass_env: tuple[str, ...] = ()
    selectors: dict[str, Selector]
    cadences: dict[str, Cadence]
    retention: RetentionSpec = RetentionSpec()  # what `harness prune` may remove
    doctor: DoctorSpec = DoctorSpec()

    @model_validator(mode="after")
    def _doctor_references(self) -> Catalog:
        for index, check in enumerate(self.doctor.checks):
            names = getattr(check, "selectors", None) or ([check.selector] if hasattr(check, "selector") else [])
            for name in names:
                if name not in self.selectors:
                    raise ValueError(f"doctor.checks.{index}: names unknown selector {name!r} "
                                     f"(known: {', '.join(sorted(self.selectors))})")
        return self

    @model_validator(mode="after")
    def _references(self) -> Catalog:
        for pattern in self.pass_env:
            if not re.fullmatch(r"[A-Za-z_*?][A-Za-z0-9_*?]*", pattern):
                raise ValueError(f"pass_env: {pattern!r} is not a variable name or a pattern such as MY_PROJECT_*")
        for selector in self.selectors.values():
            if not isinstance(selector.allow_skip, bool):
                for name in selector.allow_skip:
                    if name not in self.cadences:
                        raise ValueError(f"selectors.{selector.name}.allow_skip names unknown cadence {name!r} "
                                         f"(known: {', '.join(sorted(self.cadences))})")
        for cadence in self.cadences.values():
            for name in cadence.selectors:
                if name not in self.selectors:
                    known = ", ".join(sorted(self.selectors))
                    raise ValueError(
                        f"cadences.{cadence.name}.selectors names unknown selector {name!r} "
                        f"(known: {known})"
                    )
        return self

    def cadence(self, name: str) -> Cadence:
        """The cadence called ``name``, or a ConfigError listing the valid names."""
        try:
            return self.cadences[name]
        except KeyError:
            raise ConfigError(
                f"{self.path}: no cadence {name!r} (valid: {', '.join(sorted(self.cadences))})"
            ) from None

    def selector(self, name: str) -> Selector:
        """The selector called ``name``, or a ConfigError listing the valid names."""
        try:
            return self.selectors[name]
        except KeyError:
            raise ConfigError(
                f"{self.path}: no selector {name!r} (valid: {', '.join(sorted(self.selectors))})"
            ) from None

    def python_executable(self, default: str) -> str:
        """The interpreter that runs pytest: the catalog's ``python`` (relative to root) or ``default``."""
        if not self.python:
            return default
        candidate = Path(self.python)
        return str(candidate if candidate.is_absolute() else (self.root / candidate))


def format_validation_error(source: Path, error: ValidationError) -> str:
    """One line per problem: ``file: dotted.field: message``."""
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {location}: {message}")
    return "\n".join(lines)


def load_catalog(path: Path) -> Catalog:
    """Read and validate a catalog TOML file; relative paths in it resolve against its folder."""
    path = Path(path)
    text = read_config_text(path, "catalog")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None

    if not isinstance(raw.get("selectors"), dict) or not raw["selectors"]:
        raise ConfigError(f"{path}: selectors: expected at least one [selectors.NAME] table")
    if not isinstance(raw.get("cadences"), dict) or not raw["cadences"]:
        raise ConfigError(f"{path}: cadences: expected at least one [cadences.NAME] table")

    base = path.resolve().parent
    defaults = raw.pop("defaults", {}) or {}
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: defaults: expected a table")
    allowed_defaults = {"test_timeout_s", "timeout_s", "timeout_method", "cpus", "reruns", "env"}
    if not isinstance(defaults.get("env", {}), dict):
        raise ConfigError(f"{path}: defaults.env: expected a table of variables (env = {{ NAME = \"value\" }}), "
                          f"found {type(defaults['env']).__name__}")
    unknown = sorted(set(defaults) - allowed_defaults)
    if unknown:
        raise ConfigError(
            f"{path}: defaults.{unknown[0]}: unknown key (allowed: {', '.join(sorted(allowed_defaults))})"
        )

    selectors = {}
    for name, body in raw["selectors"].items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: selectors.{name}: expected a table")
        if not isinstance(body.get("env", {}), dict):
            raise ConfigError(f"{path}: selectors.{name}.env: expected a table of variables "
                              f"(env = {{ NAME = \"value\" }}), found {type(body['env']).__name__}")
        merged = {key: value for key, value in defaults.items() if key != "env"}
        merged.update(body)
        merged["env"] = {**defaults.get("env", {}), **body.get("env", {})}
        merged["name"] = name
        selectors[name] = merged
    cadences = {}
    for name, body in raw["cadences"].items():
        if not isinstance(body, dict):
            raise ConfigError(f"{path}: cadences.{name}: expected a table")
        if not CADENCE_NAME_PATTERN.match(name) or ".." in name:
            # A cadence's name is part of its run directory's name (reports/<stamp>-<cadence>/).
            raise ConfigError(f"{path}: cadences.{name}: expected a name of letters, digits, '_', '-' and '.' "
                              "(it names report directories), not a path")
        cadences[name] = {**body, "name": name}

    root = Path(raw.pop("root", "."))
    resolved_root = (root if root.is_absolute() else base / root).resolve()
    if not resolved_root.is_dir():
        raise ConfigError(f"{path}: root: {str(root)!r} is not a directory (resolved to {resolved_root})")
    rules = raw.pop("rules", None)
    document = {
        **raw,
        "path": path,
        "root": resolved_root,
        "rules": None if rules is None else (Path(rules) if Path(rules).is_absolute() else (base / rules).resolve()),
        "selectors": selectors,
        "cadences": cadences,
    }
    try:
        return Catalog.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
