"""``harness dashboard``: regenerate ``reports/index.html`` from the run history on demand."""

from __future__ import annotations

import argparse
import sys

from harness.commands.common import add_catalog_options, add_history_options, add_json_option, history_path, reports_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dashboard",
        help="regenerate reports/index.html (selector status, recent runs, runtime trends, alerts)",
        description="Regenerate <reports dir>/index.html from the run history: the latest state of every "
        "selector, the recent runs with links to their summary.html, a runtime trend chart per selector with its "
        "threshold lines, and the open and silenced alerts. `harness run` does this after every run.",
        epilog="Exit codes: 0 written; 2 usage or configuration error (e.g. no history yet).",
    )
    add_catalog_options(parser, rules=False)
    add_history_options(parser, allow_disable=False)
    add_json_option(parser, "the path written")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.catalog import load_catalog
    from harness.dashboard import write_dashboard
    from harness.history import HistoryStore
    from harness.locations import DEFAULT_CATALOG

    catalog = load_catalog(args.catalog or DEFAULT_CATALOG)
    history = history_path(args)
    with HistoryStore.open(history, create=False) as store:
        index = write_dashboard(store, reports_dir(args), catalog, history_label=str(history))
    if args.json:
        from harness.commands.common import print_json

        print_json({"index": str(index)})
    else:
        print(f"harness: dashboard written to {index}", file=sys.stderr)
        print(index)
    return 0
