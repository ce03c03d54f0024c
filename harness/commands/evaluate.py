"""``harness evaluate``: apply the rules to a test report produced elsewhere (pytest-json-report or JUnit XML)."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.common import (
    SEVERITIES,
    add_catalog_options,
    add_history_options,
    add_json_option,
    history_path,
    load_catalog,
    load_rules,
    non_negative_float,
    print_json,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="apply the trigger rules to a pytest JSON report or JUnit XML produced elsewhere",
        description="Classify a pytest-json-report file or a JUnit XML file (told apart by content) as the selector "
        "NAME of the catalog and print the triggers it fires. JUnit carries less (no collected count, no stage "
        "durations; artifacts and figures only through <properties>): the output says what was not evaluated. "
        "History is read (for RT-002 and baselines) but never written.",
        epilog="Exit codes: 0 no trigger at or above --fail-on; 1 some; 2 usage, configuration or report error.",
    )
    parser.add_argument("report", type=Path, metavar="REPORT", help="a pytest-json-report file or a JUnit XML file")
    parser.add_argument("--format", choices=("auto", "junit", "pytest-json"), default="auto",
                        help="the report's format (default: auto, from the content)")
    parser.add_argument("--selector", required=True, metavar="NAME", help="the catalog selector the report belongs to")
    parser.add_argument("--runtime", type=non_negative_float, metavar="S",
                        help="wall time of that run in seconds (default: the report's own duration)")
    parser.add_argument("--exit-code", type=int, metavar="N", help="the pytest process's exit status, if known")
    parser.add_argument("--fail-on", choices=SEVERITIES, default="high", help="lowest blocking severity (default: high)")
    parser.add_argument("--thresholds", choices=("catalog", "absolute", "baseline"), default="catalog")
    add_json_option(parser, "the classification and the alerts")
    add_catalog_options(parser)
    add_history_options(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from harness import environment
    from harness.rule_engine import blocking
    from harness.history import HistoryStore
    from harness.junit_report import load_any
    from harness.pytest_report import classify
    from harness.report_model import SelectorResult
    from harness.verdict import judge_selector

    catalog = load_catalog(args)
    rules = load_rules(args, catalog)
    selector = catalog.selector(args.selector)
    report, fmt, junit = load_any(args.report, args.format)
    if junit is not None and not junit.has_properties:
        # Nothing recorded artifacts or figures: checking for them would report their absence as a fault.
        selector = selector.model_copy(update={"artifacts": None, "figures": ()})
    parsed = classify(report, args.exit_code)
    result = SelectorResult(
        name=selector.name, title=selector.title, owner=selector.owner, argv=[], env=dict(selector.env),
        state=parsed.state, reason=parsed.reason, exit_code=args.exit_code, report_exitcode=parsed.report_exitcode,
        wall_s=args.runtime if args.runtime is not None else parsed.session_s, session_s=parsed.session_s,
        tests_s=parsed.tests_s, counts=parsed.counts, tests=parsed.tests,
    )
    path = history_path(args)
    store = HistoryStore.open(path, create=False) if path is not None and path.exists() else None
    notes = [] if store is not None else ["no history database: RT-002 and calibrated baselines not consulted"]
    lacks = list(junit.lacks) if junit is not None else []
    if junit is not None and args.exit_code is None:
        lacks.append("JUnit XML has no process exit code (pass --exit-code N if known)")
    try:
        root = Path(report.root) if report.root and Path(report.root).is_dir() else catalog.root
        judgement = judge_selector(result, selector, rules=rules, history=store, host_key=environment.host_info().host_key,
                                   cwd=root, thresholds_mode=None if args.thresholds == "catalog" else args.thresholds)
    finally:
        if store is not None:
            store.close()
    alerts = judgement.alerts
    blockers = blocking(alerts, args.fail_on)
    notes += judgement.notes
    if args.json:
        print_json({
            "selector": selector.name, "format": fmt, "lacks": lacks, "state": result.state.value, "reason": result.reason,
            "runtime_s": result.runtime_s, "runtime_measure": result.runtime_measure, "thresholds": result.thresholds,
            "counts": result.counts.model_dump(), "artifacts": [a.model_dump() for a in result.artifacts],
            "alerts": [a.model_dump() for a in alerts], "blocking": [a.fingerprint for a in blockers],
            "notes": notes,
        })
    else:
        from harness.terminal_text import one_line  # reasons and summaries quote the tests' own text

        runtime = "-" if result.runtime_s is None else f"{result.runtime_s:.1f} s ({result.runtime_measure})"
        print(f"{selector.name}: {result.state.value} ({one_line(result.reason)}); runtime {runtime}")
        for alert in alerts:
            print(f"  {alert.severity.upper():<8} {alert.trigger:<11} {one_line(alert.summary)}")
        for note in notes:
            print(f"  note: {one_line(note)}")
        for gap in lacks:
            print(f"  not evaluated: {gap}")
        if not alerts:
            print("  no trigger fired")
    return 1 if blockers else 0
