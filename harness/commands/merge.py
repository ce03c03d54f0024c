"""``harness merge``: combine the run directories of ``harness run --shard`` into one verdict."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.common import (
    SEVERITIES,
    add_catalog_options,
    add_history_options,
    add_json_option,
    history_path,
    load_catalog,
    load_rules,
    print_json,
    reports_dir,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "merge",
        help="merge shard run directories (harness run --shard) into one report and one rule evaluation",
        description="Combine the run directories of `harness run --shard I/N` (every shard of one cadence and "
        "commit) into one report under <reports dir>/<UTC timestamp>-<cadence>/, with the trigger rules applied "
        "once as if the selectors had run together, and record that run in history. A folder that holds run "
        "directories (what actions/download-artifact leaves) may be named instead of each directory.",
        epilog="Exit codes: 0 gate passed; 1 gate failed; 2 usage error (a shard missing or given twice, shards "
        "of different cadences or commits); 3 internal error.",
    )
    parser.add_argument("run_dirs", nargs="+", type=Path, metavar="RUN_DIR",
                        help="shard run directories, or folders holding them")
    parser.add_argument("--fail-on", choices=SEVERITIES, default="high",
                        help="lowest severity that fails the gate (default: %(default)s)")
    add_json_option(parser, "the merged run summary")
    add_catalog_options(parser)
    add_history_options(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness import merge, verdict

    catalog = load_catalog(args)
    rules = load_rules(args, catalog)
    shards = merge.load_shards(merge.find_run_dirs(args.run_dirs))
    reports, history = reports_dir(args), history_path(args)
    report, directory, warnings = merge.merge(shards, catalog, rules, reports, history, args.fail_on)
    warnings += verdict.publish(report, directory, reports_dir=reports, history_path=history, catalog=catalog)
    for warning in warnings:
        print(f"harness: warning: {warning}", file=sys.stderr)
    if args.json:
        from harness.commands.run import summary_dict
        from harness.pipeline import RunOutcome

        print_json(summary_dict(RunOutcome(report=report, directory=directory, exit_code=report.gate.exit_code)))
    else:
        from harness.render import seconds

        for result in report.selectors:
            print(f"  {result.name:<28} {result.state.value:<17} {seconds(result.runtime_s):>9}  {result.reason or ''}")
        for alert in report.alerts:
            print(f"  {alert.severity.upper():<8} {alert.trigger:<11} {alert.summary}")
        verdict = "interrupted" if report.run.interrupted else ("gate passed" if report.gate.passed else "gate FAILED")
        print(f"harness: merged {len(shards)} shards: {verdict} ({len(report.alerts)} alerts, exit "
              f"{report.gate.exit_code})")
    print(f"harness: report written to {directory}/ (summary.md, summary.html, report.json)", file=sys.stderr)
    return report.gate.exit_code
