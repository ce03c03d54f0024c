"""``harness serve``: run the cadences on the catalog's cron schedules and serve the dashboard."""

from __future__ import annotations

import argparse

from harness.commands.common import SEVERITIES, add_catalog_options, add_history_options, positive_int


def _schedule(text: str) -> tuple[str, str]:
    name, sep, cron = text.partition("=")
    if not sep or not name.strip() or not cron.strip():
        raise argparse.ArgumentTypeError(f"expected CADENCE=CRON (e.g. nightly='17 3 * * *'), got {text!r}")
    return name.strip(), cron.strip()


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port 0-65535 (0: any free port), got {value}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the cadences on the catalog's cron schedules and serve the dashboard on localhost",
        description="Self-hosted scheduling: every cadence with a `schedule` (cron, UTC; 5 fields, or 6 with "
        "seconds last) in the catalog runs as `harness run --cadence NAME` when due, one run at a time; the "
        "reports folder (index.html dashboard, each run's summary) is served over HTTP, with /healthz as JSON. "
        "SIGTERM or SIGINT stops it cleanly: the run in flight is interrupted and still writes its report.",
        epilog="Exit codes: 0 stopped by SIGTERM/SIGINT; 2 usage or configuration error (no schedule, bad cron, "
        "port in use).",
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=_port, default=8765, help="port (default: %(default)s; 0 picks a free one)")
    parser.add_argument("--cadence", action="append", metavar="NAME",
                        help="schedule only this cadence (repeatable; default: every cadence with a schedule)")
    parser.add_argument("--schedule", action="append", type=_schedule, metavar="CADENCE=CRON",
                        help="override or add a cadence's cron schedule (repeatable)")
    parser.add_argument("--jobs", "-j", type=positive_int, help="passed to each harness run")
    parser.add_argument("--fail-on", choices=SEVERITIES, help="passed to each harness run")
    add_catalog_options(parser)
    add_history_options(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.commands.common import history_path, load_catalog, reports_dir
    from harness.errors import HarnessError
    from harness.serve import Server, schedules

    catalog = load_catalog(args)
    table = schedules(catalog, args.cadence, dict(args.schedule or []))
    reports = reports_dir(args).resolve()
    run_args = ["--catalog", str(catalog.path.resolve()), "--reports-dir", str(reports)]
    if args.rules:
        run_args += ["--rules", str(args.rules.resolve())]
    history = history_path(args)
    child_env = None
    if history is None:
        run_args.append("--no-history")
    elif getattr(history, "url", None):  # PostgreSQL: the URL travels in the environment, never in argv
        import os

        child_env = {**os.environ, "HARNESS_HISTORY_URL": history.url}
    else:
        run_args += ["--history", str(Path(history).resolve())]
    if args.jobs:
        run_args += ["--jobs", str(args.jobs)]
    if args.fail_on:
        run_args += ["--fail-on", args.fail_on]
    server = Server(catalog, table, run_args, reports, host=args.host, port=args.port, env=child_env,
                    history=history)
    try:
        return server.serve()
    except OSError as exc:
        raise HarnessError(f"cannot serve on {args.host}:{args.port}: {exc.strerror or exc}") from None
