"""``harness rules``: list the triggers of the rules file."""

from __future__ import annotations

import argparse

from harness.commands.common import add_catalog_options, add_json_option, load_catalog, load_rules, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "rules",
        help="validate and list the trigger rules (alerts/rules.yaml)",
        description="Validate the rules file and print its triggers in evaluation order.",
        epilog="Exit codes: 0 valid; 2 invalid.",
    )
    add_json_option(parser, "the triggers")
    add_catalog_options(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    catalog = load_catalog(args)
    rules = load_rules(args, catalog, warn=True)
    if args.json:
        print_json({"rules": str(rules.path), "triggers": [t.model_dump(mode="json", exclude_none=True) for t in rules.triggers]})
        return 0
    print(f"rules {rules.path}: {len(rules.triggers)} triggers")
    for t in rules.triggers:
        chain = f" [chain {t.first_match}]" if t.first_match else ""
        scope = f" (selectors: {', '.join(t.scope.selectors)})" if t.scope.selectors else ""
        print(f"  {t.id:<11} {t.severity:<8} {t.when.level:<8} {t.title}{scope}{chain}  -> {t.owner}, {t.sla}")
    return 0
