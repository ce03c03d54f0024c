"""``harness schema``: print the JSON Schema of report.json."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("schema", help="print the JSON Schema of report.json",
                                   description="Print the JSON Schema of report.json (see docs/harness.md).")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import json

    from harness.report_model import RunReport

    print(json.dumps(RunReport.model_json_schema(by_alias=True), indent=2))
    return 0
