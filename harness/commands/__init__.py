"""Subcommands of ``harness``: one module each, registered by ``harness.cli.COMMAND_MODULES``.

A module defines ``register(subparsers)``, which adds its parser and sets ``handler`` to a
function ``(args) -> exit code``. Keep module-level imports to argparse and ``common``;
import the heavy parts inside the handler so ``harness --help`` stays fast.
"""
