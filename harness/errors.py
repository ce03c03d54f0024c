"""Errors that are the user's to fix: the CLI prints them as one line and exits 2."""

from __future__ import annotations

from pathlib import Path


class HarnessError(Exception):
    """A user's mistake (bad flag, bad file, unknown selector): one clear line, exit 2."""

    exit_code = 2


class ConfigError(HarnessError):
    """A catalog, rules file or report that does not validate; the message names file and field."""


def read_config_text(path: Path, what: str) -> str:
    """The text of a configuration file (``what``: "catalog", "rules", ...); a missing, unreadable
    or non-UTF-8 file is a ``ConfigError`` naming it, never a traceback."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
