"""From a run's fired and resolved triggers to delivered notifications, losing nothing.

``after_run`` is the one call the run pipeline makes once a report is published and recorded:

1. the run is recorded as a *dispatch*; every dispatch not yet planned (an earlier run whose
   routes file was broken, say) is planned first, in run order, from its ``report.json``;
2. planning, in one history transaction: each firing alert is routed (``alerts/routes.yaml``);
   a silenced one is recorded and not sent; one the (route, sink) was told about less than the
   cadence's repeat interval ago is deduplicated; the rest are grouped per route, sink and
   group labels, rendered (size-bounded) and stored in the outbox. Each resolved fingerprint
   gets a ``resolved`` message wherever its ``firing`` went;
3. the outbox is flushed: pending messages in order, per sink; a sink that fails keeps its
   messages for the next invocation or ``harness alerts flush``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import requests

from harness import github
from harness.alerts.payloads import NotificationAlert, PayloadContext, PayloadRenderer, evidence_text, group_key
from harness.alerts.delivery_state import AlertStore, new_message_id, now_utc, parse_iso, utc_iso
from harness.errors import ConfigError
from harness.history import HistoryStore
from harness.locations import REPO_ROOT
from harness.alerts.webhooks import REDACTOR, RetryPolicy, deliver, secret_key, split_secrets
from harness.report_model import Alert, RunReport
from harness.alerts.routes import AlertLabels, RoutesConfig, RouteTarget, Sink, load_routes, owners_of

DEFAULT_ROUTES = REPO_ROOT / "alerts" / "routes.yaml"
TEST_ALERTNAME = "HarnessTestAlert"


def routes_path(explicit: Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """``--routes``, else ``$HARNESS_ROUTES``, else ``alerts/routes.yaml``."""
    env = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    return Path(env["HARNESS_ROUTES"]) if env.get("HARNESS_ROUTES") else DEFAULT_ROUTES


def templates_dir(routes: RoutesConfig) -> Path:
    """Payload templates: the routes file's ``templates`` setting, else ``alerts/templates/``."""
    return routes.templates_dir


# -- links ---------------------------------------------------------------------------------


def report_link(routes: RoutesConfig, run_key: str, report_dir: Path | None, environ: Mapping[str, str]) -> str:
    """Where a responder reads the whole report: ``$HARNESS_REPORT_URL`` (``{run}`` is replaced by
    the run's directory name), the GitHub Actions run page, or the local report directory."""
    env_name = routes.links.report_url_env
    if env_name and environ.get(env_name):
        return environ[env_name].replace("{run}", run_key)
    page = github.run_page_url(environ)
    if page:
        return page
    return str(report_dir / "summary.html") if report_dir else ""


