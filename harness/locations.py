"""Where the harness finds its inputs and puts its outputs unless told otherwise.

In a checkout (an editable install) relative defaults resolve against the repository root (the
parent of this package), so ``harness run`` works from any working directory there. An installed
harness (``pip install .``) lives in site-packages, which is nobody's project: its defaults resolve
against the working directory, the project it is run for.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
IN_CHECKOUT = (PACKAGE_DIR.parent / "pyproject.toml").is_file()
REPO_ROOT = PACKAGE_DIR.parent if IN_CHECKOUT else Path.cwd()

# This repository's catalog in a checkout; an installed harness looks for the project's own.
DEFAULT_CATALOG = PACKAGE_DIR / "catalog.toml" if IN_CHECKOUT else Path.cwd() / "harness.toml"
DEFAULT_RULES = REPO_ROOT / "alerts" / "rules.yaml"
DEFAULT_REPORTS_DIR = REPO_ROOT / "reports"
HISTORY_FILENAME = "history.sqlite"


def default_reports_dir() -> Path:
    """``$HARNESS_REPORTS_DIR`` or ``<repo>/reports``."""
    env = os.environ.get("HARNESS_REPORTS_DIR")
    return Path(env) if env else DEFAULT_REPORTS_DIR


def default_history_path(reports_dir: Path | None = None) -> Path:
    """``$HARNESS_HISTORY`` or ``<reports dir>/history.sqlite``.

    History sits beside the run directories so one CI cache entry (the reports folder)
    carries both.
    """
    env = os.environ.get("HARNESS_HISTORY")
    if env:
        return Path(env)
    return (reports_dir or default_reports_dir()) / HISTORY_FILENAME
