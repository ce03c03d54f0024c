"""``harness doctor``: check this machine and configuration: the generic checks for any catalog, and
the checks the catalog declares (this repository's: the brief's handoff checklist, §7).

The checks are in ``harness.doctor`` (imported inside the handler so ``harness --help`` stays fast).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.common import (
    add_catalog_options,
    add_history_options,
    add_json_option,
    default_jobs,
    history_path,
    positive_int,
    print_json,
)

STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "unknown": "magenta", "skipped": "dim",
                "info": "cyan"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the catalog's environment and its declared checks (here: the brief's handoff checklist)",
        description="Check what running the catalog needs and print a table (check, status, evidence, how to "
        "fix). For any catalog: the catalog and rules valid, pytest, pytest-json-report and pytest-timeout in the "
        "catalog's interpreter, the webhook variables alerts/routes.yaml names (names only), the history "
        "database's health. Then the checks the catalog declares under [doctor]; this repository's are the "
        "brief's handoff checklist (§7): torch >= 2.2 and lightning importable, the canonical dataset present, "
        "the integration selector passing within its hard limit and the backend selection suite in under 5 s "
        "(judged as the gate judged their last recorded run, or now with --run), CONFIG-001 wiring (runs the "
        "config_sync selector), the runtime guardrails and escalation matrix, the CPU-only environment. A check "
        "that cannot run says why (unknown / skipped).",
        epilog="Exit codes: 0 every required check holds (pass, warn or info); 1 some required check failed or "
        "could not tell; 2 usage error; 130 interrupted. See docs/guide.md#doctor-the-handoff-checklist-in-one-command.",
    )
    parser.add_argument("--run", action="store_true",
                        help="run the selectors of the declared selector_passes checks now instead of reading history")
    parser.add_argument("--fix", action="store_true",
                        help="fix what can be fixed here: generate a declared dataset, migrate the history schema")
    parser.add_argument("--jobs", "-j", type=positive_int, default=default_jobs(),
                        help="CPU budget for the selectors doctor runs (default: CPUs available, %(default)s here)")
    parser.add_argument("--progress", choices=("auto", "rich", "plain", "none"), default="auto",
                        help="live progress of the selector runs on stderr (default: auto)")
    parser.add_argument("--routes", type=Path, metavar="PATH",
                        help="routes YAML naming the webhook variables (default: $HARNESS_ROUTES or alerts/routes.yaml)")
    add_json_option(parser, "the checks")
    add_catalog_options(parser)
    add_history_options(parser, allow_disable=False)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.alerts.delivery import routes_path
    from harness.doctor import DoctorRequest, diagnose
    from harness.locations import DEFAULT_CATALOG

    request = DoctorRequest(
        catalog_path=args.catalog or DEFAULT_CATALOG, rules_path=args.rules,
        history=history_path(args), routes_path=routes_path(args.routes), run=args.run, fix=args.fix,
        jobs=args.jobs, progress="none" if args.progress == "auto" and args.json and not sys.stderr.isatty() else args.progress,
    )
    if not args.json and args.progress != "none":
        print("harness doctor: asking the catalog's interpreter, running the declared checks"
              + (" and the selectors" if args.run else "")
              + (", generating what is missing" if args.fix else "") + " ...", file=sys.stderr, flush=True)
    report = diagnose(request)
    if args.json:
        print_json(report.to_json())
    else:
        render(report)
    return report.exit_code


def render(report) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160, highlight=False)
    table = Table(title="harness doctor: handoff checklist", show_lines=True)
    table.add_column("check", max_width=34)
    table.add_column("status")
    table.add_column("evidence", ratio=3, overflow="fold")
    table.add_column("how to fix", ratio=2, overflow="fold")
    for check in report.checks:
        style = STATUS_STYLE.get(check.status, "")
        # evidence quotes test ids and messages ("test_x[tensorflow]"): plain text, never rich markup
        table.add_row(escape(check.title), f"[{style}]{check.status}[/]", escape(check.evidence), escape(check.fix or "-"))
    console.print(table)
    if report.guardrails:
        rails = Table(title="Runtime guardrails as configured (brief §2.3; RT-001 critical, RT-002 warning x3, RT-003 suspicious)")
        for column in ("selector", "mode", "measure", "critical", "warning", "suspicious below", "baseline",
                       "test timeout", "selector timeout"):
            rails.add_column(column)
        for row in report.guardrails:
            rails.add_row(escape(row["selector"]), row["mode"], row["measure"], *(_seconds(row[key]) for key in (
                "critical_s", "warning_s", "suspicious_below_s", "baseline_s", "test_timeout_s", "timeout_s")))
        console.print(rails)
    if report.matrix:
        matrix = Table(title="Escalation matrix as configured (brief §3.3/§3.4)")
        for column in ("trigger", "severity", "owner", "SLA", "condition"):
            matrix.add_column(column)
        for row in report.matrix:
            matrix.add_row(*(escape(str(row[key])) for key in ("trigger", "severity", "owner", "sla", "title")))
        console.print(matrix)
    required = [c for c in report.checks if c.required]
    failing = [c for c in required if not c.holds]
    if report.work_dir:
        console.print(f"logs of the failing selector runs: {escape(report.work_dir)}", soft_wrap=True)
    if report.interrupted:
        console.print("harness doctor: interrupted", soft_wrap=True)
    elif failing:
        names = escape(", ".join(f"{c.id} ({c.status})" for c in failing))
        console.print(f"harness doctor: {len(required) - len(failing)} of {len(required)} required checks hold; "
                      f"not holding: {names} (exit 1)", soft_wrap=True)
    else:
        console.print(f"harness doctor: all {len(required)} required checks hold (exit 0)", soft_wrap=True)


def _seconds(value) -> str:
    return "-" if value is None else f"{value:g} s"
