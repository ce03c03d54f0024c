"""What `harness prune` costs on a large history. Prints figures.

Builds a year of nightly history through the core's own write path (``HistoryStore.recording``):
RUNS runs of SELECTORS selectors with TESTS tests each, a failing selector now and then (so alerts
fire and resolve), and one report directory per run. Then, on copies of it, times the dry run and
the real prune (median of ROUNDS), and prints what was removed, kept, and freed.

Usage: python benchmarks/prune_history.py [--runs 365] [--selectors 6] [--tests 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.catalog import RetentionSpec  # noqa: E402
from harness.rule_engine import fingerprint  # noqa: E402
from harness.history import HistoryStore  # noqa: E402
from harness.report_model import (  # noqa: E402
    Alert,
    Counts,
    Gate,
    GitInfo,
    HostInfo,
    RunInfo,
    RunReport,
    SelectorResult,
    SelectorState,
    TestRecord,
)
from harness.retention import prune  # noqa: E402


def build(folder: Path, runs: int, selectors: int, tests: int, now: datetime) -> tuple[Path, Path]:
    reports = folder / "reports"
    history = reports / "history.sqlite"
    with HistoryStore.open(history) as store:
        for day in range(runs, 0, -1):
            started = now - timedelta(days=day)
            key = f"{started:%Y%m%dT%H%M%SZ}-nightly"
            results, alerts = [], []
            for index in range(selectors):
                failing = (day + index) % 17 == 0
                records = [TestRecord(nodeid=f"tests/test_s{index}.py::test_{n}",
                                      outcome="failed" if failing and n == 0 else "passed",
                                      message="AssertionError: boom" if failing and n == 0 else None)
                           for n in range(tests)]
                results.append(SelectorResult(
                    name=f"s{index}", title=f"s{index}", owner="o", argv=[], env={},
                    state=SelectorState.FAILED if failing else SelectorState.PASSED, runtime_s=10.0 + index,
                    counts=Counts(total=tests, passed=tests - int(failing), failed=int(failing)), tests=records))
                if failing:
                    nodeid = records[0].nodeid
                    alerts.append(Alert(trigger="TEST-001", title="t", severity="high", owner="o", sla="<24 hours",
                                        fingerprint=fingerprint("TEST-001", f"s{index}", nodeid), selector=f"s{index}",
                                        nodeid=nodeid, summary="boom"))
            iso = started.isoformat(timespec="milliseconds").replace("+00:00", "Z")
            report = RunReport(
                run=RunInfo(id=key, cadence="nightly", started_at=iso, finished_at=iso, wall_s=60.0,
                            status="failed" if alerts else "passed", catalog="c", rules="r", root=".", jobs=2,
                            harness_version="bench", git=GitInfo(), versions={},
                            host=HostInfo(hostname="h", host_key="bench", platform="linux")),
                gate=Gate(passed=not alerts, fail_on="high", exit_code=int(bool(alerts))),
                selectors=results, alerts=alerts)
            with store.recording(report):
                pass
            (reports / key / "selectors").mkdir(parents=True)
            (reports / key / "report.json").write_text(report.to_json())
    return reports, history


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=365)
    parser.add_argument("--selectors", type=int, default=6)
    parser.add_argument("--tests", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    now = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="prune-bench-"))
    try:
        start = time.perf_counter()
        reports, history = build(work / "source", args.runs, args.selectors, args.tests, now)
        print(f"built {args.runs} runs x {args.selectors} selectors x {args.tests} tests in "
              f"{time.perf_counter() - start:.1f} s; history {history.stat().st_size / 1e6:.1f} MB, "
              f"{sum(1 for _ in reports.iterdir()) - 1} report directories")
        timings: dict[str, list[float]] = {"dry run": [], "prune": []}
        result = None
        for round_ in range(args.rounds):
            copy = work / f"round-{round_}"
            shutil.copytree(work / "source", copy)
            for label, dry in (("dry run", True), ("prune", False)):
                start = time.perf_counter()
                result = prune(copy / "reports", copy / "reports" / "history.sqlite", RetentionSpec(), dry_run=dry, now=now)
                timings[label].append(time.perf_counter() - start)
            shutil.rmtree(copy)
        assert result is not None
        for label, values in timings.items():
            print(f"{label:>8}: median {statistics.median(values):.2f} s over {len(values)} rounds "
                  f"(min {min(values):.2f}, max {max(values):.2f})")
        print(f"removed {len(result.removed_dirs)} report directories and {result.history_rows.get('runs', 0)} runs "
              f"({result.history_rows.get('test_results', 0)} test rows); kept {len(result.kept_runs)} old runs "
              f"(last passing / known-good / open alerts); history {result.history_bytes_before / 1e6:.1f} MB -> "
              f"{result.history_bytes_after / 1e6:.1f} MB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
