"""YAML configuration (rules, routes) parsed with libyaml's C parser when PyYAML has it.

``alerts/rules.yaml`` is read before every run's first test starts; the C parser reads it about
six times faster than the pure-Python one, with the same results and the same ``yaml.YAMLError``
(line and column included) on bad input.
"""

from __future__ import annotations

from typing import Any

import yaml

SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """``yaml.safe_load``: plain data only (no Python objects), C parser when available."""
    return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a safe loader, chosen above
