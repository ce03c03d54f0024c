"""Render notification bodies from the Jinja templates in ``alerts/templates/``, falling back to
the defaults the harness package ships (``harness/templates/alerts/``) for any template the
configured folder lacks: an installed harness works for a project with no copy of its own.

Two shapes: the Prometheus Alertmanager webhook payload (version 4) for generic receivers, and
a Slack message (``text`` + ``blocks``). Every body is size-bounded for its sink: long evidence is
cut first (with a pointer to the full report), then alerts beyond what fits are dropped and
counted in ``truncatedAlerts``, the way Alertmanager does with ``max_alerts``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import jinja2

from harness.errors import ConfigError
from harness.locations import PACKAGE_DIR, REPO_ROOT

DEFAULT_TEMPLATES = REPO_ROOT / "alerts" / "templates"  # the project's configured copy, when it has one
PACKAGED_TEMPLATES = PACKAGE_DIR / "templates" / "alerts"  # package data: there in every install
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of a firing alert
# Evidence keys that are labels already.
_LABEL_KEYS = {"selector", "nodeid", "owner", "sla"}
# Slack allows 50 blocks: a header, a context line, a truncation note and the alerts.
SLACK_MAX_ALERTS = 45
_MIN_EVIDENCE = 80

Status = Literal["firing", "resolved"]


@dataclass
class NotificationAlert:
    """One alert as a receiver sees it (Alertmanager's alert object)."""

    fingerprint: str
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str]
    evidence: str = ""
    starts_at: str = ZERO_TIME
    ends_at: str = ZERO_TIME
    generator_url: str = ""

    def to_state(self) -> dict[str, Any]:
        """What the notification log keeps to send the matching ``resolved`` later."""
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "evidence": self.evidence,
            "starts_at": self.starts_at,
            "generator_url": self.generator_url,
        }

    @classmethod
    def from_state(cls, fingerprint: str, state: dict[str, Any], status: Status, ends_at: str) -> NotificationAlert:
        return cls(
            fingerprint=fingerprint,
            status=status,
            labels=dict(state.get("labels") or {}),
            annotations=dict(state.get("annotations") or {}),
            evidence=state.get("evidence") or "",
            starts_at=state.get("starts_at") or ZERO_TIME,
            ends_at=ends_at,
            generator_url=state.get("generator_url") or "",
        )


@dataclass
class PayloadContext:
    """Everything a template sees besides the alerts."""

    status: Status
    receiver: str
    route: str
    group_key: str
    group_labels: dict[str, str]
    report_url: str = ""
    runbook_url: str = ""
    external_url: str = ""
    test: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def evidence_text(evidence: dict[str, Any]) -> str:
    """Evidence as ``key: value`` lines (labels left out), values JSON where not text."""
    lines = []
    for key, value in evidence.items():
        if key in _LABEL_KEYS or value is None:
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
        lines.append(f"{key}: {text}")
    return "\n".join(lines)


def truncate_evidence(text: str, limit: int, report_url: str) -> str:
    """Cut ``text`` to about ``limit`` characters, saying how much is missing and where it is."""
    if len(text) <= limit:
        return text
    where = report_url or "the run's report.json"
    note = f"\n... [{len(text) - limit} more characters truncated; full evidence: {where}]"
    return text[:limit].rstrip() + note


def group_key(route: str, group_labels: dict[str, str]) -> str:
    """Alertmanager-style ``route:{label="value", ...}``: stable for a group's firing and resolved."""
    inner = ", ".join(f'{name}="{value}"' for name, value in sorted(group_labels.items()))
    return f"{route}:{{{inner}}}"


def _common(dicts: list[dict[str, str]]) -> dict[str, str]:
    if not dicts:
        return {}
    first = dicts[0]
    return {key: value for key, value in first.items() if all(d.get(key) == value for d in dicts[1:])}


def _clip(text: Any, limit: int) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "\u2026"


def _slack_escape(text: Any) -> str:
    """Slack mrkdwn control characters (&, <, >) as entities."""
    return ("" if text is None else str(text)).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _is_url(text: str | None) -> bool:
    return bool(text) and str(text).startswith(("http://", "https://"))


