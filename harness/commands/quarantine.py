"""``harness quarantine add|list|remove``: edit ``alerts/quarantine.yaml`` (beside the rules file).

A quarantined test still runs and is reported, but its alerts do not fail the gate until the
entry expires; then QUAR-001 alerts its owner. The file is data for code review: commit it.
"""

from __future__ import annotations

import argparse

from harness.commands.common import add_catalog_options, add_json_option, load_catalog, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "quarantine",
        help="quarantine a flaky test (it runs and is reported, but does not fail the gate until its expiry)",
        description="Edit the quarantine file (alerts/quarantine.yaml beside the rules): node id, owner, reason, "
        "expiry date. Quarantined tests still run and are reported with their own count; their alerts do not "
        "fail the gate. An expired entry protects nothing and alerts its owner (QUAR-001); a test that passed its "
        "last 10 runs is proposed for release (QUAR-002).",
        epilog="Exit codes: 0 done; 2 usage or configuration error (unknown node id, a past expiry date, a missing "
        "owner or reason, a node id that is not quarantined).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="{add,list,remove}")
    add = actions.add_parser("add", help="quarantine a test (or renew its entry)", description="Quarantine a test.")
    add.add_argument("nodeid", metavar="NODEID", help="pytest node id, e.g. tests/torch/test_x.py::test_y")
    add.add_argument("--owner", required=True, help="who fixes it (alerted on expiry)")
    add.add_argument("--reason", required=True, help="why it is quarantined (a link to the issue)")
    add.add_argument("--expires", required=True, metavar="YYYY-MM-DD", help="last day of the quarantine")
    listing = actions.add_parser("list", help="list quarantined tests", description="List quarantined tests.")
    add_json_option(listing, "the entries")
    remove = actions.add_parser("remove", help="release a test from quarantine", description="Release a test.")
    remove.add_argument("nodeid", metavar="NODEID")
    for sub in (add, listing, remove):
        sub.add_argument("--file", metavar="PATH", help="the quarantine file (default: quarantine.yaml beside the rules)")
        add_catalog_options(sub)
        sub.set_defaults(handler=handle)


def _path(args: argparse.Namespace, catalog):
    from pathlib import Path

    from harness.locations import DEFAULT_RULES
    from harness.quarantine import default_path

    if args.file:
        return Path(args.file)
    return default_path(getattr(args, "rules", None) or catalog.rules or DEFAULT_RULES)


def handle(args: argparse.Namespace) -> int:
    from harness import quarantine

    catalog = load_catalog(args)
    path = _path(args, catalog)
    if args.action == "add":
        entry = quarantine.add(path, args.nodeid, args.owner, args.reason, args.expires, catalog.root)
        print(f"quarantined {entry.nodeid} until {entry.expires.isoformat()} (owner {entry.owner}) in {path}; commit it")
        return 0
    if args.action == "remove":
        entry = quarantine.remove(path, args.nodeid)
        print(f"released {entry.nodeid} from {path}; commit it")
        return 0
    data = quarantine.load(path)
    today = quarantine.today()
    rows = [{**e.model_dump(mode="json"), "expired": e.expired(today)} for e in data.quarantine]
    if args.json:
        print_json({"file": str(path), "quarantine": rows})
    elif not rows:
        print(f"no tests quarantined ({path})")
    else:
        for row in rows:
            state = "EXPIRED" if row["expired"] else f"until {row['expires']}"
            print(f"{row['nodeid']}\n    {state}; owner {row['owner']}: {row['reason']}")
        print(f"{len(rows)} quarantined test(s) in {path}")
    return 0
