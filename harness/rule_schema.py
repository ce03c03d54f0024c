"""The trigger table (``alerts/rules.yaml``, brief §3.4) as validated, typed data.

A trigger fires when every condition under ``when`` holds. Conditions decide the level a
trigger works at: per failed test (``outcome``, ``message``, ``context``, ``location``), per
artifact (``artifact``), per quality figure (``figure``), per run (``budget``), otherwise per
selector (``state``, ``runtime``). Triggers sharing a ``first_match`` group form an ordered
chain: for one test, the first of them that matches fires and the later ones do not.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.catalog import format_validation_error, regular_expressions
from harness.errors import ConfigError, read_config_text
from harness.states import DID_NOT_RUN_STATES, SelectorState, Severity

ThresholdName = Literal["critical", "warning", "suspicious"]
Stage = Literal["setup", "call", "teardown", "collect"]  # the phase a test failed in


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Patterns(_Strict):
    """Regular expressions (case-insensitive): ``all`` must all match, ``any`` at least one,
    ``none`` none of them."""

    all: tuple[str, ...] = ()
    any: tuple[str, ...] = ()
    none: tuple[str, ...] = ()

    @field_validator("all", "any", "none")
    @classmethod
    def _compiles(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return regular_expressions(values)

    @model_validator(mode="after")
    def _not_empty(self) -> Patterns:
        if not (self.all or self.any or self.none):
            raise ValueError("give at least one of all / any / none")
        return self

    @cached_property
    def _compiled(self) -> tuple[list[re.Pattern], list[re.Pattern], list[re.Pattern]]:
        flags = re.IGNORECASE | re.MULTILINE
        return (
            [re.compile(p, flags) for p in self.all],
            [re.compile(p, flags) for p in self.any],
            [re.compile(p, flags) for p in self.none],
        )

    def match(self, text: str) -> re.Match | None:
        """The first match that decided it (for evidence), or None if the patterns do not hold."""
        all_, any_, none_ = self._compiled
        first: re.Match | None = None
        for pattern in all_:
            found = pattern.search(text)
            if found is None:
                return None
            first = first or found
        if any_:
            found_any = next((m for m in (p.search(text) for p in any_) if m), None)
            if found_any is None:
                return None
            first = first or found_any
        if any(p.search(text) for p in none_):
            return None
        return first or re.match("", text)


class RuntimeCondition(_Strict):
    """Runtime above or below a threshold: a catalog threshold name, seconds, or a baseline factor."""

    above: ThresholdName | float | None = None
    below: ThresholdName | float | None = None
    above_factor: float | None = Field(default=None, gt=0)
    below_factor: float | None = Field(default=None, gt=0)
    consecutive_runs: int = Field(default=1, ge=1, le=100)

    @model_validator(mode="after")
    def _one_bound(self) -> RuntimeCondition:
        given = [v for v in (self.above, self.below, self.above_factor, self.below_factor) if v is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of above, below, above_factor, below_factor")
        return self


class ArtifactCondition(_Strict):
    kind: Literal["checkpoint", "png"]


class FigureCondition(_Strict):
    regression: Literal[True] = True


class BudgetCondition(_Strict):
    over: Literal["cadence"] = "cadence"


class ShiftCondition(_Strict):
    """A recorded series shifted (harness/changepoints.py): the latest runs against the ones before.

    ``series``: ``runtime`` (the selector's runtime on this host; ``signal: cpu`` or ``auto``
    reads the CPU seconds of its process tree where recorded), ``test_duration`` (each passed
    test's call duration on this host) or ``figure`` (each catalog quality figure; ``worse`` is
    its bad direction). Magnitude (``min_change``, relative) and significance (z of the best
    split) must both hold.
    """

    series: Literal["runtime", "test_duration", "figure"]
    direction: Literal["increase", "decrease", "worse"] = "increase"
    signal: Literal["runtime", "cpu", "auto"] = "runtime"
    min_change: float = Field(gt=0)
    significance: float = Field(gt=0)
    min_history: int = Field(default=10, ge=3)
    window: int = Field(default=30, ge=3)
    min_run_length: int = Field(default=4, ge=2)
    max_run_length: int = Field(default=8, ge=2)
    # Series whose reference median is below this are not judged (timer noise of millisecond tests).
    min_value: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _coherent(self) -> ShiftCondition:
        if self.max_run_length < self.min_run_length:
            raise ValueError("max_run_length must be at least min_run_length")
        if self.window < self.min_history:
            raise ValueError("window must be at least min_history")
        if self.direction == "worse" and self.series != "figure":
            raise ValueError("direction 'worse' needs series: figure (a figure's catalog direction)")
        return self


class FlakyCondition(_Strict):
    """A test flaky across runs (harness/flaky.py): it failed and passed on one commit, or its
    outcome flipped at least ``min_flips`` times in its last ``window`` runs."""

    window: int = Field(default=50, ge=2)
    min_flips: int = Field(default=2, ge=1)
    same_commit: bool = True


class QuarantineCondition(_Strict):
    """An ``alerts/quarantine.yaml`` entry (harness/quarantine.py): ``expired`` (armed again) or
    ``release`` (the test passed its last ``passes`` runs while quarantined)."""

    state: Literal["expired", "release"]
    passes: int = Field(default=10, ge=1)


class When(_Strict):
    state: tuple[SelectorState, ...] = ()
    # Selector level, for a selector that did not run: whether the catalog expects that here.
    skip_expected: bool | None = None
    runtime: RuntimeCondition | None = None
    outcome: tuple[str, ...] = ()
    kind: tuple[Literal["test", "collector"], ...] = ()
    # The phase a test failed in; a failure whose report names none counts as "call".
    stage: tuple[Stage, ...] = ()
    message: Patterns | None = None
    context: Patterns | None = None
    location: Patterns | None = None
    artifact: ArtifactCondition | None = None
    figure: FigureCondition | None = None
    budget: BudgetCondition | None = None
    shift: ShiftCondition | None = None
    flaky: FlakyCondition | None = None
    quarantine: QuarantineCondition | None = None

    @property
    def level(self) -> Literal["test", "selector", "artifact", "figure", "run"]:
        if self.shift is not None:
            return "series"  # type: ignore[return-value]
        if self.flaky is not None:
            return "history"  # type: ignore[return-value]
        if self.quarantine is not None:
            return "quarantine"  # type: ignore[return-value]
        if self.budget is not None:
            return "run"
        if self.artifact is not None:
            return "artifact"
        if self.figure is not None:
            return "figure"
        if self.outcome or self.kind or self.stage or self.message or self.context or self.location:
            return "test"
        return "selector"

    @model_validator(mode="after")
    def _coherent(self) -> When:
        special = [name for name in ("budget", "artifact", "figure", "shift", "flaky", "quarantine") if getattr(self, name) is not None]
        if len(special) > 1:
            raise ValueError(f"{' and '.join(special)} cannot be combined in one trigger")
        test_level = bool(self.outcome or self.kind or self.stage or self.message or self.context or self.location)
        if self.skip_expected is not None and (test_level or special):
            raise ValueError("skip_expected is a selector-level condition; combine it with state only")
        if self.runtime is not None and (test_level or special):
            raise ValueError("runtime is a selector-level condition; it cannot be combined with test, artifact, figure or budget conditions")
        if special and test_level:
            raise ValueError(f"{special[0]} cannot be combined with test-level conditions")
        if not (test_level or special or self.state or self.runtime or self.skip_expected is not None):
            raise ValueError("a trigger needs at least one condition")
        return self


class Scope(_Strict):
    """Which selectors a trigger applies to (all when empty)."""

    selectors: tuple[str, ...] = ()
    exclude_selectors: tuple[str, ...] = ()

    def covers(self, name: str) -> bool:
        if self.selectors and name not in self.selectors:
            return False
        return name not in self.exclude_selectors


class Trigger(_Strict):
    id: str = Field(pattern=r"^[A-Z][A-Z0-9]*-\d{3}$")
    title: str
    severity: Severity
    owner: str = Field(description="an initiative, or 'selector' for the catalog owner of the selector")
    sla: str
    description: str = ""
    brief: str | None = None
    scope: Scope = Scope()
    first_match: str | None = None
    when: When


class RuleSet(_Strict):
    version: Literal[1] = 1
    path: Path
    triggers: tuple[Trigger, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> RuleSet:
        seen: set[str] = set()
        for trigger in self.triggers:
            if trigger.id in seen:
                raise ValueError(f"trigger id {trigger.id} appears twice")
            seen.add(trigger.id)
        return self

    def trigger(self, trigger_id: str) -> Trigger:
        for trigger in self.triggers:
            if trigger.id == trigger_id:
                return trigger
        raise KeyError(trigger_id)

    @property
    def has_did_not_run_trigger(self) -> bool:
        """Whether a trigger of this file names a did-not-run state: the file then decides itself
        what a selector whose tests never executed means (its severity, scope, owner)."""
        return any(set(trigger.when.state) & DID_NOT_RUN_STATES for trigger in self.triggers)

    def check_selectors(self, known: set[str]) -> list[str]:
        """Scope names that the catalog does not define (a warning: the rule never applies)."""
        problems = []
        for trigger in self.triggers:
            for name in (*trigger.scope.selectors, *trigger.scope.exclude_selectors):
                if name not in known:
                    problems.append(f"{self.path}: {trigger.id}.scope names selector {name!r}, which the catalog does not define")
        return problems


# A mandated selector whose tests never executed (all skipped or deselected, none collected) says
# nothing about the code under test, so it must not pass a gate quietly, whichever rules file is in
# force. A file that names none of those states gets this trigger; the catalog's allow_skip and
# expected_skip_reasons still make a skip expected, and a file's own trigger replaces this one.
DID_NOT_RUN_TRIGGER = {
    "id": "HARNESS-002",
    "title": "Mandated selector did not run",
    "severity": "high",
    "owner": "selector",
    "sla": "<4 hours",
    "description": ("Built in (the rules file names no trigger for a selector that did not run): every test "
                    "of the selector was skipped or deselected, or none was collected, and the catalog does "
                    "not expect that here (allow_skip, expected_skip_reasons)."),
    "when": {"state": ["did_not_run", "skipped", "no_tests"], "skip_expected": False},
}


def with_did_not_run_trigger(rules: RuleSet) -> RuleSet:
    """``rules`` with the built-in did-not-run trigger, unless the file has its own (or uses its id:
    then the evaluation's note says that such a selector does not fail the gate)."""
    if rules.has_did_not_run_trigger or any(t.id == DID_NOT_RUN_TRIGGER["id"] for t in rules.triggers):
        return rules
    return rules.model_copy(update={"triggers": (*rules.triggers, Trigger.model_validate(DID_NOT_RUN_TRIGGER))})


def load_rules(path: Path) -> RuleSet:
    """Read and validate a rules YAML file; errors name the file, the trigger and the field."""
    import yaml

    from harness.yaml_loader import safe_load

    path = Path(path)
    text = read_config_text(path, "rules")
    try:
        raw = safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'triggers' list")
    triggers = raw.get("triggers")
    if isinstance(triggers, list):
        # Name list positions by trigger id so errors say "triggers.RT-001.when..." not "triggers.0".
        for index, item in enumerate(triggers):
            if not isinstance(item, dict):
                raise ConfigError(f"{path}: triggers[{index}]: expected a mapping")
    try:
        return with_did_not_run_trigger(RuleSet.model_validate({**raw, "path": path}))
    except ValidationError as exc:
        message = format_validation_error(path, exc)
        if isinstance(triggers, list):
            for index, item in enumerate(triggers):
                if isinstance(item, dict) and item.get("id"):
                    message = message.replace(f"triggers.{index}.", f"triggers.{index}({item['id']}).")
        raise ConfigError(message) from None
