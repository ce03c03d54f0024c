"""``harness catalog``: validate the catalog and rules, and show selectors and cadences."""

from __future__ import annotations

import argparse

from harness.commands.common import add_catalog_options, add_json_option, load_catalog, load_rules, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "catalog",
        help="validate the catalog and rules; list selectors and cadences",
        description="Validate the catalog (and the rules against it) and print its selectors and cadences.",
        epilog="Exit codes: 0 valid; 2 invalid (the message names the file and the field).",
    )
    parser.add_argument("--cadence", metavar="NAME", help="only this cadence's selectors")
    add_json_option(parser, "the validated catalog")
    add_catalog_options(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    catalog = load_catalog(args)
    load_rules(args, catalog, warn=True)
    names = list(catalog.cadence(args.cadence).selectors) if args.cadence else list(catalog.selectors)
    if args.json:
        print_json({
            "catalog": str(catalog.path), "root": str(catalog.root),
            "selectors": {name: catalog.selectors[name].model_dump(mode="json") for name in names},
            "cadences": {name: cadence.model_dump(mode="json") for name, cadence in catalog.cadences.items()
                         if not args.cadence or name == args.cadence},
        })
        return 0
    print(f"catalog {catalog.path} (root {catalog.root}): valid")
    for name in names:
        s = catalog.selectors[name]
        missing = "" if _exists(catalog.root, s.args[0]) else "   [path not found yet]"
        print(f"  {name:<28} {s.priority:<6} {s.owner:<22} {' '.join(s.args)}{missing}")
    for name, cadence in catalog.cadences.items():
        if args.cadence and name != args.cadence:
            continue
        budget = f", budget {cadence.budget_s:g} s" if cadence.budget_s else ""
        print(f"cadence {name}: {', '.join(cadence.selectors) or '(none)'}{budget}")
    return 0


def _exists(root, arg: str) -> bool:
    return (root / arg.split("::", 1)[0]).exists()
