"""``harness alerts``: the outbox, silences and test alerts of notification delivery.

Subcommands: ``list``, ``flush``, ``silence``, ``expire``, ``test``, ``routes``. The work is in
``harness.alerts.delivery`` (imported inside the handlers so ``harness --help`` stays fast).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harness.commands.common import (
    add_catalog_options,
    add_history_options,
    add_json_option,
    history_path,
    positive_int,
    print_json,
)

EXIT_OK = 0
EXIT_UNDELIVERED = 1


def _routes_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--routes", type=Path, metavar="PATH",
                        help="routes YAML (default: $HARNESS_ROUTES or alerts/routes.yaml)")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "alerts",
        help="notification delivery: list the outbox and silences, flush, silence, send a test alert",
        description="Notifications of fired and resolved triggers are queued in the history database's outbox "
        "after each `harness run` and sent to the sinks of alerts/routes.yaml (signed webhooks, Slack). "
        "These commands inspect and operate that delivery. See docs/alerts.md.",
        epilog="Exit codes: 0 ok; 1 messages left undelivered (flush, test); 2 usage or configuration error.",
    )
    commands = parser.add_subparsers(dest="alerts_command", metavar="ACTION", parser_class=type(parser))
    parser.set_defaults(handler=lambda args: _missing_action(parser))

    listing = commands.add_parser("list", help="firing alerts, silences, the outbox and recent delivery events",
                                  description="Show what delivery knows: alerts last sent as firing, active "
                                  "silences, messages waiting in the outbox (pending, rejected) and recent events.")
    listing.add_argument("--all", action="store_true", help="include expired silences and delivered messages")
    listing.add_argument("--events", type=positive_int, default=15, metavar="N",
                         help="how many recent delivery events to show (default: %(default)s)")
    add_json_option(listing, "everything")
    add_history_options(listing, allow_disable=False)
    listing.set_defaults(handler=handle_list)

    flushing = commands.add_parser("flush", help="send every message waiting in the outbox",
                                   description="Queue the notifications of runs not planned yet (for example "
                                   "after fixing routes.yaml), then send every pending message in order, each "
                                   "with its original webhook-id (the receiver's idempotency key).",
                                   epilog="Exit codes: 0 outbox empty; 1 messages still undelivered or rejected; "
                                   "2 configuration error.")
    flushing.add_argument("--include-rejected", action="store_true",
                          help="also resend messages a receiver refused with a 4xx (after fixing its settings)")
    flushing.add_argument("--force", action="store_true",
                          help="ignore a receiver's Retry-After date and send now")
    add_json_option(flushing, "the delivery results")
    _routes_option(flushing)
    add_history_options(flushing, allow_disable=False)
    flushing.set_defaults(handler=handle_flush)

    silencing = commands.add_parser("silence", help="mute a trigger (optionally for one selector) for a while",
                                    description="Matching alerts are recorded but not sent until the silence "
                                    "ends. It expires by itself after --for.")
    silencing.add_argument("trigger", metavar="TRIGGER", help="trigger id (e.g. RT-002) or a glob (FAIL-*)")
    silencing.add_argument("--selector", metavar="NAME", help="only this selector's alerts (default: any)")
    silencing.add_argument("--for", dest="duration", required=True, metavar="DURATION",
                           help="how long: 30m, 24h, 3d, 1w, 1d12h")
    silencing.add_argument("--reason", required=True, metavar="TEXT", help="why (shown in `harness alerts list`)")
    add_json_option(silencing, "the silence")
    add_catalog_options(silencing)
    add_history_options(silencing, allow_disable=False)
    silencing.set_defaults(handler=handle_silence)

    expiring = commands.add_parser("expire", help="end a silence now",
                                   description="End a silence before its time (id or unique id prefix, as "
                                   "`harness alerts list` shows it).")
    expiring.add_argument("silence_id", metavar="ID")
    add_history_options(expiring, allow_disable=False)
    expiring.set_defaults(handler=handle_expire)

    testing = commands.add_parser("test", help="send a clearly marked test alert through the routes",
                                  description="Send one test alert (alertname HarnessTestAlert, severity info, "
                                  "label test=true) to every sink of --route, or of every route, and report "
                                  "what each sink answered. Failed test messages are not retried later.",
                                  epilog="Exit codes: 0 every sink accepted it; 1 a sink did not; 2 configuration "
                                  "error.")
    testing.add_argument("--route", metavar="NAME", help="only this route's sinks ('default' for the default route)")
    add_json_option(testing, "what each sink answered")
    _routes_option(testing)
    add_history_options(testing, allow_disable=False)
    testing.set_defaults(handler=handle_test)

    showing = commands.add_parser("routes", help="print the routing table and whether each sink's variables are set",
                                  description="Validate routes.yaml and print its routes and sinks; for each sink, "
                                  "whether its URL and secret environment variables are set (never their values).")
    add_json_option(showing, "the routes")
    _routes_option(showing)
    showing.set_defaults(handler=handle_routes)


def _missing_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def _history(args: argparse.Namespace) -> Path:
    return history_path(args)


# -- handlers ------------------------------------------------------------------------------------


def handle_list(args: argparse.Namespace) -> int:
    from harness.alerts.delivery_state import AlertStore, now_utc
    from harness.history import HistoryStore

    path = _history(args)
    now = now_utc()
    with HistoryStore.open(path, create=False) as history:
        store = AlertStore(history)
        silences = store.silences(now, include_expired=args.all)
        firing = store.all_firing()
        states = None if args.all else ("pending", "sending", "rejected")
        outbox = store.outbox(states, limit=200)
        counts = store.outbox_counts()
        events = store.events(limit=args.events)
        unplanned = [dict(row) for row in store.unplanned_dispatches()]
    if args.json:
        print_json({
            "history": str(path),
            "silences": [s.to_json(now) for s in silences],
            "firing": [{"fingerprint": e.fingerprint, "trigger": e.trigger, "route": e.route, "sink": e.sink,
                        "selector": e.state.get("labels", {}).get("selector"), "first_sent_at": e.first_sent_at,
                        "last_sent_at": e.last_sent_at, "send_count": e.send_count} for e in firing],
            "outbox": {"counts": counts, "messages": [m.to_json() for m in outbox]},
            "unplanned_runs": unplanned,
            "events": events,
        })
        return EXIT_OK
    print(f"history: {path}")
    print(f"\nsilences ({'all' if args.all else 'active'}): {len(silences) or 'none'}")
    for s in silences:
        state = "active" if s.active(now) else ("expired early" if s.expired_at else "ended")
        print(f"  {s.id}  {s.trigger:<11} selector={s.selector or '*':<24} until {s.ends_at}  [{state}]  "
              f"{s.reason}  (by {s.created_by or '?'})")
    print(f"\nfiring (last sent as firing): {len(firing) or 'none'}")
    for e in firing:
        selector = e.state.get("labels", {}).get("selector") or "-"
        print(f"  {e.trigger:<11} {selector:<24} -> {e.route}/{e.sink}  last sent {e.last_sent_at} "
              f"({e.send_count}x)  {e.fingerprint}")
    summary = ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "empty"
    print(f"\noutbox: {summary}")
    for m in outbox:
        extra = f"  last error: {m.last_error}" if m.last_error and m.state != "delivered" else ""
        print(f"  #{m.id} {m.state:<9} {m.status:<8} -> {m.route}/{m.sink}  {m.created_at}  attempts {m.attempts}"
              f"  {m.message_id}{extra}")
    if unplanned:
        print(f"\nruns whose notifications are not queued yet: {len(unplanned)} (fix the error, then `harness alerts flush`)")
        for row in unplanned:
            print(f"  {row['run_key']}: {row['error'] or 'not planned yet'}")
    if events:
        print(f"\nrecent events (newest first, {len(events)}):")
        for ev in events:
            what = " ".join(x for x in (ev["trigger_id"], f"{ev['route']}/{ev['sink']}" if ev["sink"] else None) if x)
            detail = f"  {ev['detail']}" if ev["detail"] else ""
            print(f"  {ev['at']}  {ev['event']:<19} {what}{detail}")
    return EXIT_OK


def handle_flush(args: argparse.Namespace) -> int:
    from harness.alerts import delivery

    planned, flushed, warnings = delivery.flush(
        _history(args), args.routes, include_rejected=args.include_rejected, force=args.force,
        progress=None if args.json else (lambda line: print(f"harness: {line}", file=sys.stderr)),
    )
    if args.json:
        print_json({"planned": planned.__dict__, "delivered": flushed.delivered, "failed": flushed.failed,
                    "rejected": flushed.rejected, "skipped": flushed.skipped, "remaining": flushed.remaining,
                    "held_rejected": flushed.held,
                    "messages": flushed.messages, "problems": flushed.problems, "warnings": warnings})
    else:
        if planned.queued_messages:
            print(f"queued {planned.queued_messages} message(s) of runs planned late")
        print(f"delivered {flushed.delivered}, failed {flushed.failed}, rejected {flushed.rejected}; outbox: "
              f"{flushed.remaining} waiting, {flushed.held} rejected (resend with --include-rejected)")
        for problem in [*warnings, *flushed.problems]:
            print(f"harness: warning: {problem}", file=sys.stderr)
    return EXIT_OK if flushed.ok and not warnings else EXIT_UNDELIVERED


def handle_silence(args: argparse.Namespace) -> int:
    import fnmatch

    from harness.alerts import delivery
    from harness.alerts.delivery_state import AlertStore, now_utc
    from harness.commands.common import load_catalog, load_rules
    from harness.errors import ConfigError
    from harness.history import HistoryStore

    duration = delivery.parse_for(args.duration)
    if not args.reason.strip():
        raise ConfigError("--reason: say why the alert is silenced")
    catalog = load_catalog(args)
    rules = load_rules(args, catalog)
    known = [trigger.id for trigger in rules.triggers]
    if not any(fnmatch.fnmatchcase(name, args.trigger) for name in known):
        raise ConfigError(f"TRIGGER: {args.trigger!r} matches no trigger of {rules.path} (known: {', '.join(known)})")
    if args.selector:
        catalog.selector(args.selector)  # a ConfigError listing the valid names
    who = os.environ.get("GITHUB_ACTOR") or os.environ.get("USER") or os.environ.get("LOGNAME")
    with HistoryStore.open(_history(args)) as history:
        silence = AlertStore(history).add_silence(args.trigger, args.selector, duration.total_seconds(),
                                                  args.reason.strip(), who, now_utc())
    if args.json:
        print_json(silence.to_json(now_utc()))
    else:
        print(f"silence {silence.id}: {silence.trigger} (selector {silence.selector or 'any'}) until "
              f"{silence.ends_at} - {silence.reason}")
    return EXIT_OK


def handle_expire(args: argparse.Namespace) -> int:
    from harness.alerts.delivery_state import AlertStore, now_utc
    from harness.errors import ConfigError
    from harness.history import HistoryStore

    with HistoryStore.open(_history(args), create=False) as history:
        silence = AlertStore(history).expire_silence(args.silence_id, now_utc())
    if silence is None:
        raise ConfigError(f"ID: no single silence with id {args.silence_id!r} (see `harness alerts list --all`)")
    print(f"silence {silence.id} ({silence.trigger}) expired at {silence.expired_at}")
    return EXIT_OK


def handle_test(args: argparse.Namespace) -> int:
    from harness.alerts import delivery

    flushed = delivery.send_test(_history(args), args.routes, route=args.route)
    if args.json:
        print_json({"delivered": flushed.delivered, "failed": flushed.failed, "rejected": flushed.rejected,
                    "messages": flushed.messages, "problems": flushed.problems})
    else:
        for entry in flushed.messages:
            verdict = f"delivered (HTTP {entry['http_status']})" if entry["delivered"] else f"FAILED: {entry['error']}"
            print(f"  {entry['route']}/{entry['sink']}: {verdict}  [{entry['message_id']}, {entry['attempts']} attempt(s)]")
        for problem in flushed.problems:
            if not any(problem.endswith(str(e["error"])) for e in flushed.messages if e["error"]):
                print(f"  {problem}")
        print(f"test alert: {flushed.delivered} sink(s) accepted it, {flushed.failed + flushed.rejected} did not")
    return EXIT_OK if flushed.failed == 0 and flushed.rejected == 0 else EXIT_UNDELIVERED


def handle_routes(args: argparse.Namespace) -> int:
    from harness.alerts import delivery
    from harness.alerts.routes import format_duration, load_routes

    routes = load_routes(delivery.routes_path(args.routes))
    env = os.environ
    sinks = {
        name: {"kind": sink.kind, "url_env": sink.url_env, "url_set": bool(env.get(sink.url_env)),
               "secret_env": sink.secret_env, "secret_set": bool(sink.secret_env and env.get(sink.secret_env))}
        for name, sink in routes.sinks.items()
    }
    table = [
        {"route": r.name, "match": r.match.model_dump(exclude_defaults=True), "min_severity": r.min_severity,
         "sinks": list(r.sinks), "continue": r.continue_}
        for r in routes.routes
    ] + [{"route": "default", "match": {}, "min_severity": None, "sinks": list(routes.default.sinks), "continue": False}]
    if args.json:
        print_json({"path": str(routes.path), "routes": table, "sinks": sinks,
                    "repeat_interval": routes.repeat_interval.model_dump(), "group_by": list(routes.group_by)})
        return EXIT_OK
    print(f"{routes.path}: valid")
    for row in table:
        match = " ".join(f"{k}={','.join(v)}" for k, v in row["match"].items()) or "*"
        if row["min_severity"]:
            match += f" severity>={row['min_severity']}"
        print(f"  {row['route']:<24} {match:<50} -> {', '.join(row['sinks'])}{'  (continue)' if row['continue'] else ''}")
    print("sinks:")
    for name, s in sinks.items():
        secret = "" if not s["secret_env"] else f", {s['secret_env']} {'set' if s['secret_set'] else 'NOT SET'}"
        print(f"  {name:<24} {s['kind']:<8} {s['url_env']} {'set' if s['url_set'] else 'NOT SET'}{secret}")
    intervals = routes.repeat_interval
    print("repeat interval: " + ", ".join(f"{c} {format_duration(getattr(intervals, c))}"
                                         for c in ("pr", "nightly", "weekly", "manual", "other")))
    return EXIT_OK
