"""Who hears about which alert: ``alerts/routes.yaml`` validated with pydantic.

Modelled on Prometheus Alertmanager's routing tree, flattened: routes are tried in order, the
first that matches an alert takes it unless it says ``continue: true``; an alert no route takes
goes to ``default``, so nothing is dropped for want of a route. A sink names the environment
variables that hold its URL and its signing secret, never the values: the file can be committed.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import ConfigError, read_config_text
from harness.yaml_loader import safe_load

SEVERITIES = ("info", "warning", "medium", "high", "critical")
SEVERITY_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}
CADENCES = ("pr", "nightly", "weekly", "manual")
# A route may group by any label an alert carries (see harness.alerts.payloads.alert_labels).
LABEL_NAMES = ("alertname", "severity", "selector", "cadence", "owner", "nodeid")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ROUTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Initiative ids as the brief writes them: TEST-PYTORCH-001, INTEGRATE-PYTORCH-001-D1C.
_INITIATIVE = re.compile(r"\b[A-Z][A-Z0-9]*(?:-[A-Z0-9]+)+\b")


def parse_duration(text: str | int | float) -> float:
    """``"90s"``, ``"4h"``, ``"1d12h"``, ``"7d"`` or a number of seconds -> seconds."""
    if isinstance(text, bool):
        raise ValueError("expected a duration such as 30s, 15m, 4h, 1d or 1w")
    if isinstance(text, (int, float)):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return float(text)
    value = str(text).strip().lower()
    if value in ("0", "0s"):
        return 0.0
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(value) or not value:
        raise ValueError(f"{text!r} is not a duration (expected e.g. 30s, 15m, 4h, 1d, 1w or 1d12h)")
    return total


def format_duration(seconds: float) -> str:
    """The inverse of parse_duration for display: 93600 -> ``1d2h``."""
    if seconds <= 0:
        return "0s"
    parts = []
    remaining = int(round(seconds))
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def owners_of(owner: str | None) -> list[str]:
    """The initiatives an alert's owner field names ("Both initiatives" rules list each one).

    The rules write owners as initiative ids, possibly several ("TEST-PYTORCH-001,
    INTEGRATE-PYTORCH-001"); any other text is kept whole as a single owner.
    """
    if not owner:
        return []
    found = _INITIATIVE.findall(owner)
    if found:
        return list(dict.fromkeys(found))
    return [owner.strip()]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepeatIntervals(_Strict):
    """How long the same firing alert stays quiet after it was sent, per cadence (Alertmanager's
    ``repeat_interval``). Nightly and weekly are a little under a day and a week because scheduled
    runs drift (GitHub delays them): a strict 24 h would skip every other night."""

    pr: float = 4 * 3600
    nightly: float = 20 * 3600
    weekly: float = 6 * 86400
    manual: float = 3600
    other: float = 4 * 3600

    @field_validator("*", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    def for_cadence(self, cadence: str | None) -> float:
        return float(getattr(self, cadence, self.other)) if cadence in CADENCES else self.other


class Sink(_Strict):
    """One webhook endpoint. ``kind`` picks the payload: Alertmanager v4 JSON or a Slack message."""

    name: str
    kind: Literal["webhook", "slack"]
    url_env: str
    secret_env: str | None = None
    template: str | None = Field(default=None, description="file in alerts/templates/ (default per kind)")
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=300)
    max_attempts: int = Field(default=4, ge=1, le=20)
    backoff_initial_s: float = Field(default=1.0, ge=0, le=600)
    backoff_max_s: float = Field(default=30.0, ge=0, le=3600)
    max_retry_after_s: float = Field(default=60.0, ge=0, le=3600)
    min_interval_s: float | None = Field(default=None, ge=0, le=60)
    max_payload_bytes: int | None = Field(default=None, ge=2048, le=10_000_000)
    max_evidence_chars: int | None = Field(default=None, ge=80, le=100_000)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("url_env", "secret_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(
                f"{value!r} is not an environment variable name; name the variable that holds the "
                "value, never the value itself"
            )
        return value

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = {"content-type", "webhook-id", "webhook-timestamp", "webhook-signature", "authorization"}
        for key in value:
            if key.lower() in reserved:
                raise ValueError(f"header {key!r} is set by the harness (or is a secret) and cannot be configured")
        return value

    @property
    def payload_limit(self) -> int:
        """Slack rejects messages far below a generic receiver's limits."""
        if self.max_payload_bytes is not None:
            return self.max_payload_bytes
        return 30_000 if self.kind == "slack" else 256_000

    @property
    def evidence_limit(self) -> int:
        if self.max_evidence_chars is not None:
            return self.max_evidence_chars
        return 1_200 if self.kind == "slack" else 4_000

    @property
    def spacing_s(self) -> float:
        """Seconds between two messages to this sink (Slack: about one message per second)."""
        if self.min_interval_s is not None:
            return self.min_interval_s
        return 1.0 if self.kind == "slack" else 0.0

    @property
    def template_name(self) -> str:
        if self.template:
            return self.template
        return "slack.json.j2" if self.kind == "slack" else "alertmanager_v4.json.j2"

    def url(self, environ: dict[str, str] | None = None) -> str | None:
        """The sink's URL from its environment variable (None when unset or empty)."""
        return (environ if environ is not None else os.environ).get(self.url_env) or None

    def secret(self, environ: dict[str, str] | None = None) -> str | None:
        if not self.secret_env:
            return None
        return (environ if environ is not None else os.environ).get(self.secret_env) or None


class Match(_Strict):
    """Alertmanager-style equality matchers, each a list of accepted values (any of them).

    ``trigger`` and ``selector`` accept shell globs (``FAIL-*``). An owner matches when any of
    the alert's owners is listed (an alert owned by both initiatives matches either's route).
    """

    trigger: tuple[str, ...] = ()
    severity: tuple[Literal["info", "warning", "medium", "high", "critical"], ...] = ()
    owner: tuple[str, ...] = ()
    selector: tuple[str, ...] = ()
    cadence: tuple[str, ...] = ()

    @field_validator("trigger", "owner", "selector", "cadence", "severity", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Route(_Strict):
    name: str
    match: Match = Match()
    min_severity: Literal["info", "warning", "medium", "high", "critical"] | None = None
    sinks: tuple[str, ...] = Field(min_length=1)
    continue_: bool = Field(default=False, alias="continue")
    group_by: tuple[str, ...] | None = None
    repeat_interval: RepeatIntervals | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _ROUTE_NAME.match(value):
            raise ValueError("must be letters, digits, '.', '_' or '-' (it becomes part of the groupKey)")
        return value

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for label in value or ():
            if label not in LABEL_NAMES:
                raise ValueError(f"unknown label {label!r} (valid: {', '.join(LABEL_NAMES)})")
        return value

    def matches(self, alert: AlertLabels) -> bool:
        m = self.match
        if m.trigger and not any(fnmatch.fnmatchcase(alert.trigger, p) for p in m.trigger):
            return False
        if m.severity and alert.severity not in m.severity:
            return False
        if m.owner and not set(m.owner) & set(alert.owners):
            return False
        if m.selector and not any(fnmatch.fnmatchcase(alert.selector or "", p) for p in m.selector):
            return False
        if m.cadence and alert.cadence not in m.cadence:
            return False
        if self.min_severity and SEVERITY_RANK.get(alert.severity, -1) < SEVERITY_RANK[self.min_severity]:
            return False
        return True


class DefaultRoute(_Strict):
    """Where an alert goes when no route takes it (Alertmanager's root route)."""

    sinks: tuple[str, ...] = Field(min_length=1)
    group_by: tuple[str, ...] | None = None
    repeat_interval: RepeatIntervals | None = None


class Links(_Strict):
    """Links put into notifications. The report link comes from an environment variable the CI
    sets (a run page); without it the notification names the report directory."""

    report_url_env: str | None = "HARNESS_REPORT_URL"
    runbook: str = "docs/alerts.md#escalation-workflow"
    external_url_env: str | None = "HARNESS_EXTERNAL_URL"


class AlertLabels(BaseModel):
    """What routing looks at (a view of one alert)."""

    trigger: str
    severity: str
    owners: list[str]
    selector: str | None = None
    cadence: str | None = None


class RouteTarget(BaseModel):
    """One (route, sink) an alert is delivered to, with the settings that route gives it."""

    route: str
    sink: Sink
    group_by: tuple[str, ...]
    repeat_interval_s: float


class RoutesConfig(_Strict):
    """The whole ``routes.yaml``."""

    version: Literal[1] = 1
    path: Path
    templates: Path | None = Field(default=None, description="payload templates folder, relative to this file")
    group_by: tuple[str, ...] = ("alertname", "cadence")
    repeat_interval: RepeatIntervals = RepeatIntervals()
    links: Links = Links()
    sinks: dict[str, Sink]
    routes: tuple[Route, ...] = ()
    default: DefaultRoute

    @model_validator(mode="before")
    @classmethod
    def _sink_names(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("sinks"), dict):
            data = dict(data)
            data["sinks"] = {
                name: ({**body, "name": name} if isinstance(body, dict) else body)
                for name, body in data["sinks"].items()
            }
        return data

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for label in value:
            if label not in LABEL_NAMES:
                raise ValueError(f"unknown label {label!r} (valid: {', '.join(LABEL_NAMES)})")
        return value

    @model_validator(mode="after")
    def _references(self) -> RoutesConfig:
        seen: set[str] = set()
        for index, route in enumerate(self.routes):
            if route.name in seen:
                raise ValueError(f"routes.{index}.name: duplicate route name {route.name!r}")
            seen.add(route.name)
            for sink in route.sinks:
                if sink not in self.sinks:
                    raise ValueError(
                        f"routes.{index}.sinks: unknown sink {sink!r} (defined: {', '.join(sorted(self.sinks)) or 'none'})"
                    )
        if "default" in seen:
            raise ValueError("routes: the name 'default' is reserved for the default route")
        for sink in self.default.sinks:
            if sink not in self.sinks:
                raise ValueError(
                    f"default.sinks: unknown sink {sink!r} (defined: {', '.join(sorted(self.sinks)) or 'none'})"
                )
        return self

    @model_validator(mode="after")
    def _templates_folder(self) -> RoutesConfig:
        # Missing templates fall back to the packaged defaults, so a mistyped folder would
        # otherwise go unnoticed.
        if self.templates is not None and not self.templates_dir.is_dir():
            raise ValueError(f"templates: no folder {self.templates_dir}")
        return self

    @property
    def templates_dir(self) -> Path:
        """``templates`` (relative to this file), else a ``templates/`` folder beside it, else the
        repository's ``alerts/templates/`` (each template the folder lacks comes from the harness
        package's defaults, ``harness/templates/alerts/``)."""
        base = self.path.resolve().parent
        if self.templates is not None:
            return self.templates if self.templates.is_absolute() else base / self.templates
        beside = base / "templates"
        if beside.is_dir():
            return beside
        from harness.alerts.payloads import DEFAULT_TEMPLATES

        return DEFAULT_TEMPLATES

    def route(self, name: str) -> Route | DefaultRoute:
        if name == "default":
            return self.default
        for route in self.routes:
            if route.name == name:
                return route
        raise ConfigError(
            f"{self.path}: no route {name!r} (valid: {', '.join(['default', *(r.name for r in self.routes)])})"
        )

    def targets(self, alert: AlertLabels) -> list[RouteTarget]:
        """The (route, sink) pairs an alert goes to, in order, each sink at most once."""
        chosen: list[tuple[str, Route | DefaultRoute]] = []
        for route in self.routes:
            if route.matches(alert):
                chosen.append((route.name, route))
                if not route.continue_:
                    break
        if not chosen:
            chosen.append(("default", self.default))
        return self._expand(chosen, alert.cadence)

    def targets_of_route(self, name: str, cadence: str | None = None) -> list[RouteTarget]:
        """Every sink of one route (``harness alerts test --route NAME``)."""
        return self._expand([(name, self.route(name))], cadence)

    def all_targets(self) -> list[RouteTarget]:
        """Every (route, sink) pair, for ``harness alerts test`` without --route."""
        pairs: list[tuple[str, Route | DefaultRoute]] = [(r.name, r) for r in self.routes]
        pairs.append(("default", self.default))
        return self._expand(pairs, None, unique_sinks=False)

    def _expand(
        self, chosen: list[tuple[str, Route | DefaultRoute]], cadence: str | None, unique_sinks: bool = True
    ) -> list[RouteTarget]:
        targets: list[RouteTarget] = []
        used: set[str] = set()
        for name, route in chosen:
            intervals = route.repeat_interval or self.repeat_interval
            for sink_name in route.sinks:
                if unique_sinks and sink_name in used:
                    continue
                used.add(sink_name)
                targets.append(
                    RouteTarget(
                        route=name,
                        sink=self.sinks[sink_name],
                        group_by=route.group_by or self.group_by,
                        repeat_interval_s=intervals.for_cadence(cadence),
                    )
                )
        return targets


def format_validation_error(source: Path, error: ValidationError) -> str:
    """One line per problem: ``file: dotted.field: message``."""
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        # A model-level check names its own field at the start of its message.
        if location == "(top level)" and re.match(r"^[\w.]+: ", message):
            lines.append(f"{source}: {message}")
        else:
            lines.append(f"{source}: {location}: {message}")
    return "\n".join(lines)


def parse_routes(text: str, source: Path) -> RoutesConfig:
    """Validate the YAML text of a routes file; errors name the file and the field."""
    try:
        raw = safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping with sinks, routes and default")
    for key in ("sinks", "default"):
        if key not in raw:
            raise ConfigError(f"{source}: {key}: required (see docs/alerts.md)")
    if not isinstance(raw.get("sinks"), dict) or not raw["sinks"]:
        raise ConfigError(f"{source}: sinks: expected a mapping of sink names to sink settings")
    try:
        return RoutesConfig.model_validate({**raw, "path": source})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None


def load_routes(path: Path) -> RoutesConfig:
    """Read and validate ``alerts/routes.yaml`` (or the file given)."""
    path = Path(path)
    return parse_routes(read_config_text(path, "routes"), path)
