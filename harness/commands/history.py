"""``harness history``: the trend of one selector across recorded runs."""

from __future__ import annotations

import argparse

from harness.commands.common import (
    add_catalog_options,
    add_history_options,
    add_json_option,
    history_path,
    load_catalog,
    positive_int,
    print_json,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "history",
        help="print a selector's recorded runs (state, runtime, triggers, figures)",
        description="Print the latest recorded results of a selector, newest first.",
    )
    parser.add_argument("--selector", metavar="NAME", help="the selector (omit to list the recorded selectors)")
    parser.add_argument("--limit", type=positive_int, default=20, help="how many runs (default: %(default)s)")
    hosts = parser.add_mutually_exclusive_group()
    hosts.add_argument("--host", metavar="KEY", help="only runs of this host key")
    hosts.add_argument("--this-host", action="store_true", help="only runs of this machine's host key")
    add_json_option(parser, "the rows")
    add_catalog_options(parser, rules=False)
    add_history_options(parser, allow_disable=False)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.history import HistoryStore

    path = history_path(args)
    host = args.host
    if args.this_host:
        from harness.environment import host_info

        host = host_info().host_key
    with HistoryStore.open(path, create=False) as store:
        if not args.selector:
            names = store.known_selectors()
            if args.json:
                print_json({"selectors": names, "baselines": store.baselines()})
            else:
                print("\n".join(names) if names else f"no runs recorded in {path}")
            return 0
        rows = store.trend(args.selector, args.limit, host)
        baselines = store.baselines(args.selector)
    if args.json:
        print_json({"selector": args.selector, "history": str(path), "runs": rows, "baselines": baselines})
        return 0
    if not rows:
        print(f"no recorded runs of {args.selector!r} in {path}")
        return 0
    _print_table(args.selector, rows, baselines)
    _print_thresholds(args, path)
    return 0


def _print_thresholds(args: argparse.Namespace, path) -> None:
    """The thresholds the next run will apply, so the trend can be read against them."""
    from harness.environment import host_info
    from harness.errors import HarnessError
    from harness.history import HistoryStore
    from harness.thresholds import resolve_thresholds

    try:
        selector = load_catalog(args).selectors.get(args.selector)
    except HarnessError:
        return
    if selector is None:
        return
    with HistoryStore.open(path, create=False) as store:
        calibrated = store.baseline(selector.name, host_info().host_key, "runtime")
    t = resolve_thresholds(selector.runtime, calibrated)
    parts = [f"{label} {value:g} s" for label, value in
             (("warning >", t.warning), ("critical >", t.critical), ("suspicious <", t.suspicious)) if value]
    if parts:
        print(f"thresholds now ({t.mode}, {selector.runtime.measure} time): {', '.join(parts)}")


def _print_table(selector: str, rows: list[dict], baselines: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.states import STATE_LABELS

    table = Table(title=f"{selector}: latest {len(rows)} runs, newest first")
    for column in ("started (UTC)", "cadence", "state", "runtime", "tests", "triggers", "figures", "git"):
        table.add_column(column, justify="right" if column == "runtime" else "left")
    for row in rows:
        runtime = "-" if row["runtime_s"] is None else f"{row['runtime_s']:.1f} s"
        tests = f"{row['passed']}✓ {row['failed'] + row['error']}✗ {row['skipped']}s"
        if row["rerun"]:
            tests += f" {row['rerun']}r"
        figures = ", ".join(f"{k}={v:.3g}" for k, v in list(row["figures"].items())[:4])
        table.add_row(row["started_at"][:19].replace("T", " "), row["cadence"], STATE_LABELS.get(row["state"], row["state"]), runtime, tests,
                      " ".join(row["triggers"]), figures, (row["git_sha"] or "")[:8])
    import sys

    console = Console() if sys.stdout.isatty() else Console(width=160)  # logs and pipes: do not squeeze
    console.print(table)
    runtimes = [row["runtime_s"] for row in rows if row["runtime_s"] is not None]
    if runtimes:
        ordered = sorted(runtimes)
        median = ordered[len(ordered) // 2] if len(ordered) % 2 else sum(ordered[len(ordered) // 2 - 1: len(ordered) // 2 + 1]) / 2
        console.print(f"runtime over these runs: min {ordered[0]:.1f} s, median {median:.1f} s, max {ordered[-1]:.1f} s")
    for baseline in baselines[:5]:
        console.print(f"baseline {baseline['metric']} = {baseline['value']:.4g} ({baseline['runs']} runs, "
                      f"{baseline['host_key']}, {baseline['created_at'][:10]})")
