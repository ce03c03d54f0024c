"""``harness calibrate``: measure a selector's baseline on this host and store it in history."""

from __future__ import annotations

import argparse

from harness.commands.common import (
    add_catalog_options,
    add_history_options,
    add_json_option,
    history_path,
    load_catalog,
    positive_int,
    print_json,
    reports_dir,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="run a selector N times and store the median runtime (and figures) as this host's baseline",
        description="Run a selector N times one after another, and store the median of its runtime (the "
        "catalog's runtime.measure) and of each watched quality figure as this host's baseline. "
        "Thresholds in baseline mode are then 2.5x / 1.7x / 0.55x of it (catalog factors).",
        epilog="Exit codes: 0 stored; 1 a run did not pass (nothing stored); 2 usage or configuration error; "
        "130/143 interrupted (nothing stored).",
    )
    parser.add_argument("--selector", required=True, metavar="NAME")
    parser.add_argument("--runs", type=positive_int, default=3, metavar="N", help="how many runs (default: %(default)s)")
    parser.add_argument("--progress", choices=("auto", "rich", "plain", "none"), default="plain")
    add_json_option(parser, "the measurements")
    add_catalog_options(parser, rules=False)
    add_history_options(parser, allow_disable=False)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import shutil
    import statistics
    import sys
    from datetime import UTC, datetime

    from harness.environment import host_info
    from harness.rule_engine import numeric_figures, runtime_of
    from harness.history import HistoryStore
    from harness.pipeline import EXIT_INTERRUPTED, StopSignals
    from harness.report_model import SelectorState
    from harness.run_directory import RunDirectory
    from harness.runner import plan_selector, run_plans
    from harness.selector_result import selector_result

    catalog = load_catalog(args)
    selector = catalog.selector(args.selector)
    path = history_path(args)
    HistoryStore.open(path).close()  # fail early on an unusable database
    host = host_info()
    work = RunDirectory(reports_dir(args), f"calibrate-{selector.name}", datetime.now(UTC))
    runtimes: list[float] = []
    figures: dict[str, list[float]] = {spec.name: [] for spec in selector.figures}
    measure = selector.runtime.measure
    with StopSignals() as stop:
        for index in range(1, args.runs + 1):
            plan = plan_selector(catalog, selector, work.staging / f"run-{index}", f"{work.name}-{index}")
            outcome = run_plans([plan], selector.cpus, args.progress, stop.event)[plan.name]
            if stop.received:
                work.discard()
                print("harness: calibration interrupted; nothing stored", file=sys.stderr)
                return EXIT_INTERRUPTED.get(stop.received, 130)
            result = selector_result(plan, outcome, work)
            if result.state not in (SelectorState.PASSED, SelectorState.FLAKY):
                print(f"harness: calibration run {index} of {selector.name}: {result.state.value} ({result.reason}); "
                      f"nothing stored. Logs: {plan.stdout_path}", file=sys.stderr)
                work.lock.unlink(missing_ok=True)
                return 1
            value, used = runtime_of(result, measure)
            runtimes.append(value if value is not None else 0.0)
            for figure in numeric_figures(result.tests):
                if figure.name in figures:
                    figures[figure.name].append(figure.value)
            print(f"harness: calibration run {index}/{args.runs}: {runtimes[-1]:.2f} s ({used})", file=sys.stderr)
    shutil.rmtree(work.staging, ignore_errors=True)
    work.lock.unlink(missing_ok=True)

    stored = {"runtime": (statistics.median(runtimes), runtimes)}
    for name, values in figures.items():
        if values:
            stored[f"figure:{name}"] = (statistics.median(values), values)
    with HistoryStore.open(path) as store:
        for metric, (value, samples) in stored.items():
            store.record_baseline(selector.name, host.host_key, metric, value, samples)
    missing = [name for name, values in figures.items() if not values]
    if args.json:
        print_json({"selector": selector.name, "host_key": host.host_key, "measure": measure, "history": str(path),
                    "baselines": {metric: {"median": value, "samples": samples} for metric, (value, samples) in stored.items()},
                    "figures_not_recorded": missing})
    else:
        spec = selector.runtime
        median = stored["runtime"][0]
        print(f"{selector.name} on {host.host_key}: median runtime {median:.2f} s over {len(runtimes)} runs ({measure})")
        print(f"  baseline-mode thresholds: critical > {median * spec.critical_factor:.1f} s, "
              f"warning > {median * spec.warning_factor:.1f} s, suspicious < {median * spec.suspicious_factor:.1f} s")
        for metric, (value, samples) in stored.items():
            if metric != "runtime":
                print(f"  {metric.removeprefix('figure:')}: median {value:.4g} over {len(samples)} runs")
        for name in missing:
            print(f"  note: figure {name!r} was not recorded by the tests; no baseline stored")
        print(f"stored in {path}")
    return 0
