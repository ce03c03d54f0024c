"""Flaky tests across runs: a test that failed and passed on one commit, or keeps flipping.

A test's recent outcomes (its selector's last ``window`` runs, every host, plus this run) are
reduced to pass / fail. It is flaky when

- on one commit (a clean tree) it both failed and passed (``same_commit``), or
- its outcome flipped at least ``min_flips`` times, counting only the flips around short
  failure stretches (at most ``MAX_FAILURE_RUN`` failing runs in a row). A test that broke and
  stayed broken flips once; one that broke for several runs and was then fixed is a regression
  and its repair, not a flake. One that failed a single run between passes counts (2 flips): a
  regression fixed by the very next commit looks the same, and the alert says which runs to check.

FLAKY-002 keeps one fingerprint per test while the test stays flaky in its window, so it is
notified once; ``harness flaky`` lists the same verdicts from history alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness import history_series

PASS_OUTCOMES = frozenset({"passed"})
FAIL_OUTCOMES = frozenset({"failed", "error"})
TEST_STATES = ("passed", "flaky", "failed")
MAX_FAILURE_RUN = 2


@dataclass
class Verdict:
    """What history says about one test (outcomes oldest first)."""

    nodeid: str
    runs: int = 0
    failures: int = 0
    flips: int = 0
    same_commit: str | None = None
    first_failure: str | None = None
    last_failure: str | None = None
    last_failure_sha: str | None = None
    last_message: str | None = None
    outcomes: list[bool] = field(default_factory=list)

    @property
    def flip_rate(self) -> float:
        return self.flips / (self.runs - 1) if self.runs > 1 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid, "runs": self.runs, "failures": self.failures, "flips": self.flips,
            "flip_rate": round(self.flip_rate, 3), "same_commit": self.same_commit,
            "first_failure": self.first_failure, "last_failure": self.last_failure,
            "last_failure_sha": self.last_failure_sha, "last_message": self.last_message,
        }


def counted_flips(outcomes: list[bool], max_failure_run: int = MAX_FAILURE_RUN) -> int:
    """Flips around failure stretches of at most ``max_failure_run`` runs (True = passed).

    A stretch still failing at the end is not counted (it may be a fresh break), so a test that
    just broke for good is not called flaky.
    """
    flips = 0
    index, n = 0, len(outcomes)
    while index < n:
        if outcomes[index]:
            index += 1
            continue
        start = index
        while index < n and not outcomes[index]:
            index += 1
        length = index - start
        if length > max_failure_run:
            continue
        opened = start > 0          # a pass before it
        closed = index < n          # a pass after it
        if opened and closed:
            flips += 2
        elif closed and start == 0:
            flips += 1
    return flips


def judge(nodeid: str, history: list[tuple[str, str | None, bool | None, str, str | None]]) -> Verdict:
    """``history``: (run_key, git_sha, dirty, outcome, message), oldest first."""
    verdict = Verdict(nodeid)
    per_commit: dict[str, set[bool]] = {}
    for run_key, sha, dirty, outcome, message in history:
        if outcome in PASS_OUTCOMES:
            passed = True
        elif outcome in FAIL_OUTCOMES:
            passed = False
        else:
            continue
        verdict.outcomes.append(passed)
        if sha and not dirty:
            per_commit.setdefault(sha, set()).add(passed)
            if len(per_commit[sha]) == 2 and verdict.same_commit is None:
                verdict.same_commit = sha[:7]
        if not passed:
            verdict.failures += 1
            verdict.first_failure = verdict.first_failure or run_key
            verdict.last_failure, verdict.last_failure_sha = run_key, (sha or "")[:7] or None
            verdict.last_message = (message or "").splitlines()[0][:300] if message else verdict.last_message
    verdict.runs = len(verdict.outcomes)
    verdict.flips = counted_flips(verdict.outcomes)
    return verdict


def is_flaky(verdict: Verdict, min_flips: int, same_commit: bool) -> bool:
    if same_commit and verdict.same_commit:
        return True
    return verdict.flips >= min_flips


def test_histories(history: object, selector: str, window: int) -> dict[str, list[tuple[str, str | None, bool | None, str, str | None]]]:
    """Every test's outcomes in the selector's last ``window`` runs, oldest first."""
    runs = history_series.recent_runs(history, selector, None, window, states=TEST_STATES)
    if not runs:
        return {}
    by_result = {run.result_id: run for run in runs}
    order = {run.result_id: index for index, run in enumerate(runs)}
    dirty = _dirty(history, [run.run_id for run in runs])
    rows = history_series.test_outcomes(history, list(by_result))
    rows.sort(key=lambda row: order[row[0]])
    table: dict[str, list] = {}
    for result_id, nodeid, outcome, message in rows:
        run = by_result[result_id]
        table.setdefault(nodeid, []).append((run.run_key, run.git_sha, dirty.get(run.run_id), outcome, message))
    return table


def _dirty(history: object, run_ids: list[int]) -> dict[int, bool | None]:
    db = getattr(history, "db", None)
    if db is None or not run_ids:
        return {}
    marks = ", ".join("?" for _ in run_ids)
    return {int(r[0]): (None if r[1] is None else bool(r[1]))
            for r in db.execute(f"SELECT id, git_dirty FROM runs WHERE id IN ({marks})", run_ids)}


def flaky_tests(history: object, selector: str, window: int = 50, min_flips: int = 2, same_commit: bool = True) -> list[Verdict]:
    """The selector's flaky tests by history alone (``harness flaky``), most flips first."""
    found = []
    for nodeid, rows in test_histories(history, selector, window).items():
        verdict = judge(nodeid, rows)
        if is_flaky(verdict, min_flips, same_commit):
            found.append(verdict)
    return sorted(found, key=lambda v: (-v.flips, v.nodeid))


def flaky_alerts(trigger, selector, result, ctx) -> list:
    """FLAKY-002: history plus this run (``ctx``: EvaluationContext)."""
    from harness.rule_engine import _alert

    cond = trigger.when.flaky
    assert cond is not None
    if getattr(ctx.history, "db", None) is None or result.state.value not in ("passed", "flaky", "failed"):
        return []
    table = test_histories(ctx.history, result.name, cond.window - 1)
    sha, dirty = (ctx.git.sha, ctx.git.dirty) if ctx.git is not None else (None, None)
    alerts = []
    for test in result.tests:
        if test.kind != "test":
            continue
        rows = [*table.get(test.nodeid, []), ("this run", sha, dirty, test.outcome, test.message)]
        verdict = judge(test.nodeid, rows)
        if not is_flaky(verdict, cond.min_flips, cond.same_commit):
            continue
        why = (f"failed and passed on commit {verdict.same_commit}" if cond.same_commit and verdict.same_commit
               else f"{verdict.flips} flips")
        summary = (f"{test.nodeid}: flaky across runs ({why}; {verdict.failures} of {verdict.runs} runs failed, "
                   f"flip rate {verdict.flip_rate:.0%}), last failure {verdict.last_failure}: "
                   f"{verdict.last_message or 'no message'}")
        alerts.append(_alert(trigger, selector, result, summary, verdict.as_dict(), nodeid=test.nodeid))
    return alerts
