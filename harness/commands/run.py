"""``harness run``: execute a cadence's selectors and publish a timestamped report."""

from __future__ import annotations

import argparse
import sys

from harness.commands.common import (
    SEVERITIES,
    add_catalog_options,
    add_history_options,
    add_json_option,
    default_jobs,
    history_path,
    load_catalog,
    load_rules,
    positive_int,
    print_json,
    reports_dir,
)
from harness.thresholds import HOST_MIN_RUNS, HOST_WINDOW


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a cadence's selectors, apply the rules, write reports/<UTC timestamp>-<cadence>/",
        description="Run the selectors of a cadence (one pytest process each), apply alerts/rules.yaml, "
        "record history and write reports/<UTC timestamp>-<cadence>/ (report.json, summary.md, summary.html, "
        "per-selector pytest JSON and logs, env.txt).",
        epilog="Exit codes: 0 gate passed; 1 gate failed (a trigger at or above --fail-on); 2 usage or "
        "configuration error; 3 internal error; 129/130/143 interrupted by SIGHUP/SIGINT/SIGTERM (the report is still written).",
    )
    parser.add_argument("--cadence", required=True, metavar="NAME",
                        help="pr, nightly, weekly or manual (the catalog's cadences)")
    parser.add_argument("--selector", action="append", metavar="NAME",
                        help="run only this selector (repeatable); with --cadence manual any catalog selector")
    changes = parser.add_mutually_exclusive_group()
    changes.add_argument("--base", metavar="REF",
                         help="run only selectors whose path filters match files changed since REF (git diff REF...HEAD)")
    changes.add_argument("--changed-files", metavar="FILE",
                         help="like --base, with the changed files listed in FILE (one per line, - for stdin)")
    parser.add_argument("--jobs", "-j", type=positive_int, default=default_jobs(),
                        help="CPU budget for concurrent selectors (default: CPUs available, %(default)s here)")
    parser.add_argument("--fail-on", choices=SEVERITIES, default="high",
                        help="lowest severity that fails the gate (default: %(default)s)")
    parser.add_argument("--thresholds", choices=("catalog", "absolute", "baseline"), default="catalog",
                        help="runtime thresholds. catalog (the default): host-relative for a selector in absolute "
                        "mode with no calibrated baseline, once this host has "
                        f"{HOST_MIN_RUNS} runs of it: 2.5x, 1.7x, 0.55x of the median of its last {HOST_WINDOW} "
                        "runs here, the catalog's critical and warning seconds as a ceiling (the catalog's "
                        "absolute seconds until then); otherwise as the selector's catalog entry says. absolute: "
                        "the catalog's seconds only. baseline: 2.5x, 1.7x, 0.55x of the baseline calibrated on "
                        "this host (harness calibrate)")
    parser.add_argument("--progress", choices=("auto", "rich", "plain", "none"), default="auto",
                        help="live progress on stderr: a table on a terminal, plain lines otherwise (default: auto)")
    add_json_option(parser, "the run summary")
    add_catalog_options(parser)
    add_history_options(parser)
    # One deterministic slice of the cadence, so that several runners share it; `harness merge` combines the shards.
    parser.add_argument("--shard", metavar="I/N",
                        help="run shard I of N: whole selectors dealt to shards, shard_by=\"test\" selectors split by "
                        "test id; history is left to `harness merge` (see docs/dashboard.md)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness import pipeline, selection

    catalog = load_catalog(args)
    rules = load_rules(args, catalog)
    cadence = catalog.cadence(args.cadence)
    changed = None
    if args.base:
        changed = selection.changed_files_from_git(catalog.root, args.base)
    elif args.changed_files:
        changed = selection.changed_files_from_file(args.changed_files)
    chosen = selection.select(catalog, cadence, args.selector, changed)
    spec = None
    if args.shard:  # keep this shard's selectors; the merge records history, not the shards
        from harness import shard

        spec = shard.parse_shard(args.shard)
        chosen.run, chosen.not_required = shard.narrow(chosen.run, chosen.not_required, spec)
        args.no_history = True
    if not chosen.run and not chosen.not_required:
        from harness.errors import HarnessError

        raise HarnessError(f"cadence {cadence.name!r} has no selectors; name some with --selector")
    request = pipeline.RunRequest(
        catalog=catalog, rules=rules, cadence=cadence, selectors=chosen.run, not_required=chosen.not_required,
        reports_dir=reports_dir(args), history_path=history_path(args), jobs=args.jobs, fail_on=args.fail_on,
        thresholds_mode=None if args.thresholds == "catalog" else args.thresholds,
        progress="none" if args.progress == "auto" and args.json and not sys.stderr.isatty() else args.progress,
        changed_files=changed, json_output=args.json, shard=None if spec is None else str(spec),
    )
    outcome = pipeline.execute(request)
    from harness.render import seconds  # after the run: its import must not delay the first test
    from harness.terminal_text import one_line  # reasons and summaries quote the tests' own text

    report = outcome.report
    for warning in outcome.warnings:
        print(f"harness: warning: {one_line(warning)}", file=sys.stderr)
    if args.json:
        print_json(summary_dict(outcome))
    else:
        for result in report.selectors:
            print(f"  {result.name:<28} {result.state.value:<17} {seconds(result.runtime_s):>9}  {one_line(result.reason or '')}")
        for alert in report.alerts:
            print(f"  {alert.severity.upper():<8} {alert.trigger:<11} {one_line(alert.summary)}")
        verdict = "interrupted" if report.run.interrupted else ("gate passed" if report.gate.passed else "gate FAILED")
        print(f"harness: {verdict} ({len(report.alerts)} alerts, exit {outcome.exit_code})")
    where = f"harness: report written to {outcome.directory}/ (summary.md, summary.html, report.json)"
    print(where, file=sys.stderr if args.json else sys.stdout)
    return outcome.exit_code


def summary_dict(outcome) -> dict:
    report = outcome.report
    return {
        "run": report.run.id,
        "cadence": report.run.cadence,
        "status": report.run.status,
        "exit_code": outcome.exit_code,
        "gate": report.gate.model_dump(),
        "report_dir": str(outcome.directory),
        "report_json": str(outcome.directory / "report.json"),
        "selectors": {r.name: {"state": r.state.value, "runtime_s": r.runtime_s, "wall_s": r.wall_s, "reason": r.reason}
                      for r in report.selectors},
        "alerts": [{"trigger": a.trigger, "severity": a.severity, "selector": a.selector, "nodeid": a.nodeid,
                    "summary": a.summary, "fingerprint": a.fingerprint} for a in report.alerts],
        "resolved": [r.model_dump() for r in report.resolved],
    }