def runbook_link(routes: RoutesConfig, environ: Mapping[str, str]) -> str:
    """The escalation runbook; a repository path becomes a link to it on GitHub when known."""
    runbook = routes.links.runbook
    if runbook.startswith(("http://", "https://")):
        return runbook
    server, repository, sha = (environ.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_SHA"))
    if server and repository and sha:
        return f"{server}/{repository}/blob/{sha}/{runbook}"
    return runbook


def external_link(routes: RoutesConfig, environ: Mapping[str, str]) -> str:
    env_name = routes.links.external_url_env
    return environ.get(env_name, "") if env_name else ""


# -- alerts as receivers see them ------------------------------------------------------------


def alert_labels(alert: Alert, cadence: str) -> dict[str, str]:
    """Alertmanager labels: alertname (the trigger id), severity, selector, cadence, owner, nodeid."""
    labels = {"alertname": alert.trigger, "severity": alert.severity, "cadence": cadence, "owner": alert.owner}
    if alert.selector:
        labels["selector"] = alert.selector
    if alert.nodeid:
        labels["nodeid"] = alert.nodeid
    return labels


def notification_alert(alert: Alert, cadence: str, starts_at: str, report_url: str, runbook_url: str) -> NotificationAlert:
    annotations = {
        "title": alert.title,
        "summary": alert.summary,
        "sla": alert.sla,
        "runbook_url": runbook_url,
    }
    if report_url:
        annotations["report_url"] = report_url
    return NotificationAlert(
        fingerprint=alert.fingerprint,
        status="firing",
        labels=alert_labels(alert, cadence),
        annotations=annotations,
        evidence=evidence_text(alert.evidence),
        starts_at=starts_at,
        generator_url=report_url,
    )


def routing_view(alert: Alert, cadence: str) -> AlertLabels:
    return AlertLabels(trigger=alert.trigger, severity=alert.severity, owners=owners_of(alert.owner),
                       selector=alert.selector, cadence=cadence)


# -- planning ---------------------------------------------------------------------------------


@dataclass
class PlanSummary:
    queued_messages: int = 0
    firing: int = 0
    resolved: int = 0
    deduplicated: int = 0
    silenced: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass
class _Group:
    route: str
    sink: Sink
    status: str
    labels: dict[str, str]
    alerts: list[NotificationAlert] = field(default_factory=list)
    triggers: dict[str, str] = field(default_factory=dict)


def _episode_start(store: AlertStore, fingerprint: str, fallback: str) -> str:
    """When the current firing episode of a fingerprint began, from the core's alerts table."""
    row = store.db.execute(
        """
        SELECT MIN(created_at) FROM alerts WHERE fingerprint = ? AND status = 'firing'
          AND id > COALESCE((SELECT MAX(id) FROM alerts WHERE fingerprint = ? AND status = 'resolved'), 0)
        """,
        (fingerprint, fingerprint),
    ).fetchone()
    return row[0] if row and row[0] else fallback


class Planner:
    """Turns one run's alerts into outbox messages (dedupe, silences, resolved, grouping)."""

    def __init__(self, store: AlertStore, routes: RoutesConfig, renderer: PayloadRenderer,
                 environ: Mapping[str, str]) -> None:
        self.store = store
        self.routes = routes
        self.renderer = renderer
        self.environ = environ

    def plan(self, report: RunReport, report_dir: Path | None, now: datetime) -> PlanSummary:
        run_key, cadence = report.run.id, report.run.cadence
        summary = PlanSummary()
        report_url = report_link(self.routes, run_key, report_dir, self.environ)
        runbook_url = runbook_link(self.routes, self.environ)
        groups: dict[tuple, _Group] = {}
        store = self.store
        with store.transaction():
            for alert in report.alerts:
                silence = store.silence_for(alert.trigger, alert.selector, now)
                if silence is not None:
                    summary.silenced += 1
                    store.event("silenced", now, run_key=run_key, fingerprint=alert.fingerprint, trigger=alert.trigger,
                                detail=f"silence {silence.id} until {silence.ends_at}: {silence.reason}")
                    continue
                starts_at = _episode_start(store, alert.fingerprint, report.run.started_at)
                item = notification_alert(alert, cadence, starts_at, report_url, runbook_url)
                for target in self.routes.targets(routing_view(alert, cadence)):
                    entry = store.log_entry(alert.fingerprint, target.route, target.sink.name)
                    if entry is not None and entry.status == "firing":
                        age = (now - parse_iso(entry.last_sent_at)).total_seconds()
                        if store.message_waiting(entry.last_message_id):
                            summary.deduplicated += 1
                            store.event("deduplicated", now, run_key=run_key, fingerprint=alert.fingerprint,
                                        trigger=alert.trigger, route=target.route, sink=target.sink.name,
                                        message_id=entry.last_message_id,
                                        detail="the previous firing message is still waiting in the outbox")
                            continue
                        if age < target.repeat_interval_s:
                            summary.deduplicated += 1
                            store.event("deduplicated", now, run_key=run_key, fingerprint=alert.fingerprint,
                                        trigger=alert.trigger, route=target.route, sink=target.sink.name,
                                        detail=f"sent {age:.0f} s ago; repeat interval {target.repeat_interval_s:.0f} s")
                            continue
                    self._add(groups, target, "firing", item, alert.trigger)
                    summary.firing += 1
            ends_at = report.run.finished_at
            for resolved in report.resolved:
                for entry in store.firing_entries(resolved.fingerprint):
                    sink = self.routes.sinks.get(entry.sink)
                    if sink is None:
                        store.event("resolved_unroutable", now, run_key=run_key, fingerprint=resolved.fingerprint,
                                    trigger=resolved.trigger, route=entry.route, sink=entry.sink,
                                    detail=f"sink {entry.sink!r} is no longer in {self.routes.path.name}")
                        store.record_sent(entry.fingerprint, entry.route, entry.sink, "resolved", entry.trigger,
                                          entry.state, entry.last_message_id, now)
                        summary.notes.append(f"resolved {resolved.trigger} not sent: sink {entry.sink!r} was removed")
                        continue
                    item = NotificationAlert.from_state(resolved.fingerprint, entry.state, "resolved", ends_at)
                    item.annotations["report_url"] = report_url or item.annotations.get("report_url", "")
                    target = RouteTarget(route=entry.route, sink=sink, group_by=self._group_by(entry.route),
                                         repeat_interval_s=0)
                    self._add(groups, target, "resolved", item, entry.trigger)
                    summary.resolved += 1
            for group in groups.values():
                summary.queued_messages += len(self._enqueue(group, run_key, report_url, runbook_url, now))
            store.mark_planned(run_key, now)
        return summary

    def _group_by(self, route_name: str) -> tuple[str, ...]:
        try:
            route = self.routes.route(route_name)
        except ConfigError:
            return self.routes.group_by
        return route.group_by or self.routes.group_by

    @staticmethod
    def _add(groups: dict[tuple, _Group], target: RouteTarget, status: str, item: NotificationAlert, trigger: str) -> None:
        labels = {name: item.labels.get(name, "") for name in target.group_by}
        key = (target.route, target.sink.name, status, tuple(sorted(labels.items())))
        group = groups.get(key)
        if group is None:
            group = groups[key] = _Group(route=target.route, sink=target.sink, status=status, labels=labels)
        group.alerts.append(item)
        group.triggers[item.fingerprint] = trigger

    def _enqueue(self, group: _Group, run_key: str | None, report_url: str, runbook_url: str, now: datetime,
                 test: bool = False) -> list[str]:
        """Render the group into as many messages as its size limits need; store them and log them.
        Returns the message ids."""
        sink = group.sink
        gkey = group_key(group.route, group.labels)
        remaining = list(group.alerts)
        ids: list[str] = []
        while remaining:
            context = PayloadContext(
                status=group.status, receiver=sink.name, route=group.route, group_key=gkey, group_labels=group.labels,
                report_url=report_url, runbook_url=runbook_url, external_url=external_link(self.routes, self.environ),
                test=test,
            )
            max_alerts = 45 if sink.kind == "slack" else None
            body, left_out = self.renderer.render(sink.template_name, context, remaining, sink.payload_limit,
                                                  sink.evidence_limit, max_alerts)
            sent, remaining = remaining[: len(remaining) - left_out], remaining[len(remaining) - left_out:]
            if left_out:
                # Split rather than drop: re-render what fits without a truncation count.
                body, _ = self.renderer.render(sink.template_name, context, sent, sink.payload_limit,
                                               sink.evidence_limit, max_alerts)
            message_id = new_message_id()
            self.store.enqueue(
                message_id=message_id, run_key=run_key, route=group.route, sink=sink.name, kind=sink.kind,
                status="test" if test else group.status, group_key=gkey,
                fingerprints=[a.fingerprint for a in sent], body=body, now=now,
            )
            ids.append(message_id)
            for item in sent:
                if not test:
                    self.store.record_sent(item.fingerprint, group.route, sink.name, group.status,
                                           group.triggers[item.fingerprint], item.to_state(), message_id, now)
                self.store.event("queued" if group.status == "firing" else "resolved_queued", now, run_key=run_key,
                                 fingerprint=item.fingerprint, trigger=group.triggers.get(item.fingerprint),
                                 route=group.route, sink=sink.name, message_id=message_id)
        return ids


# -- flushing ---------------------------------------------------------------------------------


@dataclass
class FlushSummary:
    delivered: int = 0
    failed: int = 0
    rejected: int = 0
    skipped: int = 0
    remaining: int = 0
    held: int = 0  # rejected messages kept in the outbox (resent by `flush --include-rejected`)
    problems: list[str] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.rejected == 0 and self.remaining == 0 and self.held == 0


def retry_policy(sink: Sink) -> RetryPolicy:
    return RetryPolicy(
        max_attempts=sink.max_attempts, backoff_initial_s=sink.backoff_initial_s, backoff_max_s=sink.backoff_max_s,
        max_retry_after_s=sink.max_retry_after_s, connect_timeout_s=sink.connect_timeout_s, timeout_s=sink.timeout_s,
    )


def sink_credentials(sink: Sink, environ: Mapping[str, str]) -> tuple[str | None, str | None, str | None]:
    """(url, secret, problem). The problem names the variable, never a value."""
    url = environ.get(sink.url_env) or None
    if url is None:
        return None, None, f"sink {sink.name!r}: environment variable {sink.url_env} is not set"
    REDACTOR.add_url(url)
    secret = None
    if sink.secret_env:
        secret = environ.get(sink.secret_env) or None
        if secret is None:
            return None, None, (f"sink {sink.name!r}: environment variable {sink.secret_env} (signing secret) is not "
                                "set; messages are not sent unsigned")
        REDACTOR.add_secret(secret)
        try:
            for part in split_secrets(secret):
                secret_key(part)
        except ValueError:
            return None, None, f"sink {sink.name!r}: {sink.secret_env} does not hold a valid whsec_ secret"
    return url, secret, None


class Flusher:
    """Sends what the outbox holds, in order, each message at most once at a time."""

    def __init__(self, store: AlertStore, routes: RoutesConfig, environ: Mapping[str, str], *,
                 sleep: Callable[[float], None] = time.sleep, progress: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.routes = routes
        self.environ = environ
        self.sleep = sleep
        self.progress = progress or (lambda line: None)

    def flush(self, *, include_rejected: bool = False, force: bool = False,
              message_ids: set[str] | None = None, abandon_failures: bool = False) -> FlushSummary:
        """Send what is deliverable, sink by sink in queue order, until a pass finds nothing new.

        A sink whose next message another live flusher holds is left to that flusher (it reads
        the outbox again after each pass, so it also sends what was queued meanwhile); what is
        left that way is not counted as remaining here. ``message_ids`` (``alerts test``) sends
        just those, outside the sinks' order.
        """
        summary = FlushSummary()
        blocked: dict[str, str] = {}
        handed_over: set[str] = set()
        tried: set[int] = set()
        last_sent: dict[str, float] = {}
        session = requests.Session()
        try:
            while True:
                messages = [m for m in self.store.deliverable(now_utc(), include_rejected=include_rejected,
                                                              ignore_retry_at=force) if m.id not in tried]
                if message_ids is not None:
                    messages = [m for m in messages if m.message_id in message_ids]
                attempted = False
                for message in messages:
                    attempted = self._send_one(message, summary, blocked, handed_over, tried, last_sent, session,
                                               in_order=message_ids is None,
                                               abandon_failures=abandon_failures) or attempted
                if not attempted:
                    break
        finally:
            session.close()
        now = now_utc()
        waiting = [row for row in self.store.waiting()
                   if row["sink"] not in handed_over and not self.store.held_elsewhere(row, now)]
        summary.remaining = len(waiting)
        summary.held = self.store.outbox_counts().get("rejected", 0)
        return summary

    def _send_one(self, message, summary: FlushSummary, blocked: dict[str, str], handed_over: set[str],
                  tried: set[int], last_sent: dict[str, float], session, *, in_order: bool,
                  abandon_failures: bool) -> bool:
        """Try one message; True when it was claimed and sent (whatever the answer)."""
        tried.add(message.id)
        if message.sink in handed_over or (message.sink in blocked and not abandon_failures):
            if message.sink in blocked:
                summary.skipped += 1
            return False
        sink = self.routes.sinks.get(message.sink)
        if sink is None:
            problem = f"sink {message.sink!r} is not in {self.routes.path.name} any more"
        else:
            url, secret, problem = sink_credentials(sink, self.environ)
        if problem:
            blocked[message.sink] = problem
            summary.failed += 1
            summary.problems.append(problem)
            self._record_unsendable(message, problem, abandon_failures)
            return False
        claim = self.store.claim(message, now_utc(), in_order=in_order)
        if claim == "busy":
            # Another flusher is sending this sink's earlier messages: it sends this one after them.
            handed_over.add(message.sink)
            return False
        if claim == "done":
            return False
        wait = sink.spacing_s - (time.monotonic() - last_sent.get(sink.name, float("-inf")))
        if wait > 0:
            self.sleep(wait)
        self.progress(f"sending {message.status} {message.group_key} to {sink.name} ({message.message_id})")
        result = deliver(url, message.body.encode("utf-8"), message.message_id, secret=secret,
                         policy=retry_policy(sink), headers=sink.headers, session=session, sleep=self.sleep,
                         only_200=sink.kind == "slack")
        last_sent[sink.name] = time.monotonic()
        retry_at = None if result.retry_at is None else datetime.fromtimestamp(result.retry_at, UTC)
        self.store.finish(message, delivered=result.delivered, rejected=result.permanent,
                          attempts=result.attempt_count, status=result.status, error=result.error,
                          retry_at=retry_at, now=now_utc())
        if abandon_failures and not result.delivered:
            self._abandon(message)
        summary.messages.append({"message_id": message.message_id, "sink": sink.name, "route": message.route,
                                 "status": message.status, "delivered": result.delivered,
                                 "http_status": result.status, "attempts": result.attempt_count,
                                 "error": result.error})
        if result.delivered:
            summary.delivered += 1
        elif result.permanent:
            summary.rejected += 1
            summary.problems.append(f"sink {sink.name!r} rejected {message.message_id}: {result.error}")
        else:
            summary.failed += 1
            blocked[sink.name] = result.error or "not delivered"
            summary.problems.append(f"sink {sink.name!r}: {message.message_id} not delivered: {result.error}")
        return True

    def _record_unsendable(self, message, problem: str, abandon: bool) -> None:
        with self.store.transaction():
            self.store.db.execute(
                "UPDATE alert_outbox SET last_error = ?, state = CASE WHEN ? THEN 'abandoned' ELSE state END "
                "WHERE id = ? AND state IN ('pending', 'rejected')",
                (problem, int(abandon), message.id),
            )
            self.store.event("not_sent", now_utc(), run_key=message.run_key, route=message.route, sink=message.sink,
                             message_id=message.message_id, detail=problem)

    def _abandon(self, message) -> None:
        with self.store.transaction():
            self.store.db.execute("UPDATE alert_outbox SET state = 'abandoned' WHERE id = ? AND state != 'delivered'",
                                  (message.id,))


# -- the entry points ------------------------------------------------------------------------


@dataclass
class NotifyOutcome:
    """What ``after_run`` did, for the run's output. Never holds a URL or a secret."""

    planned: PlanSummary | None = None
    flushed: FlushSummary | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Whether anything was queued, sent or is still waiting (else the run says nothing)."""
        p, f = self.planned, self.flushed
        return bool((p and (p.queued_messages or p.deduplicated or p.silenced))
                    or (f and (f.delivered or f.failed or f.rejected or f.remaining or f.held)))

    def line(self) -> str:
        parts = []
        if self.planned is not None:
            p = self.planned
            parts.append(f"{p.queued_messages} message(s) queued ({p.firing} firing, {p.resolved} resolved, "
                         f"{p.deduplicated} deduplicated, {p.silenced} silenced)")
        if self.flushed is not None:
            f = self.flushed
            parts.append(f"{f.delivered} delivered, {f.remaining} waiting in the outbox"
                         + (f", {f.held} rejected (see `harness alerts list`)" if f.held else ""))
        return "notifications: " + ("; ".join(parts) if parts else "none")


def notifications_disabled(environ: Mapping[str, str]) -> bool:
    return environ.get("HARNESS_NOTIFY", "").strip().lower() in ("0", "off", "false", "no")


def _load_report(path: Path) -> RunReport:
    try:
        return RunReport.model_validate_json(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: report.json not found (pruned?)") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not a harness report: {str(exc).splitlines()[0]}") from None


def plan_pending(store: AlertStore, routes: RoutesConfig, environ: Mapping[str, str], now: datetime,
                 current: tuple[RunReport, Path | None] | None = None) -> tuple[PlanSummary, list[str]]:
    """Plan every dispatch not planned yet, oldest first (``current`` from memory, the rest from
    their report.json). A dispatch whose report is gone is closed with the reason."""
    renderer = PayloadRenderer(templates_dir(routes))
    planner = Planner(store, routes, renderer, environ)
    total = PlanSummary()
    warnings: list[str] = []
    for row in store.unplanned_dispatches():
        run_key = row["run_key"]
        if current is not None and current[0].run.id == run_key:
            report, report_dir = current
        else:
            path = Path(row["report_path"]) if row["report_path"] else None
            try:
                if path is None:
                    raise ConfigError(f"run {run_key}: no report path recorded")
                report, report_dir = _load_report(path), path.parent
            except ConfigError as exc:
                with store.transaction():
                    store.mark_planned(run_key, now, error=str(exc))
                    store.event("dispatch_dropped", now, run_key=run_key, detail=str(exc))
                warnings.append(f"notifications of run {run_key} cannot be planned: {exc}")
                continue
        done = planner.plan(report, report_dir, now)
        for name in ("queued_messages", "firing", "resolved", "deduplicated", "silenced"):
            setattr(total, name, getattr(total, name) + getattr(done, name))
        total.notes.extend(done.notes)
    return total, warnings


def after_run(report: RunReport, report_dir: Path | None, history_path: Path | None, *,
              environ: Mapping[str, str] | None = None, routes_file: Path | None = None,
              progress: Callable[[str], None] | None = None, stream: TextIO | None = None) -> NotifyOutcome:
    """The run pipeline's one call: queue this run's notifications and flush the outbox.

    Never raises for a delivery or configuration problem (the run's report is already
    published): problems come back as warnings, and what could not be planned or sent is kept
    for the next invocation or ``harness alerts flush``.
    """
    env = os.environ if environ is None else environ
    outcome = NotifyOutcome()
    if notifications_disabled(env):
        outcome.warnings.append("notifications disabled (HARNESS_NOTIFY=off): nothing queued or sent")
        return outcome
    if history_path is None:
        outcome.warnings.append("notifications not sent: --no-history leaves no outbox to keep them in")
        return outcome
    if report.run.interrupted:
        outcome.warnings.append("notifications not sent for an interrupted run")
        return outcome
    now = now_utc()
    report_path = str(Path(report_dir) / "report.json") if report_dir else None
    try:
        with HistoryStore.open(history_path) as history:
            store = AlertStore(history)
            store.add_dispatch(report.run.id, report.run.cadence, report_path, now)
            try:
                routes = load_routes(routes_path(routes_file, env))
                outcome.planned, warnings = plan_pending(store, routes, env, now, current=(report, report_dir))
                outcome.warnings.extend(warnings)
            except ConfigError as exc:
                store.note_dispatch_error(report.run.id, str(exc))
                outcome.warnings.append(
                    f"notifications not queued: {exc}; they are kept and queued by the next `harness run` or "
                    "`harness alerts flush` once this is fixed"
                )
                return outcome
            outcome.flushed = Flusher(store, routes, env, progress=progress).flush()
            outcome.warnings.extend(outcome.flushed.problems)
            if stream is not None and outcome.active:
                print(f"harness: {outcome.line()}", file=stream)
    except ConfigError as exc:  # the history database itself is unusable
        outcome.warnings.append(f"notifications not sent: {exc}")
    except Exception as exc:  # noqa: BLE001 - the run is published; never lose it to a notify bug
        outcome.warnings.append(
            f"notifications failed with an internal error ({type(exc).__name__}: {REDACTOR.redact(str(exc))}); "
            "the outbox keeps what was queued"
        )
    return outcome


def flush(history_path: Path, routes_file: Path | None = None, *, environ: Mapping[str, str] | None = None,
          include_rejected: bool = False, force: bool = False,
          progress: Callable[[str], None] | None = None) -> tuple[PlanSummary, FlushSummary, list[str]]:
    """``harness alerts flush``: plan what was left unplanned, then send everything pending."""
    env = os.environ if environ is None else environ
    routes = load_routes(routes_path(routes_file, env))
    with HistoryStore.open(history_path) as history:
        store = AlertStore(history)
        planned, warnings = plan_pending(store, routes, env, now_utc())
        flushed = Flusher(store, routes, env, progress=progress).flush(include_rejected=include_rejected, force=force)
    return planned, flushed, warnings


def send_test(history_path: Path, routes_file: Path | None = None, *, route: str | None = None,
              environ: Mapping[str, str] | None = None) -> FlushSummary:
    """``harness alerts test``: one clearly marked test alert to each sink of the route (or all)."""
    env = os.environ if environ is None else environ
    routes = load_routes(routes_path(routes_file, env))
    targets = routes.targets_of_route(route) if route else routes.all_targets()
    now = now_utc()
    host = socket.gethostname()
    stamp = utc_iso(now)
    with HistoryStore.open(history_path) as history:
        store = AlertStore(history)
        planner = Planner(store, routes, PayloadRenderer(templates_dir(routes)), env)
        ids: set[str] = set()
        with store.transaction():
            for target in targets:
                item = NotificationAlert(
                    fingerprint=f"test-{new_message_id()[4:20]}",
                    status="firing",
                    labels={"alertname": TEST_ALERTNAME, "severity": "info", "owner": "harness", "cadence": "manual",
                            "route": target.route, "test": "true"},
                    annotations={
                        "title": "TEST ALERT - no action needed",
                        "summary": f"Test notification from `harness alerts test` on {host} at {stamp} "
                                   f"(route {target.route}, sink {target.sink.name}). Ignore it.",
                        "sla": "none",
                        "runbook_url": runbook_link(routes, env),
                    },
                    starts_at=stamp,
                )
                group = _Group(route=target.route, sink=target.sink, status="firing",
                               labels={"alertname": TEST_ALERTNAME, "route": target.route}, alerts=[item],
                               triggers={item.fingerprint: TEST_ALERTNAME})
                ids.update(planner._enqueue(group, None, "", runbook_link(routes, env), now, test=True))
        return Flusher(store, routes, env).flush(message_ids=ids, abandon_failures=True)


def print_outcome(outcome: NotifyOutcome, stream=None) -> None:
    stream = stream or sys.stderr
    print(f"harness: {outcome.line()}", file=stream)
    for warning in outcome.warnings:
        print(f"harness: warning: {warning}", file=stream)


def parse_for(text: str) -> timedelta:
    """``--for 24h`` -> timedelta (ConfigError naming the option on nonsense)."""
    from harness.alerts.routes import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"--for: {exc}") from None
    if seconds <= 0:
        raise ConfigError("--for: a silence must last longer than 0 s")
    return timedelta(seconds=seconds)
