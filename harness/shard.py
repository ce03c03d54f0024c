"""``harness run --shard i/n``: a deterministic slice of a cadence, for runs spread over machines.

Two kinds of slicing, both decided from the catalog alone (never from history or timing), so
every shard computes the same plan without talking to the others:

- Whole selectors are dealt to shards by longest-expected-first (the catalog's baseline or
  thresholds as the cost), ties broken by name. Selectors of other shards are recorded as
  ``not_run`` with the shard that runs them, so each shard's report lists the whole cadence.
- A selector with ``shard_by = "test"`` (a large suite such as ``tests/torch/``) runs in every
  shard; the pytest plugin ``harness_shard_plugin`` keeps the i-th contiguous chunk of its collected test ids
  (after ``-k``/``-m``) and reports the rest as deselected.

``harness merge`` puts the shard run directories back together (harness/merge.py).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass

from harness.catalog import Catalog, Selector
from harness.errors import HarnessError

SHARD_ENV = "HARNESS_SHARD_TESTS"
PLUGIN = "harness_shard_plugin"  # in harness/pytest_plugins/, on every selector's PYTHONPATH
_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> ShardSpec:
    """``"2/3"`` -> ShardSpec(2, 3); anything else is a usage error naming the expected form."""
    match = _SPEC.match(text or "")
    if not match:
        raise HarnessError(f"--shard {text!r}: expected I/N with 1 <= I <= N (e.g. --shard 2/3)")
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= index <= count:
        raise HarnessError(f"--shard {text!r}: expected I/N with 1 <= I <= N (e.g. --shard 2/3)")
    return ShardSpec(index, count)


def chunk_bounds(total: int, spec: ShardSpec) -> tuple[int, int]:
    """The contiguous ``[start, end)`` slice of ``total`` items that shard ``spec`` keeps.

    Chunks differ in size by at most one and together cover every item exactly once.
    """
    return (spec.index - 1) * total // spec.count, spec.index * total // spec.count


def expected_cost(selector: Selector) -> float:
    """What the catalog says a selector costs, for dealing selectors to shards."""
    runtime = selector.runtime
    for value in (runtime.baseline_s, runtime.warning_s, runtime.critical_s):
        if value:
            return float(value)
    return 1.0


def assign(selectors: list[Selector], count: int) -> dict[str, int]:
    """Selector name -> shard index (1-based) for the whole (not test-split) selectors.

    Longest-processing-time first: each selector, most expensive first, goes to the shard with
    the least expected work so far (the lowest index on a tie). Deterministic for a catalog.
    """
    load = [0.0] * count
    placed: dict[str, int] = {}
    for selector in sorted(selectors, key=lambda s: (-expected_cost(s), s.name)):
        target = min(range(count), key=lambda i: (load[i], i))
        load[target] += expected_cost(selector)
        placed[selector.name] = target + 1
    return placed


def split_by_test(selector: Selector) -> bool:
    return getattr(selector, "shard_by", "selector") == "test"


def narrow(selectors: list[Selector], not_required: dict[str, str], spec: ShardSpec | None
           ) -> tuple[list[Selector], dict[str, str]]:
    """The selectors this shard runs, and the reasons the others do not run here."""
    if spec is None:
        return selectors, not_required
    whole = [s for s in selectors if not split_by_test(s)]
    placed = assign(whole, spec.count)
    run, skipped = [], dict(not_required)
    for selector in selectors:
        if split_by_test(selector) or placed[selector.name] == spec.index:
            run.append(selector)
        else:
            skipped[selector.name] = f"shard {placed[selector.name]}/{spec.count} runs it"
    return run, skipped


def plan_for_shard(plan, spec: ShardSpec | None):  # noqa: ANN001 - runner.SelectorPlan
    """Add the test-slicing plugin to a test-split selector's pytest command; others unchanged.
    The plugin's folder is already on the plan's PYTHONPATH (``runner.with_plugin_path``)."""
    if spec is None or not split_by_test(plan.selector):
        return plan
    return dataclasses.replace(plan, argv=[*plan.argv, "-p", PLUGIN], env={**plan.env, SHARD_ENV: str(spec)})


def shard_plans(plans: list, spec: ShardSpec | str | None, catalog: Catalog) -> list:
    """The run flow's hook: every plan, the test-split ones with the slicing plugin added."""
    if spec is None:
        return plans
    if isinstance(spec, str):
        spec = parse_shard(spec)
    return [plan_for_shard(plan, spec) for plan in plans]
