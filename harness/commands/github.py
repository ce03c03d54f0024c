"""``harness github publish``: the run's verdict as one PR comment (updated in place) and a Check Run."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.commands.common import add_history_options, add_json_option, non_negative_float


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "github",
        help="publish a run to GitHub (PR comment and Check Run)",
        description="GitHub integration beyond the job summary the run writes itself.",
    )
    actions = parser.add_subparsers(dest="github_command", metavar="ACTION", parser_class=type(parser))
    publish = actions.add_parser(
        "publish",
        help="post a run's verdict: one PR comment updated in place, and a Check Run on the head commit",
        description="Post RUN_DIR's verdict to GitHub. Inside a pull request: one comment, found again by a "
        "hidden marker and edited on every later run (never a second one), with the fired triggers and what "
        "changed since the PR's base. Always: a Check Run on the head commit with annotations for failed tests. "
        "Configured by GITHUB_API_URL, GITHUB_REPOSITORY, GITHUB_SHA, GITHUB_EVENT_PATH (the PR) and "
        "GITHUB_TOKEN, as GitHub Actions sets them. Rate limits are waited out up to --max-wait, then reported.",
        epilog="Exit codes: 0 published, or GitHub refused / rate-limited and it was reported (the gate's verdict "
        "is the run's, not this step's); 1 with --strict when something was not published; 2 usage or "
        "configuration error (a missing variable, no run directory). See docs/github.md.",
    )
    publish.add_argument("run_dir", nargs="?", type=Path, metavar="RUN_DIR",
                         help="a run directory (default: the latest run in the reports folder)")
    publish.add_argument("--only-on-change", action="store_true",
                         help="leave the PR comment alone when the verdict and fired triggers equal its previous ones")
    publish.add_argument("--check-name", metavar="NAME", help="the Check Run's name (default: 'harness CADENCE')")
    publish.add_argument("--base", metavar="SHA", help="the PR's base commit (default: from GITHUB_EVENT_PATH)")
    publish.add_argument("--max-wait", type=non_negative_float, default=60.0, metavar="S",
                         help="longest total wait for GitHub's rate limits (default: %(default)s s)")
    publish.add_argument("--strict", action="store_true", help="exit 1 when the comment or check run was not published")
    publish.add_argument("--dry-run", action="store_true",
                         help="print the comment and check-run title without calling GitHub (no token needed)")
    add_json_option(publish, "what was published (comment, check run, warnings, rate limits)")
    add_history_options(publish)
    publish.set_defaults(handler=handle_publish)
    parser.set_defaults(handler=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def latest_run_dir(reports: Path) -> Path:
    """The newest published run directory (names start with their UTC timestamp)."""
    from harness.errors import ConfigError

    candidates = sorted((p for p in reports.iterdir() if p.is_dir() and not p.name.startswith(".")
                         and (p / "report.json").is_file()), key=lambda p: p.name) if reports.is_dir() else []
    if not candidates:
        raise ConfigError(f"{reports}: no run directory with a report.json (run `harness run` first, or name RUN_DIR)")
    return candidates[-1]


def _load_report(run_dir: Path):
    from pydantic import ValidationError

    from harness.errors import ConfigError
    from harness.report_model import RunReport

    path = run_dir / "report.json"
    try:
        return RunReport.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (is {run_dir} a run directory?)") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"{path}: {'.'.join(map(str, first['loc'])) or '(top level)'}: {first['msg']}") from None


def handle_publish(args: argparse.Namespace) -> int:
    import os
    import sys

    from harness.commands.common import history_path, print_json, reports_dir
    from harness.github import _escape as escape_command
    from harness.github_api import GitHubClient
    from harness.github_publish import (
        PublishResult,
        check_title,
        comment_body,
        publish,
        target_from_env,
        token_from_env,
    )

    run_dir = args.run_dir or latest_run_dir(reports_dir(args))
    report = _load_report(run_dir)
    env = os.environ
    if args.dry_run:
        target = target_from_env({"GITHUB_REPOSITORY": "owner/repo", "GITHUB_SHA": report.run.git.sha or "0" * 40,
                                  **{k: v for k, v in env.items() if k.startswith("GITHUB_") and k != "GITHUB_TOKEN"}},
                                 base_sha=args.base)
        print(f"check run: {check_title(report)}")
        print(comment_body(report, target, None, no_changes_reason="dry run: changes since the base not computed"))
        return 0
    target = target_from_env(env, base_sha=args.base)
    token = token_from_env(env)
    store = None
    path = history_path(args)
    if path is not None and (getattr(path, "url", None) or Path(path).exists()):
        from harness.history import HistoryStore

        try:
            store = HistoryStore.open(path, create=False)
        except Exception as exc:  # noqa: BLE001 - history only improves the comment
            print(f"harness: warning: history not read ({exc}); changes since the base not computed", file=sys.stderr)
    try:
        with GitHubClient(target.api_url, token, max_wait_s=args.max_wait) as client:
            result: PublishResult = publish(report, run_dir, target, client, check_name=args.check_name,
                                            only_on_change=args.only_on_change, store=store)
    finally:
        if store is not None:
            store.close()
    if args.json:
        print_json({"run": report.run.id, "repository": target.repository, "head_sha": target.head_sha,
                    "pull_request": target.pr_number, **result.as_dict()})
    else:
        check = result.check_run
        if check:
            print(f"check run {check['action']}: {check['name']} on {check['head_sha'][:7]} -> {check['conclusion']}, "
                  f"{check['annotations']} annotation(s) in {check['requests']} request(s)")
        comment = result.comment or {}
        if comment.get("action") == "skipped":
            print(f"comment skipped: {comment['reason']}")
        elif comment:
            print(f"comment {comment['action']} on PR #{target.pr_number}: {comment.get('url') or comment.get('id')}")
    for event in result.rate_limits:
        print(f"harness: {event}", file=sys.stderr)
    in_actions = env.get("GITHUB_ACTIONS") == "true"
    for warning in result.warnings:
        # Inside Actions a warning annotation makes it visible on the run page, not only in the log.
        print(f"::warning title=harness github publish::{escape_command(warning)}" if in_actions
              else f"harness: warning: {warning}",
              file=sys.stderr)
    return 1 if args.strict and result.warnings else 0
