"""pytest plugin for ``harness run --shard i/n``: keep this shard's chunk of the collected tests.

Loaded as ``-p harness_shard_plugin`` into a test-split selector's pytest process with
``HARNESS_SHARD_TESTS=i/n``. After pytest's own ``-k``/``-m`` deselection (``trylast``) it keeps
the i-th contiguous chunk of the remaining items, in collection order, and reports the others
through ``pytest_deselected`` so pytest-json-report counts them as deselected (not missing).
Standard library and pytest only: it runs in the environment under test, where the harness need
not be installed (its folder is on the child's PYTHONPATH, see ``harness.runner.with_plugin_path``).
"""

from __future__ import annotations

import os
import re

import pytest

_SPEC = re.compile(r"^(\d+)/(\d+)$")


def _bounds(total: int, index: int, count: int) -> tuple[int, int]:
    # Same arithmetic as harness.shard.chunk_bounds (kept here: no harness import in pytest).
    return (index - 1) * total // count, index * total // count


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    text = os.environ.get("HARNESS_SHARD_TESTS", "")
    match = _SPEC.match(text)
    if not match:
        if text:
            raise pytest.UsageError(f"HARNESS_SHARD_TESTS={text!r}: expected I/N")
        return
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise pytest.UsageError(f"HARNESS_SHARD_TESTS={text!r}: expected 1 <= I <= N")
    start, end = _bounds(len(items), index, count)
    kept = items[start:end]
    dropped = items[:start] + items[end:]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = kept


def pytest_report_header(config: pytest.Config) -> str | None:
    text = os.environ.get("HARNESS_SHARD_TESTS")
    return f"harness shard {text}: this process runs one contiguous chunk of the collected tests" if text else None
