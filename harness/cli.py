"""The ``harness`` command line.

Subcommands live in ``harness.commands.<name>`` modules, each with a ``register(subparsers)``
function; to add one, write the module and list it in ``COMMAND_MODULES``. Command modules
import only argparse at module level and the heavy parts inside their handler, so
``harness --help`` stays fast (no pydantic, jinja, rich, and never torch or tensorflow).

Exit codes: 0 success (gate passed); 1 gate failed; 2 usage or configuration error;
3 internal error; 130/143 interrupted by SIGINT/SIGTERM (the report is still written).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from harness import __version__

COMMAND_MODULES = (
    "harness.commands.run",
    "harness.commands.evaluate",
    "harness.commands.calibrate",
    "harness.commands.history",
    "harness.commands.catalog",
    "harness.commands.rules",
    "harness.commands.schema",
    "harness.commands.alerts",  # issue 6: alert delivery (outbox, silences, test alerts)
    "harness.commands.reproduce",  # issue 6: escalation reproduction (brief §3.5)
    "harness.commands.dashboard",  # issue 8: reports/index.html
    "harness.commands.serve",  # issue 8: cron schedules + dashboard over HTTP
    "harness.commands.merge",  # issue 8: shard run directories -> one verdict
    "harness.commands.doctor",  # issue 7: the brief's handoff checklist (§7) as checks
    "harness.commands.prune",  # issue 7: evidence retention (brief §3.2)
)

EXIT_USAGE = 2
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line plus a hint, exit 2 (argparse's default code)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="harness",
        description="Run the ptycho regression selectors, apply the trigger rules, keep history, write reports.",
        epilog="Exit codes: 0 passed, 1 gate failed, 2 usage/config error, 3 internal error, 130/143 interrupted. "
        "See docs/harness.md.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # one broken command must not take `harness run` down with it
            print(f"harness: warning: command module {module_name} unavailable: {exc}", file=sys.stderr)
            continue
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    from harness.errors import HarnessError

    try:
        return int(handler(args) or 0)
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception:  # an internal error is a bug: show where it happened
        traceback.print_exc()
        print("harness: internal error (exit 3); please report it with the traceback above", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
