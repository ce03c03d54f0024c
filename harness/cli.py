"""The ``harness`` command line.

Subcommands live in ``harness.commands.<name>`` modules, each with a ``register(subparsers)``
function; to add one, write the module and list it in ``COMMAND_MODULES``. Command modules
import only argparse at module level and the heavy parts inside their handler, so
``harness --help`` stays fast (no pydantic, jinja, rich, and never torch or tensorflow).
``harness <name> ...`` imports and builds only the module of that name (a module registering
another command name still works: then every module is loaded, as for ``--help``).

Exit codes: 0 success (gate passed); 1 gate failed; 2 usage or configuration error;
3 internal error; 129/130/143 interrupted by SIGHUP/SIGINT/SIGTERM (the report is still written).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading
from typing import NoReturn

from harness import __version__

COMMAND_MODULES = (
    "harness.commands.run",
    "harness.commands.evaluate",
    "harness.commands.calibrate",
    "harness.commands.history",
    "harness.commands.catalog",
    "harness.commands.rules",
    "harness.commands.schema",
    "harness.commands.alerts",  # alert delivery (outbox, silences, test alerts)
    "harness.commands.reproduce",  # escalation reproduction (brief §3.5)
    "harness.commands.dashboard",  # reports/index.html
    "harness.commands.serve",  # cron schedules + dashboard over HTTP
    "harness.commands.merge",  # shard run directories -> one verdict
    "harness.commands.doctor",  # the brief's handoff checklist (§7) as checks
    "harness.commands.prune",  # evidence retention (brief §3.2)
    "harness.commands.github",  # PR comment (updated in place) + Check Run
    "harness.commands.metrics",  # OpenMetrics text of the current state
    "harness.commands.baseline",  # accept a new level for the change-point rules (who, why)
    "harness.commands.flaky",  # tests flaky across runs, from history
    "harness.commands.quarantine",  # alerts/quarantine.yaml: add, list, remove
)

EXIT_USAGE = 2
EXIT_INTERNAL = 3


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line plus a hint, exit 2 (argparse's default code)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


def _command_of(argv: list[str]) -> str | None:
    """The command module ``argv`` invokes when it starts with a command name (module names are
    command names), else None: ``--help``, ``--version``, nothing or a mistake need every command."""
    if argv and not argv[0].startswith("-"):
        for module_name in COMMAND_MODULES:
            if module_name.rsplit(".", 1)[1] == argv[0]:
                return module_name
    return None


def _build(modules: tuple[str, ...]) -> tuple[argparse.ArgumentParser, set[str]]:
    """The parser with the commands of ``modules``, and the names of the commands registered."""
    parser = _Parser(
        prog="harness",
        description="Run the ptycho regression selectors, apply the trigger rules, keep history, write reports.",
        epilog="Exit codes: 0 passed, 1 gate failed, 2 usage/config error, 3 internal error, 130/143 interrupted. "
        "See docs/harness.md.",
    )
    parser.add_argument("--version", action="version", version=f"harness {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module_name in modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:  # one broken command must not take `harness run` down with it
            print(f"harness: warning: command module {module_name} unavailable: {exc}", file=sys.stderr)
            continue
        module.register(subparsers)
    return parser, set(subparsers.choices)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or with ``only`` (a module of COMMAND_MODULES) just that command's
    subparser: running a command costs one module's import and one parser, not fourteen."""
    return _build((only,) if only else COMMAND_MODULES)[0]


def _parser_for(argv: list[str]) -> argparse.ArgumentParser:
    """Only the invoked command's parser when ``argv`` names one; every command otherwise (help,
    version, a mistake), and also when that module turns out to register another name."""
    only = _command_of(argv)
    if only:
        parser, names = _build((only,))
        if argv[0] in names:
            return parser
    return _build(COMMAND_MODULES)[0]


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = _parser_for(arguments)
    args = parser.parse_args(arguments)
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
        import traceback

        traceback.print_exc()
        print("harness: internal error (exit 3); please report it with the traceback above", file=sys.stderr)
        return EXIT_INTERNAL


def run_and_exit() -> NoReturn:
    """The ``harness`` console script: ``main()``, then a prompt exit.

    The interpreter's own teardown, freeing some 700 modules (pydantic, matplotlib, numpy), takes
    about 0.3 s after a run's report is already out, and nothing needs it: the harness closes its
    files and history itself. So this does what that teardown would do for the harness (wait for
    non-daemon threads, run ``atexit`` handlers, flush stdout and stderr) and then ends the
    process with ``os._exit``. ``main()`` itself stays an ordinary function, safe to call in-process.
    """
    try:
        code = main()
    except SystemExit as exc:  # argparse's own exits: --help, --version, usage errors
        code = _exit_status(exc.code)
    current = threading.current_thread()
    for thread in threading.enumerate():
        if thread is not current and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (harness ... | head): nothing left to say
            pass
    os._exit(code)


def _exit_status(code: object) -> int:
    """What the interpreter makes of ``SystemExit(code)``: None is 0, an int itself, else print it, 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


if __name__ == "__main__":
    run_and_exit()
