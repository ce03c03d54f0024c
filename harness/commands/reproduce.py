"""``harness reproduce``: rerun a failing selector and file the escalation (brief §3.5).

The work is in ``harness.escalation`` (imported inside the handler so ``harness --help`` stays fast).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.commands.common import (
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
        "reproduce",
        help="rerun a selector with -vv, capture env.txt, write the escalation directory, append to docs/fix_plan.md",
        description="The escalation workflow of brief §3.5: rerun the selector (or the one that last fired "
        "--trigger) with CUDA_VISIBLE_DEVICES=\"\" and -vv, its output tee'd to failure.log; write env.txt and "
        "document.md (error and stack trace, runtime, diff from the last known-good run, matched trigger with owner "
        "and SLA, reproduction command) under <plans root>/<initiative>/reports/<UTC timestamp>/escalation/; append "
        "an entry to docs/fix_plan.md under each owning initiative.",
        epilog="Exit codes: 0 the selector passed (nothing reproduced; still documented); 1 the failure reproduced; "
        "2 usage or configuration error; 3 internal error; 130 interrupted (nothing written).",
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--selector", metavar="NAME", help="the catalog selector to rerun")
    which.add_argument("--trigger", metavar="ID", help="rerun the selector that fired this trigger last (from history)")
    parser.add_argument("--plans-root", type=Path, metavar="DIR",
                        help="where escalation directories go (default: <catalog root>/plans/active)")
    parser.add_argument("--ledger", type=Path, metavar="PATH",
                        help="the fix-plan ledger to append to (default: <catalog root>/docs/fix_plan.md)")
    parser.add_argument("--no-ledger", action="store_true", help="write the escalation directory only")
    parser.add_argument("--initiative", metavar="NAME",
                        help="file under this initiative instead of the matched trigger's owner")
    parser.add_argument("--quiet", action="store_true", help="do not echo the rerun's output (it still goes to failure.log)")
    add_json_option(parser, "the escalation summary")
    add_catalog_options(parser)
    add_history_options(parser, allow_disable=False)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness import escalation

    catalog = load_catalog(args)
    rules = load_rules(args, catalog)
    history = history_path(args)
    selector, fired = escalation.resolve_selector(catalog, rules, args.selector, args.trigger, history)
    if fired is not None and not args.json:
        print(f"harness: {args.trigger} last fired on {fired['selector']} in run {fired['run_key']}: {fired['summary']}",
              file=sys.stderr)
    root = catalog.root
    request = escalation.ReproduceRequest(
        catalog=catalog, rules=rules, selector=selector, trigger=args.trigger, history_path=history,
        reports_dir=reports_dir(args), plans_root=args.plans_root or root / "plans" / "active",
        ledger=None if args.no_ledger else (args.ledger or root / "docs" / "fix_plan.md"),
        initiative=args.initiative,
        echo=None if args.quiet else (sys.stderr if args.json else sys.stdout),
    )
    outcome = escalation.reproduce(request)
    for note in outcome.notes:
        print(f"harness: warning: {note}", file=sys.stderr)
    if args.json:
        print_json(outcome.to_json())
    else:
        trigger = outcome.primary.trigger if outcome.primary else "no trigger"
        verdict = "reproduced" if outcome.exit_code else "did not reproduce (the selector passed)"
        print(f"harness: {selector.name} {verdict}: {outcome.result.state.value}, {trigger}; filed under "
              f"{', '.join(outcome.owners)}")
        print(f"harness: escalation written to {outcome.directory}/ (document.md, failure.log, env.txt)")
        if request.ledger is not None:
            print(f"harness: appended {len(outcome.ledger_entries)} entr{'y' if len(outcome.ledger_entries) == 1 else 'ies'} "
                  f"to {request.ledger}")
    return outcome.exit_code