def template_loader(templates_dir: Path) -> jinja2.FileSystemLoader:
    """Templates from ``templates_dir`` first, then the packaged defaults (per file: a project may
    override only the templates it changes)."""
    return jinja2.FileSystemLoader(list(dict.fromkeys([str(templates_dir), str(PACKAGED_TEMPLATES)])))


class PayloadRenderer:
    """Loads the templates once; renders bounded bodies."""

    def __init__(self, templates_dir: Path | None = None) -> None:
        self.templates_dir = Path(templates_dir or DEFAULT_TEMPLATES)
        self.env = jinja2.Environment(
            loader=template_loader(self.templates_dir),
            undefined=jinja2.StrictUndefined,
            autoescape=jinja2.select_autoescape(["html", "htm", "xml"]),
            keep_trailing_newline=True,
        )
        self.env.filters["clip"] = _clip
        self.env.filters["slack_escape"] = _slack_escape
        self.env.tests["url"] = _is_url

    def _template(self, name: str) -> jinja2.Template:
        try:
            return self.env.get_template(name)
        except jinja2.TemplateNotFound:
            raise ConfigError(f"{self.templates_dir / name}: payload template not found "
                              "(nor among the harness's defaults)") from None
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"{exc.filename or self.templates_dir / name}: line {exc.lineno}: {exc.message}") from None

    def render_once(self, template: str, context: PayloadContext, alerts: list[NotificationAlert],
                    evidence_limit: int, truncated: int) -> bytes:
        """One rendering, parsed back to check it is JSON, serialised compactly."""
        shown = [
            {
                "fingerprint": a.fingerprint,
                "status": a.status,
                "labels": a.labels,
                "annotations": {**a.annotations, **({"evidence": truncate_evidence(a.evidence, evidence_limit, context.report_url)} if a.evidence else {})},
                "starts_at": a.starts_at,
                "ends_at": a.ends_at,
                "generator_url": a.generator_url,
            }
            for a in alerts
        ]
        try:
            text = self._template(template).render(
                version="4",
                status=context.status,
                receiver=context.receiver,
                route=context.route,
                group_key=context.group_key,
                group_labels=context.group_labels,
                common_labels=_common([a["labels"] for a in shown]),
                common_annotations=_common([{k: v for k, v in a["annotations"].items() if k != "evidence"} for a in shown]),
                external_url=context.external_url,
                report_url=context.report_url,
                runbook_url=context.runbook_url,
                truncated_alerts=truncated,
                alerts=shown,
                test=context.test,
                **context.extra,
            )
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"{self.templates_dir / template}: {exc.message}") from None
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{self.templates_dir / template}: renders invalid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from None
        return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def render(self, template: str, context: PayloadContext, alerts: list[NotificationAlert],
               max_bytes: int, evidence_limit: int, max_alerts: int | None = None) -> tuple[bytes, int]:
        """The body within ``max_bytes``, and how many alerts had to be left out of it."""
        if not alerts:
            raise ValueError("a notification needs at least one alert")
        keep = alerts if max_alerts is None else alerts[:max_alerts]
        limit = evidence_limit
        while True:
            body = self.render_once(template, context, keep, limit, len(alerts) - len(keep))
            if len(body) <= max_bytes:
                return body, len(alerts) - len(keep)
            if limit > _MIN_EVIDENCE:
                limit = max(_MIN_EVIDENCE, limit // 2)
            elif len(keep) > 1:
                keep = keep[: max(1, len(keep) // 2)]
            else:
                # One alert with minimal evidence still too large: its annotations are huge.
                only = keep[0]
                keep = [NotificationAlert(
                    fingerprint=only.fingerprint, status=only.status, labels=only.labels,
                    annotations={k: _clip(v, 200) for k, v in only.annotations.items()},
                    evidence=only.evidence, starts_at=only.starts_at, ends_at=only.ends_at,
                    generator_url=only.generator_url,
                )]
                body = self.render_once(template, context, keep, _MIN_EVIDENCE, len(alerts) - 1)
                if len(body) > max_bytes:
                    raise ConfigError(
                        f"{self.templates_dir / template}: a single alert renders to {len(body)} bytes, above the "
                        f"sink's max_payload_bytes ({max_bytes})"
                    )
                return body, len(alerts) - 1
