"""``harness metrics``: the current state in the OpenMetrics text format (for Prometheus)."""

from __future__ import annotations

import argparse

from harness.commands.common import add_history_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="print the current state as OpenMetrics text (Prometheus)",
        description="Print, from history, per selector its newest state, runtime, test counts, quality figures and "
        "firing alerts, per trigger the alerts firing now and how often it fired, per cadence the runs, in the "
        "OpenMetrics text format. `harness serve` exposes the same at /metrics.",
        epilog="Exit codes: 0 printed; 2 no history database or a bad option. See docs/metrics.md.",
    )
    add_history_options(parser, allow_disable=False)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import sys

    from harness.commands.common import history_path
    from harness.metrics import render_from_history

    sys.stdout.write(render_from_history(history_path(args)))
    return 0
