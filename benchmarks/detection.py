"""How well the harness tells a regression from noise (change points, flaky tests). Prints figures.

Synthetic histories go through the REAL rule engine and history store: every run is a
RunReport that ``verdict.judge_selector`` judges against the history so far and
``HistoryStore.recording`` records (harness/synthetic_runs.py), the steps ``harness run``
takes after its tests. Side by side, per scenario:

(a) ``fixed``   the brief's fixed rules RT-001/002/003 with the catalog's absolute thresholds
                (integration: > 90 s, > 60 s three runs running, < 20 s), level 35.92 s;
(b) ``rt004``   this harness's change-point rule RT-004 (alerts/rules.yaml, as shipped);
(c) ``ruptures`` ruptures' Pelt (l2 cost on log values, BIC-style penalty 2 sigma^2 log n), the
                library alternative to the scan in harness/changepoints.py, used online the same
                way (a break in the last 10 runs with the level up >= 10 %);
(d) ``anchor``  e-divisive (MongoDB's signal-processing-algorithms, the method under Apache
                Otava/Hunter) at its defaults, in its own virtual environment (it pins numpy < 2):
                pass --anchor-python PATH; skipped when absent.

Noise: log-normal run-to-run noise at CV 3 %, 10 %, 20 %, plus outliers (2 % of runs x1.5-3).
Scenarios: stationary; steps +10/+25/+50/+100 % after 20 stationary runs; a slow drift (+1 %
per run from run 20). A "shared machine" scenario compares RT-004 on wall time against RT-004 on
CPU seconds when the report model carries ``cpu_s``. Flaky tests failing in 1 %, 5 %, 20 % of
runs beside deterministic ones (always pass, always fail, broken from run 20) go through
FLAKY-002. Last, the cost of one detection pass (RT-004 + PERF-001 + QUAL-002 + FLAKY-002) for
a new run against a history of 1,000 runs x 600 tests.

Per scenario: detection rate within 5 runs and by the end (30 runs after the step), median runs
to detect (1 = the first run after the step), false alarms per 100 runs (new alerts before the
step, and on stationary series; counted on the runs a method could judge).

Usage: python benchmarks/detection.py [--trials N] [--quick] [--anchor-python PATH] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.catalog import load_catalog  # noqa: E402
from harness.history import HistoryStore  # noqa: E402
from harness.report_model import SelectorResult  # noqa: E402
from harness.rule_schema import RuleSet, load_rules  # noqa: E402
from harness.synthetic_runs import SyntheticRun, record  # noqa: E402

LEVEL = 35.92
STEP_AT = 20
AFTER = 30
STATIONARY_RUNS = 100
JUDGED_FROM = 13  # RT-004 needs min_history + min_run_length - 1 earlier runs; all methods counted from here
ANCHOR_SCRIPT = Path(__file__).with_name("detection_anchor.py")


def rules_subset(ids: list[str], overrides: dict[str, dict] | None = None) -> RuleSet:
    shipped = load_rules(REPO / "alerts" / "rules.yaml")
    triggers = []
    for trigger in shipped.triggers:
        if trigger.id in ids:
            data = trigger.model_dump(mode="json", exclude_defaults=False)
            for key, value in (overrides or {}).get(trigger.id, {}).items():
                data["when"]["shift"][key] = value
            triggers.append(data)
    return RuleSet.model_validate({"version": 1, "path": shipped.path, "triggers": triggers})


def series(rng: np.random.Generator, n: int, cv: float, step: float = 0.0, drift: float = 0.0,
           outliers: float = 0.02, level: float = LEVEL) -> np.ndarray:
    sigma = math.sqrt(math.log1p(cv * cv))
    values = level * np.exp(rng.normal(0.0, sigma, n))
    values[STEP_AT:] *= 1.0 + step
    if drift:
        values[STEP_AT:] *= 1.0 + drift * np.arange(1, n - STEP_AT + 1)
    hit = rng.random(n) < outliers
    values[hit] *= rng.uniform(1.5, 3.0, hit.sum())
    return values


def engine_episodes(values, rules: RuleSet, selector, workdir: Path, tag: str, cpu=None,
                    tests=None, thresholds: str | None = None) -> dict[str, list[int]]:
    """Run a history through the engine; the run index where each trigger's alerts (re)start."""
    path = workdir / f"{tag}.sqlite"
    starts: dict[str, list[int]] = {}
    previous: set[str] = set()
    with HistoryStore.open(path) as store:
        for index, value in enumerate(values):
            run = SyntheticRun(runtime_s=float(value), cpu_s=None if cpu is None else float(cpu[index]),
                               sha=f"{index:07x}".ljust(40, "0"), tests=tests(index) if tests else {})
            report = record(store, rules, selector, run, index, thresholds)
            now = {f"{a.trigger}|{a.nodeid or ''}|{a.fingerprint}" for a in report.alerts}
            for key in now - previous:
                starts.setdefault(key, []).append(index)
            previous = now
    path.unlink()
    for suffix in ("-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return starts


def ruptures_starts(values: np.ndarray, min_change: float = 0.10, recent: int = 10, window: int = 50) -> list[int]:
    import ruptures

    starts, last_bp = [], -100
    y_all = np.log(values)
    for t in range(JUDGED_FROM, len(values) + 1):
        y = y_all[max(0, t - window):t]
        offset = max(0, t - window)
        sigma = max(float(np.median(np.abs(np.diff(y)))) / 0.6745 / math.sqrt(2), 1e-3)
        breaks = ruptures.Pelt(model="l2").fit(y.reshape(-1, 1)).predict(pen=2 * sigma * sigma * math.log(len(y)))
        for bp in breaks[:-1]:
            if bp < len(y) - recent:
                continue
            before, after = np.median(y[:bp]), np.median(y[bp:])
            if math.expm1(after - before) >= min_change and abs(offset + bp - last_bp) > 3:
                starts.append(t - 1)
                last_bp = offset + bp
    return starts


def summarise(starts_per_trial: list[list[int]], n: int, step: bool) -> dict:
    """Detection within 5 / by the end, median delay, false alarms per 100 judged runs."""
    within5 = detected = false = 0
    delays = []
    judged = 0
    for starts in starts_per_trial:
        pre = [s for s in starts if s >= JUDGED_FROM and (not step or s < STEP_AT)]
        false += len(pre)
        judged += (STEP_AT if step else n) - JUDGED_FROM
        if step:
            post = [s for s in starts if s >= STEP_AT]
            if post:
                detected += 1
                delay = post[0] - STEP_AT + 1
                delays.append(delay)
                within5 += delay <= 5
    trials = len(starts_per_trial)
    return {
        "within5": within5 / trials if step else None,
        "detected": detected / trials if step else None,
        "median_runs": statistics.median(delays) if delays else None,
        "false_per_100": 100.0 * false / judged if judged else 0.0,
    }


def fmt(row: dict) -> str:
    def pct(v):
        return "   -  " if v is None else f"{100 * v:5.0f}%"

    med = "  -" if row["median_runs"] is None else f"{row['median_runs']:4.1f}"
    return f"{pct(row['within5'])} {pct(row['detected'])} {med} {row['false_per_100']:6.2f}"


def anchor_starts(python: str, all_values: list[np.ndarray]) -> list[list[int]] | None:
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.json", Path(tmp) / "out.json"
        src.write_text(json.dumps({"series": [v.tolist() for v in all_values], "start": JUDGED_FROM}))
        done = subprocess.run([python, str(ANCHOR_SCRIPT), str(src), str(out)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"  anchor failed: {done.stderr.strip().splitlines()[-1:]}")
            return None
        return json.loads(out.read_text())["starts"]


def runtime_scenarios(trials: int, quick: bool, anchor: str | None, workdir: Path, results: dict,
                      only_cvs: list[float] | None = None, only_kinds: list[str] | None = None,
                      with_ruptures: bool = True) -> None:
    catalog = load_catalog(REPO / "harness" / "catalog.toml")
    selector = catalog.selectors["integration"]
    # One pass through the engine judges both: the fixed rules on the catalog's absolute
    # thresholds (--thresholds absolute) and RT-004, which does not read those thresholds.
    both_rules = rules_subset(["RT-001", "RT-002", "RT-003", "RT-004"])
    cvs = tuple(only_cvs) if only_cvs else ((0.10, 0.20) if quick else (0.03, 0.10, 0.20))
    kinds = [("stationary", 0.0, 0.0), ("+10%", 0.10, 0.0), ("+25%", 0.25, 0.0), ("+50%", 0.50, 0.0), ("+100%", 1.00, 0.0),
             ("drift +1%/run", 0.0, 0.01)]
    print(f"\nRuntime series ({trials} trials each; level {LEVEL} s; steps after {STEP_AT} runs, {AFTER} runs after)")
    print(f"{'scenario':<24} {'method':<9} {'in 5':>6} {'ever':>6} {'med':>4} {'FA/100':>6}")
    if only_kinds:
        kinds = [kind for kind in kinds if kind[0] in only_kinds]
    for cv in cvs:
        for name, step, drift in kinds:
            is_step = name != "stationary"
            n = STEP_AT + AFTER if is_step else STATIONARY_RUNS
            rng = np.random.default_rng(int(cv * 1000) * 100 + int(step * 100) + int(drift * 1000))
            all_values = [series(rng, n, cv, step, drift) for _ in range(trials)]
            per_method: dict[str, list[list[int]]] = {"fixed": [], "rt004": [], **({"ruptures": []} if with_ruptures else {})}
            for i, values in enumerate(all_values):
                starts = engine_episodes(values, both_rules, selector, workdir, f"e{i}", thresholds="absolute")
                per_method["fixed"].append(sorted({s for key, ss in starts.items() if not key.startswith("RT-004") for s in ss}))
                per_method["rt004"].append(sorted({s for key, ss in starts.items() if key.startswith("RT-004") for s in ss}))
                if with_ruptures:
                    per_method["ruptures"].append(ruptures_starts(values))
            if anchor and cv >= 0.10:  # the anchor costs ~1 s per series: the scenarios of the targets
                got = anchor_starts(anchor, all_values)
                if got is not None:
                    per_method["anchor"] = got
            label = f"CV {cv:.0%} {name}"
            sys.stdout.flush()
            for method, starts in per_method.items():
                row = summarise(starts, n, is_step)
                results.setdefault("runtime", []).append({"cv": cv, "scenario": name, "method": method, **row})
                print(f"{label:<24} {method:<9} {fmt(row)}")
                label = ""


def shared_machine_scenario(trials: int, workdir: Path, results: dict) -> None:
    """Wall time disturbed by other work on a shared machine; CPU seconds much less so."""
    if "cpu_s" not in SelectorResult.model_fields:
        print("\nShared machine (wall vs CPU seconds): skipped, this report model records no cpu_s")
        return
    catalog = load_catalog(REPO / "harness" / "catalog.toml")
    selector = catalog.selectors["integration"]
    wall_rules = rules_subset(["RT-004"], {"RT-004": {"signal": "runtime"}})
    cpu_rules = rules_subset(["RT-004"], {"RT-004": {"signal": "cpu"}})
    print("\nShared machine: CPU work CV 3 %; wall = CPU x load (CV 15 %, 10 % of runs x1.3-2 contention)")
    print(f"{'scenario':<24} {'signal':<9} {'in 5':>6} {'ever':>6} {'med':>4} {'FA/100':>6}")
    for name, step in (("stationary", 0.0), ("+25%", 0.25)):
        is_step = step > 0
        n = STEP_AT + AFTER if is_step else STATIONARY_RUNS
        rng = np.random.default_rng(77 + int(step * 100))
        per: dict[str, list[list[int]]] = {"wall": [], "cpu": []}
        for i in range(trials):
            cpu = series(rng, n, 0.03, step, outliers=0.0, level=30.0)
            load = np.exp(rng.normal(0.0, 0.15, n))
            burst = rng.random(n) < 0.10
            load[burst] *= rng.uniform(1.3, 2.0, burst.sum())
            wall = cpu * np.maximum(load, 1.0)
            per["wall"].append(sorted(s for ss in engine_episodes(wall, wall_rules, selector, workdir, f"w{i}", cpu=cpu).values() for s in ss))
            per["cpu"].append(sorted(s for ss in engine_episodes(wall, cpu_rules, selector, workdir, f"c{i}", cpu=cpu).values() for s in ss))
        label = name
        for signal, starts in per.items():
            row = summarise(starts, n, is_step)
            results.setdefault("shared_machine", []).append({"scenario": name, "signal": signal, **row})
            print(f"{label:<24} {signal:<9} {fmt(row)}")
            label = ""


def flaky_scenario(trials: int, runs: int, workdir: Path, results: dict) -> None:
    catalog = load_catalog(REPO / "harness" / "catalog.toml")
    selector = catalog.selectors["integration"]
    rules = rules_subset(["FLAKY-002"])
    rates = {"t.py::flaky_1pct": 0.01, "t.py::flaky_5pct": 0.05, "t.py::flaky_20pct": 0.20}
    deterministic = ["t.py::always_passes", "t.py::always_fails", "t.py::broken_from_run_20"]
    flagged: dict[str, list[int | None]] = {node: [] for node in [*rates, *deterministic]}
    possible: dict[str, int] = {node: 0 for node in rates}
    for trial in range(trials):
        rng = np.random.default_rng(9000 + trial)
        draws = {node: rng.random(runs) < p for node, p in rates.items()}

        def tests(i, draws=draws):
            out = {node: ("failed" if draws[node][i] else "passed", 0.2, f"flake {i}" if draws[node][i] else None)
                   for node in rates}
            out["t.py::always_passes"] = ("passed", 0.2, None)
            out["t.py::always_fails"] = ("failed", 0.2, "broken")
            out["t.py::broken_from_run_20"] = ("failed" if i >= 20 else "passed", 0.2, "regressed" if i >= 20 else None)
            return out

        starts = engine_episodes(np.full(runs, 20.0), rules, selector, workdir, f"k{trial}", tests=tests)
        for node in flagged:
            first = sorted(s for key, ss in starts.items() if key.startswith(f"FLAKY-002|{node}|") for s in ss)
            flagged[node].append(first[0] + 1 if first else None)
        for node, d in draws.items():
            fails = np.flatnonzero(d)
            possible[node] += bool(len(fails) and fails[0] < runs - 1 and not d[fails[0] + 1:].all())
    print(f"\nFlaky tests through FLAKY-002 ({trials} trials of {runs} runs, a new commit every run)")
    print(f"{'test':<28} {'flagged':>8} {'median run':>10} {'ceiling':>8}")
    for node, firsts in flagged.items():
        hits = [f for f in firsts if f is not None]
        ceiling = f"{possible[node] / trials:7.0%}" if node in possible else "      -"
        med = f"{statistics.median(hits):10.0f}" if hits else "         -"
        print(f"{node:<28} {len(hits) / trials:8.0%} {med} {ceiling}")
        results.setdefault("flaky", []).append({"test": node, "flagged": len(hits) / trials,
                                                "median_run": statistics.median(hits) if hits else None,
                                                "ceiling": possible.get(node, None) and possible[node] / trials})
    print("ceiling: trials in which the test failed at least once and passed again within the runs "
          "(no method can call a test flaky before that)")


def detection_cost(workdir: Path, results: dict, runs: int = 1000, tests: int = 600, rounds: int = 5,
                   quiet: bool = False) -> dict:
    """One evaluation of a new run against a history of ``runs`` x ``tests`` (the recorded part is
    built without evaluating, which is not what is measured)."""
    from harness.rule_engine import EvaluationContext, NoHistory, prepare
    from harness.synthetic_runs import result_for, selector as make_selector
    from harness.verdict import judge_selector

    sel = make_selector("bigsuite", figures=({"name": "ssim", "direction": "higher"},))
    rules = rules_subset(["RT-004", "PERF-001", "QUAL-002", "FLAKY-002"])
    rng = np.random.default_rng(5)
    nodes = [f"tests/test_big.py::test_{j:03d}" for j in range(tests)]
    base = rng.uniform(0.2, 2.0, tests)
    path = workdir / "cost.sqlite"
    build = time.perf_counter()
    from datetime import timedelta

    from harness.report_model import Gate, GitInfo, HostInfo, RunInfo, RunReport
    from harness.synthetic_runs import EPOCH

    with HistoryStore.open(path) as store:
        for index in range(runs + 1):
            durations = base * np.exp(rng.normal(0, 0.05, tests))
            outcomes = np.where(rng.random(tests) < 0.002, "failed", "passed")
            run = SyntheticRun(runtime_s=float(durations.sum()), cpu_s=float(durations.sum()),
                               sha=f"{index:07x}".ljust(40, "0"), host_key="bench-host",
                               tests={n: (str(o), float(d), "boom" if o == "failed" else None)
                                      for n, o, d in zip(nodes, outcomes, durations)},
                               figures={"ssim": float(0.8 + rng.normal(0, 0.005))})
            result = result_for(sel, run)
            if index == runs:
                break
            prepare(result, sel, EvaluationContext(rules=rules, history=NoHistory(), host_key="bench-host"), REPO)
            started = (EPOCH + timedelta(hours=index)).isoformat().replace("+00:00", "Z")
            report = RunReport(run=RunInfo(id=f"run-{index:05d}", cadence="nightly", started_at=started, finished_at=started,
                                           wall_s=1.0, status="passed", catalog="x", rules="x", root=".", jobs=1,
                                           harness_version="x", git=GitInfo(sha=run.sha, branch="main", dirty=False),
                                           host=HostInfo(hostname="b", host_key="bench-host", platform="x"), versions={}),
                               gate=Gate(passed=True, fail_on="high", exit_code=0), selectors=[result], alerts=[])
            with store.recording(report):
                pass
        built = time.perf_counter() - build
        timings = []
        for _ in range(rounds):
            start = time.perf_counter()
            alerts = judge_selector(result, sel, rules=rules, history=store, host_key="bench-host", cwd=REPO).alerts
            timings.append(time.perf_counter() - start)
    path.unlink()
    median = statistics.median(timings)
    load = os.getloadavg()[0]
    results["cost"] = {"runs": runs, "tests": tests, "median_s": median, "min_s": min(timings), "load": load,
                       "alerts": len(alerts), "build_s": built}
    if quiet:
        return results["cost"]
    print(f"\nDetection pass for one new run against {runs} runs x {tests} tests (history built in {built:.0f} s):")
    print(f"  RT-004 + PERF-001 + QUAL-002 + FLAKY-002: median {median * 1000:.0f} ms of {rounds} "
          f"(min {min(timings) * 1000:.0f} ms; {len(alerts)} alerts; load average {load:.2f}; target <= 1000 ms)")
    return results["cost"]


REPLAY_TEST = """
WORK = {work}


def test_work():
    total = 0
    for i in range(WORK):
        total += i * i % 7
    assert total >= 0
"""
REPLAY_CATALOG = """
version = 1
root = "."
[selectors.work]
title = "CPU-bound work"
owner = "bench"
args = ["tests/test_work.py"]
[cadences.pr]
selectors = ["work"]
"""


def replay(runs: int, step_at: int, results: dict, work: int = 1_500_000, step: float = 0.30) -> None:
    """Real ``harness run``s of a small CPU-bound selector, its work raised by ``step`` in a commit
    before run ``step_at``; the machine is loaded by whatever else runs on it (the load average is
    printed). Reports when RT-004 fired and which commit it named."""
    import shutil

    root = Path(tempfile.mkdtemp(prefix="harness-replay-"))
    env = {**os.environ, "HARNESS_HOST": "replay-host", "TF_CPP_MIN_LOG_LEVEL": "2"}
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]

    def commit(message: str) -> str:
        subprocess.run([*git, "add", "-A"], cwd=root, check=True, capture_output=True)
        subprocess.run([*git, "commit", "-qm", message], cwd=root, check=True, capture_output=True)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True).stdout.strip()

    try:
        (root / "tests").mkdir()
        (root / "catalog.toml").write_text(REPLAY_CATALOG)
        (root / "tests" / "test_work.py").write_text(REPLAY_TEST.format(work=work))
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        shas = [commit("work")]
        loads, rows = [os.getloadavg()[0]], []
        argv = [sys.executable, "-m", "harness", "run", "--cadence", "pr", "--jobs", "1", "--progress", "none",
                "--catalog", str(root / "catalog.toml"), "--reports-dir", str(root / "reports")]
        for index in range(runs):
            if index == step_at:
                (root / "tests" / "test_work.py").write_text(REPLAY_TEST.format(work=int(work * (1 + step))))
                shas.append(commit("more work"))
            subprocess.run(argv, cwd=root, env=env, capture_output=True, check=False)
            loads.append(os.getloadavg()[0])
            newest = sorted(p for p in (root / "reports").glob("*-pr") if (p / "report.json").exists())[-1]
            report = json.loads((newest / "report.json").read_text())
            selector = report["selectors"][0]
            rt004 = [a for a in report["alerts"] if a["trigger"] == "RT-004"]
            rows.append({"runtime_s": selector.get("runtime_s"), "cpu_s": selector.get("cpu_s"),
                         "rt004": rt004[0]["evidence"]["change"] if rt004 else None,
                         "series": rt004[0]["evidence"].get("series") if rt004 else None})
            print(f"  run {index + 1:2d}: wall {selector.get('runtime_s') or 0:5.2f} s, CPU {selector.get('cpu_s') or 0:5.2f} s"
                  f"{'  RT-004 ' + rt004[0]['summary'] if rt004 else ''}", flush=True)
        changes: dict[str, tuple[int, dict]] = {}  # first run of each change -> (run it was found, change)
        for i, row in enumerate(rows):
            if row["rt004"] and row["rt004"]["first_run"] not in changes:
                changes[row["rt004"]["first_run"]] = (i, row["rt004"])
        found_before = [(i, c) for i, c in changes.values() if i < step_at]
        found_after = [(i, c) for i, c in changes.values() if i >= step_at]
        print(f"\nReplay: {runs} harness runs, CPU work +{step:.0%} in commit {shas[-1][:7]} before run {step_at + 1}; "
              f"load average {min(loads):.1f}-{max(loads):.1f} (other work on the shared machine; nothing added)")
        for i, change in found_before + found_after:
            print(f"  RT-004 change found at run {i + 1}: {change['change_pct']:+.0f} % ({change['before']:.3g} -> "
                  f"{change['after']:.3g}), commits {change['commit_range']}"
                  f"{'  <- the injected step' if change['first_sha'] == shas[-1][:7] else '  (not the injected commit)'}")
        hit = next(((i, c) for i, c in found_after if c["first_sha"] == shas[-1][:7]), None)
        results["replay"] = {"runs": runs, "step_at": step_at, "step": step, "load_min": min(loads), "load_max": max(loads),
                             "changes": [{"found_at_run": i + 1, **c} for i, c in found_before + found_after],
                             "step_found_after_runs": (hit[0] - step_at + 1) if hit else None, "rows": rows}
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="CV 10 %% and 20 %% only, fewer flaky trials")
    parser.add_argument("--anchor-python", metavar="PATH", help="python of a venv with signal-processing-algorithms")
    parser.add_argument("--only", choices=("runtime", "shared", "flaky", "cost", "replay"), action="append",
                        help="parts to run (default: all but replay, which starts real harness runs)")
    parser.add_argument("--replay-runs", type=int, default=32)
    parser.add_argument("--replay-work", type=int, default=3_000_000, help="loop iterations of the replay's test")
    parser.add_argument("--replay-step", type=float, default=0.5, help="relative step of that work")
    parser.add_argument("--cv", type=float, action="append", help="only this noise level (0.1 = 10 %%); repeatable")
    parser.add_argument("--scenario", action="append", help="only this runtime scenario (stationary, +25%%, ...); repeatable")
    parser.add_argument("--no-ruptures", action="store_true", help="skip the ruptures column")
    parser.add_argument("--json", type=Path, metavar="OUT")
    args = parser.parse_args()
    only = set(args.only or ("runtime", "shared", "flaky", "cost"))
    results: dict = {"trials": args.trials}
    print(f"detection benchmark: {args.trials} trials, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        workdir = Path(tmp)
        if "runtime" in only:
            runtime_scenarios(args.trials, args.quick, args.anchor_python, workdir, results, args.cv, args.scenario,
                              not args.no_ruptures)
        if "shared" in only:
            shared_machine_scenario(args.trials, workdir, results)
        if "flaky" in only:
            flaky_scenario(args.trials if not args.quick else min(args.trials, 40), 40, workdir, results)
        if "cost" in only:
            detection_cost(workdir, results)
        if "replay" in only:
            replay(args.replay_runs, 20, results, work=args.replay_work, step=args.replay_step)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
