"""``harness flaky``: the tests that history says are flaky (the verdict FLAKY-002 fires on)."""

from __future__ import annotations

import argparse

from harness.commands.common import add_history_options, add_json_option, history_path, positive_int, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "flaky",
        help="list tests that failed and passed on one commit, or keep flipping, in recent runs",
        description="From history alone: a test is flaky when on one commit (clean tree) it both failed and "
        "passed, or when its outcome flipped at least --min-flips times around failure stretches of one or two "
        "runs in its selector's last --window runs.",
        epilog="Exit codes: 0 listed (flaky tests or none); 2 usage or configuration error.",
    )
    parser.add_argument("--selector", metavar="NAME", help="one selector (default: every selector in history)")
    parser.add_argument("--window", type=positive_int, default=50, metavar="N", help="runs per selector (default: %(default)s)")
    parser.add_argument("--min-flips", type=positive_int, default=2, metavar="N", help="(default: %(default)s)")
    add_json_option(parser, "the flaky tests")
    add_history_options(parser, allow_disable=False)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness.flaky import flaky_tests
    from harness.history import HistoryStore

    with HistoryStore.open(history_path(args), create=False) as store:
        selectors = [args.selector] if args.selector else store.known_selectors()
        found = {name: flaky_tests(store, name, args.window, args.min_flips) for name in selectors}
    if args.json:
        print_json({"window": args.window, "flaky": [{"selector": name, **v.as_dict()} for name, vs in found.items() for v in vs]})
        return 0
    total = sum(len(v) for v in found.values())
    if not total:
        print(f"no flaky tests in the last {args.window} runs")
        return 0
    for name, verdicts in found.items():
        for v in verdicts:
            why = f"failed and passed on {v.same_commit}" if v.same_commit else f"{v.flips} flips"
            print(f"{name}  {v.nodeid}\n    {why}; {v.failures}/{v.runs} runs failed, flip rate {v.flip_rate:.0%}; "
                  f"failures {v.first_failure} .. {v.last_failure}: {v.last_message or 'no message'}")
    print(f"{total} flaky test(s)")
    return 0
