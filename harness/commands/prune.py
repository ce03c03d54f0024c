"""``harness prune``: remove evidence older than the catalog's ``[retention]`` (brief §3.2).

The policy and what it never removes are in ``harness.retention`` (imported inside the handler so
``harness --help`` stays fast).
"""

from __future__ import annotations

import argparse
import sys

from harness.commands.common import (
    add_catalog_options,
    add_history_options,
    add_json_option,
    history_path,
    load_catalog,
    print_json,
    reports_dir,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prune",
        help="remove report directories and history rows older than the catalog's [retention]",
        description="Apply the catalog's [retention] (brief §3.2): remove run directories under the reports folder "
        "and history rows older than regression_evidence_days (>= 90), superseded baselines, and the alert delivery "
        "log older than delivery_log_days. Never removed: each selector's latest result, last passing and last "
        "known-good run, open alerts, current baselines, undelivered messages, active silences, escalation "
        "directories. Prints what it removed and the space freed.",
        epilog="Exit codes: 0 done (also when nothing was old enough); 2 usage or configuration error; "
        "3 internal error. See docs/guide.md#retention-harness-prune.",
    )
    parser.add_argument("--dry-run", action="store_true", help="say what would be removed; remove nothing")
    add_json_option(parser, "what was removed and kept")
    add_catalog_options(parser, rules=False)
    add_history_options(parser, allow_disable=False)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.retention import prune

    catalog = load_catalog(args)
    folder, history = reports_dir(args), history_path(args)
    result = prune(folder, history, catalog.retention, dry_run=args.dry_run)
    if not result.dry_run and (result.removed_dirs or any(result.history_rows.values())) \
            and (folder / "index.html").exists():
        from harness.dashboard import refresh_after_run

        problem = refresh_after_run(folder, history, catalog)  # no links to removed runs
        if problem:
            result.warnings.append(problem)
    if args.json:
        print_json(result.to_json())
    else:
        print_summary(result, str(catalog.path))
    for warning in result.warnings:
        print(f"harness: warning: {warning}", file=sys.stderr)
    return 0


def size_text(count: int | None) -> str:
    if count is None:
        return "-"
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{count} B"  # pragma: no cover


def print_summary(result, catalog_path: str) -> None:
    verb = "would remove" if result.dry_run else "removed"
    policy = result.retention
    print(f"retention ({catalog_path}): regression evidence {policy.regression_evidence_days} days "
          f"(before {result.regression_cutoff:%Y-%m-%d %H:%M} UTC), delivery log {policy.delivery_log_days} days, "
          f"escalation evidence {policy.escalation_evidence}")
    print(f"{verb} {len(result.removed_dirs)} report director{'y' if len(result.removed_dirs) == 1 else 'ies'} "
          f"({size_text(result.dir_bytes)})")
    for item in result.removed_dirs:
        print(f"  {item.name:<40} {size_text(item.bytes):>9}  {item.reason}")
    if result.kept_dirs or result.kept_runs:
        print("kept although older than the retention:")
        shown = set()
        for item in result.kept_dirs:
            shown.add(item.name)
            print(f"  {item.name:<40} {item.reason}")
        for run in result.kept_runs:
            if run.run_key not in shown:
                print(f"  {run.run_key:<40} (history only) {'; '.join(run.reasons)}")
    rows = {table: count for table, count in result.history_rows.items() if count}
    if not result.history_rows:
        print("history rows: none examined (no history database)")
    else:
        listed = ", ".join(f"{table} {count}" for table, count in rows.items()) or "none"
        print(f"history rows {verb}: {listed}")
        if result.history_bytes_freed is not None:
            print(f"history file: {size_text(result.history_bytes_before)} -> {size_text(result.history_bytes_after)}")
    if result.dry_run:
        print(f"dry run: nothing removed; {size_text(result.dir_bytes)} of report directories would be freed")
    else:
        print(f"freed {size_text(result.bytes_freed)}")
