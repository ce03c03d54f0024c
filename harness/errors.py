"""Errors that are the user's to fix: the CLI prints them as one line and exits 2."""

from __future__ import annotations


class HarnessError(Exception):
    """A user's mistake (bad flag, bad file, unknown selector): one clear line, exit 2."""

    exit_code = 2


class ConfigError(HarnessError):
    """A catalog, rules file or report that does not validate; the message names file and field."""
