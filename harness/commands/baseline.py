"""``harness baseline accept|list``: say that a series' new level is the norm, with who and why.

Change-point rules (RT-004, PERF-001, QUAL-002) then judge the selector's series only by the
runs after the newest run recorded now, so the alert of a change people decided to keep
resolves at the next run, and the acceptance stays in history for the record.
"""

from __future__ import annotations

import argparse

from harness.commands.common import add_catalog_options, add_history_options, add_json_option, history_path, load_catalog, print_json

SERIES = {"all": "*", "runtime": "runtime", "tests": "test:*", "figures": "figure:*"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "baseline",
        help="accept a selector's current level as its baseline for the change-point rules (who and why)",
        description="accept: change-point rules judge the selector's series (runtime, test durations, "
        "figures) only by runs after the latest one recorded now; their open alerts resolve at the next run. "
        "list: the acceptances recorded, newest first.",
        epilog="Exit codes: 0 done; 2 usage or configuration error (unknown selector, no runs recorded, empty reason).",
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="{accept,list}")
    accept = actions.add_parser("accept", help="accept the current level", description="Accept the current level of a selector's series.")
    accept.add_argument("--selector", required=True, metavar="NAME")
    accept.add_argument("--reason", required=True, help="why the new level is right (recorded)")
    accept.add_argument("--series", choices=sorted(SERIES), default="all", help="which series (default: %(default)s)")
    accept.add_argument("--by", metavar="WHO", help="who accepts it (default: $HARNESS_USER, git user.name, $USER)")
    accept.add_argument("--host", metavar="KEY", help="only this host key (default: every host)")
    add_json_option(accept, "the recorded acceptance")
    add_catalog_options(accept, rules=False)
    add_history_options(accept, allow_disable=False)
    accept.set_defaults(handler=handle_accept)
    listing = actions.add_parser("list", help="list acceptances", description="List recorded acceptances, newest first.")
    listing.add_argument("--selector", metavar="NAME")
    add_json_option(listing, "the acceptances")
    add_catalog_options(listing, rules=False)
    add_history_options(listing, allow_disable=False)
    listing.set_defaults(handler=handle_list)


def who(explicit: str | None) -> str:
    import getpass
    import os
    import subprocess

    if explicit and explicit.strip():
        return explicit.strip()
    if os.environ.get("HARNESS_USER"):
        return os.environ["HARNESS_USER"]
    try:
        done = subprocess.run(["git", "config", "user.name"], capture_output=True, text=True, timeout=10, check=False)
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return getpass.getuser()


def accept(store, selector: str, reason: str, by: str, series: str = "*", host_key: str | None = None) -> dict:
    """Record an acceptance after the selector's newest recorded run; returns the row."""
    from datetime import UTC, datetime

    from harness.errors import ConfigError

    if not reason.strip():
        raise ConfigError("--reason: give a reason (it is recorded with the acceptance)")
    query = "SELECT MAX(r.id), MAX(r.run_key) FROM runs AS r JOIN selector_results AS sr ON sr.run_id = r.id WHERE sr.selector = ?"
    params: list = [selector]
    if host_key:
        query += " AND r.host_key = ?"
        params.append(host_key)
    row = store.db.execute(query, params).fetchone()
    if row is None or row[0] is None:
        where = f" on host {host_key!r}" if host_key else ""
        raise ConfigError(f"--selector {selector}: no runs recorded in {store.path}{where}; nothing to accept")
    created = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    with store.transaction():
        store.db.execute(
            "INSERT INTO baseline_accepts (selector, host_key, series, after_run_id, accepted_by, reason, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (selector, host_key, series, int(row[0]), by, reason.strip(), created))
    return {"selector": selector, "host_key": host_key, "series": series, "after_run_id": int(row[0]),
            "after_run": row[1], "accepted_by": by, "reason": reason.strip(), "created_at": created}


def handle_accept(args: argparse.Namespace) -> int:
    from harness.history import HistoryStore

    catalog = load_catalog(args)
    catalog.selector(args.selector)  # unknown names are a configuration error
    with HistoryStore.open(history_path(args), create=False) as store:
        row = accept(store, args.selector, args.reason, who(args.by), SERIES[args.series], args.host)
    if args.json:
        print_json(row)
    else:
        print(f"accepted {args.series} of {row['selector']} after run {row['after_run']} "
              f"(by {row['accepted_by']}: {row['reason']}); change-point alerts resolve at the next run")
    return 0


def handle_list(args: argparse.Namespace) -> int:
    from harness.history import HistoryStore

    with HistoryStore.open(history_path(args), create=False) as store:
        query = "SELECT selector, host_key, series, after_run_id, accepted_by, reason, created_at FROM baseline_accepts"
        params: tuple = ()
        if args.selector:
            query += " WHERE selector = ?"
            params = (args.selector,)
        rows = [dict(row) for row in store.db.execute(query + " ORDER BY id DESC", params)]
    if args.json:
        print_json({"acceptances": rows})
    elif not rows:
        print("no baselines accepted")
    else:
        for row in rows:
            print(f"{row['created_at']}  {row['selector']:<20} {row['series']:<10} host={row['host_key'] or '*'}  "
                  f"after run #{row['after_run_id']}  by {row['accepted_by']}: {row['reason']}")
    return 0
