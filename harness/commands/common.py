"""Options every command shares (--catalog, --rules, --history, ...) and how they resolve."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

SEVERITIES = ("info", "warning", "medium", "high", "critical")


def add_catalog_options(parser: argparse.ArgumentParser, rules: bool = True) -> None:
    parser.add_argument("--catalog", type=Path, metavar="PATH",
                        help="selector catalog TOML (default: harness/catalog.toml in a checkout, ./harness.toml for an installed harness)")
    if rules:
        parser.add_argument("--rules", type=Path, metavar="PATH",
                            help="trigger rules YAML (default: the catalog's `rules`, else alerts/rules.yaml)")


def add_history_options(parser: argparse.ArgumentParser, allow_disable: bool = True) -> None:
    parser.add_argument("--reports-dir", type=Path, metavar="DIR",
                        help="where run directories go (default: $HARNESS_REPORTS_DIR or <repo>/reports)")
    parser.add_argument("--history", type=Path, metavar="PATH",
                        help="history SQLite file (default: $HARNESS_HISTORY or <reports dir>/history.sqlite)")
    # A PostgreSQL server shared by several runners instead of the SQLite file.
    parser.add_argument("--history-url", metavar="URL",
                        help="history on a PostgreSQL server, as an SQLAlchemy URL (postgresql+psycopg://user@host/db; "
                        "default: $HARNESS_HISTORY_URL); put the password in PGPASSWORD or ~/.pgpass, not here")
    if allow_disable:
        parser.add_argument("--no-history", action="store_true",
                            help="neither read nor write history (RT-002 and calibrated baselines are skipped)")


def add_json_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=f"print {what} as JSON on stdout")


def reports_dir(args: argparse.Namespace) -> Path:
    from harness.locations import default_reports_dir

    return args.reports_dir or default_reports_dir()


def history_path(args: argparse.Namespace) -> Path | None:
    from harness.locations import default_history_path

    if getattr(args, "no_history", False):
        return None
    # --history-url / $HARNESS_HISTORY_URL (a HistoryURL: str() hides the password).
    url = getattr(args, "history_url", None) or (None if args.history else os.environ.get("HARNESS_HISTORY_URL"))
    if url:
        from harness.history_backend import HistoryURL

        if args.history:
            from harness.errors import HarnessError

            raise HarnessError("--history and --history-url name two databases; give one")
        return HistoryURL(url)  # type: ignore[return-value]
    return args.history or default_history_path(reports_dir(args))


def load_catalog(args: argparse.Namespace):
    from harness.catalog import load_catalog as load
    from harness.locations import DEFAULT_CATALOG

    return load(args.catalog or DEFAULT_CATALOG)


def load_rules(args: argparse.Namespace, catalog, warn: bool = False) -> Any:
    from harness.locations import DEFAULT_RULES
    from harness.rule_schema import load_rules as load

    path = getattr(args, "rules", None) or catalog.rules or DEFAULT_RULES
    rules = load(path)
    for problem in rules.check_selectors(set(catalog.selectors)) if warn else ():
        print(f"harness: warning: {problem}", file=sys.stderr)
    return rules


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (a number), got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {value}")
    return value


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, default=str))
