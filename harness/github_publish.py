"""``harness github publish``: a run's verdict on the pull request and on the commit.

Two things, each independent of the other (one failing is reported, the other still happens):

* **one pull-request comment**, found again on every later run of the same PR by a hidden marker
  and edited in place (never a second one). It says the verdict, the fired triggers, what changed
  since the PR's base (new failures, fixed tests, runtime deltas — from history when it holds a
  run of the base commit, else since this PR's previous comment) and links to the run page.
  ``only_on_change`` leaves the comment alone when verdict and triggers equal the previous one's.
* **a Check Run** on the head commit (one per head SHA and check name: a rerun updates it), its
  conclusion from the gate, with an annotation per failed test at its file and line where known,
  sent at most 50 per request (GitHub's limit), the rest in further updates.

Outside a pull request (push, schedule) only the Check Run is created. Configuration is GitHub's
own: ``GITHUB_API_URL``, ``GITHUB_REPOSITORY``, ``GITHUB_SHA``, ``GITHUB_EVENT_PATH``,
``GITHUB_TOKEN`` (and ``GITHUB_SERVER_URL``/``GITHUB_RUN_ID`` for the run page link).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import ConfigError
from harness.github_api import (
    Annotation,
    CheckRun,
    CheckRunCreate,
    CheckRunOutput,
    CheckRunUpdate,
    CommentBody,
    ExistingAnnotation,
    GitHubClient,
    GitHubError,
    IssueComment,
)
from harness.report_model import SEVERITY_RANK, RunReport

MARKER = "<!-- ptycho-harness:pr-comment -->"
STATE_START = "<!-- ptycho-harness:state "
STATE_END = " -->"
ANNOTATIONS_PER_REQUEST = 50  # GitHub's limit per create/update request
MAX_ANNOTATIONS = 500  # more failures than this are one summary line, not 10 update requests
COMMENT_LIMIT = 65536
OUTPUT_LIMIT = 65535
TRIGGERS_SHOWN = 15
TESTS_SHOWN = 15
PASSING = {"passed", "xpassed", "rerun"}
FAILING = {"failed", "error"}


# -- where to publish ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GitHubTarget:
    """The repository, commit and (inside a PR) pull request a run is published to."""

    api_url: str
    repository: str
    head_sha: str
    pr_number: int | None = None
    base_sha: str | None = None
    base_ref: str | None = None
    run_url: str | None = None


def _event(path_text: str | None) -> dict[str, Any]:
    if not path_text:
        return {}
    path = Path(path_text)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"GITHUB_EVENT_PATH={path}: file not found") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"GITHUB_EVENT_PATH={path}: not a readable JSON event payload ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"GITHUB_EVENT_PATH={path}: expected a JSON object")
    return data


def target_from_env(env: Mapping[str, str], *, base_sha: str | None = None, pr_number: int | None = None) -> GitHubTarget:
    """The target from GitHub Actions' variables; a ConfigError names a missing or bad one.

    In a ``pull_request`` event ``GITHUB_SHA`` is the merge commit GitHub made for the run; the
    check belongs on the PR's head commit (where the PR page looks), so the event's head SHA wins.
    """
    repository = env.get("GITHUB_REPOSITORY", "")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
        raise ConfigError(f"GITHUB_REPOSITORY: expected OWNER/REPO, got {repository!r}")
    event = _event(env.get("GITHUB_EVENT_PATH"))
    pull = event.get("pull_request") if isinstance(event.get("pull_request"), dict) else None
    number = pr_number
    if number is None and pull is not None:
        number = pull.get("number", event.get("number"))
    head = ((pull or {}).get("head") or {}).get("sha") or env.get("GITHUB_SHA", "")
    if not re.fullmatch(r"[0-9a-fA-F]{7,64}", head or ""):
        raise ConfigError(f"GITHUB_SHA: expected a commit SHA, got {head!r}")
    base = (pull or {}).get("base") or {}
    if number is not None and not (isinstance(number, int) and number > 0):
        raise ConfigError(f"GITHUB_EVENT_PATH: pull_request.number must be a positive integer, got {number!r}")
    server, run_id = env.get("GITHUB_SERVER_URL"), env.get("GITHUB_RUN_ID")
    return GitHubTarget(
        api_url=(env.get("GITHUB_API_URL") or "https://api.github.com").rstrip("/"),
        repository=repository, head_sha=head, pr_number=number,
        base_sha=base_sha or base.get("sha"), base_ref=base.get("ref"),
        run_url=f"{server.rstrip('/')}/{repository}/actions/runs/{run_id}" if server and run_id else None,
    )


def token_from_env(env: Mapping[str, str]) -> str:
    token = env.get("GITHUB_TOKEN", "")
    if not token.strip():
        raise ConfigError("GITHUB_TOKEN is not set (in a workflow: env: GITHUB_TOKEN: ${{ github.token }})")
    return token.strip()


# -- what changed --------------------------------------------------------------------------------


@dataclass
class Changes:
    """What changed against a reference: the base commit's run in history, or the PR's previous comment."""

    against: str  # in words, e.g. "base 1a2b3c4 (run 20261207T...-pr)"
    new_failures: list[str] = field(default_factory=list)  # "selector: nodeid"
    fixed: list[str] = field(default_factory=list)
    runtimes: list[tuple[str, float, float]] = field(default_factory=list)  # selector, before, now


def failing_tests(report: RunReport) -> dict[str, str]:
    """``"selector: nodeid" -> outcome`` for every failed or errored test (collectors included)."""
    return {f"{result.name}: {test.nodeid}": test.outcome for result in report.selectors for test in result.failures}


def _outcomes_now(report: RunReport) -> dict[str, str]:
    return {f"{result.name}: {test.nodeid}": test.outcome for result in report.selectors for test in result.tests}


def changes_since_base(store: Any, report: RunReport, base_sha: str, base_ref: str | None = None) -> Changes | None:
    """Against each selector's newest result at the base commit (else on the base branch, said so)
    in ``store`` (a HistoryStore, SQLite or PostgreSQL); None when history has neither."""
    selectors = [result.name for result in report.selectors if result.state != "not_run"]
    if not selectors:
        return None
    before: dict[str, str] = {}
    runtimes: list[tuple[str, float, float]] = []
    used: dict[str, str] = {}
    compared: set[str] = set()
    on_branch = False
    for result in report.selectors:
        if result.state == "not_run":
            continue
        row = _base_result(store, result.name, report.run.id, base_sha, None)
        if row is None and base_ref:
            row = _base_result(store, result.name, report.run.id, None, base_ref)
            on_branch = on_branch or row is not None
        if row is None:
            continue
        used[row["run_key"]] = row["git_sha"] or "?"
        compared.add(result.name)
        for test in store.db.execute(
                "SELECT nodeid, outcome FROM test_results WHERE selector_result_id = ?", (row["id"],)).fetchall():
            before[f"{result.name}: {test[0]}"] = test[1]
        if row["runtime_s"] is not None and result.runtime_s is not None:
            runtimes.append((result.name, float(row["runtime_s"]), float(result.runtime_s)))
    if not used:
        return None
    runs = ", ".join(f"{key} @ {sha[:7]}" for key, sha in sorted(used.items()))
    where = f"the newest runs on {base_ref} ({runs}; the base commit {base_sha[:7]} itself has none)" if on_branch \
        else f"base {base_sha[:7]} (run {runs})"
    return _compare(where, before, _outcomes_now(report), runtimes, report, compared)


def changes_since_state(state: dict[str, Any], report: RunReport) -> Changes | None:
    """Against the PR's previous comment (its hidden state lists what failed then)."""
    failing = state.get("failing")
    if not isinstance(failing, list):
        return None
    before = {str(name): "failed" for name in failing}
    runtimes = [(str(name), float(value), float(r.runtime_s)) for name, value in (state.get("runtimes") or {}).items()
                for r in report.selectors if r.name == name and r.runtime_s is not None and isinstance(value, (int, float))]
    where = f"this PR's previous run ({state.get('run', '?')}"
    where += f" @ {str(state['sha'])[:7]})" if state.get("sha") else ")"
    # The previous comment lists failures only: a test it did not list is taken as passing then,
    # in the selectors that run had (those with a runtime, or a failure, in its state).
    compared = {str(name) for name in (state.get("runtimes") or {})} | {name.split(": ", 1)[0] for name in before}
    return _compare(where, before, _outcomes_now(report), runtimes, report, compared)


def _compare(where: str, before: dict[str, str], now: dict[str, str], runtimes: list[tuple[str, float, float]],
             report: RunReport, compared: set[str]) -> Changes:
    """New failures and fixed tests, only in ``compared`` selectors (those the reference ran):
    a selector the reference never ran has no "new" failures, only unknown ones."""
    failing_now = failing_tests(report)
    changes = Changes(against=where, runtimes=runtimes)
    changes.new_failures = sorted(name for name in failing_now
                                  if name.split(": ", 1)[0] in compared and before.get(name) not in FAILING)
    changes.fixed = sorted(name for name, outcome in before.items() if outcome in FAILING and now.get(name) in PASSING)
    return changes


def _base_result(store: Any, selector: str, run_key: str, sha: str | None, branch: str | None) -> dict[str, Any] | None:
    column, value = ("r.git_sha", sha) if sha else ("r.git_branch", branch)
    row = store.db.execute(f"""
        SELECT sr.id, sr.runtime_s, r.run_key, r.git_sha FROM selector_results AS sr JOIN runs AS r ON r.id = sr.run_id
        WHERE sr.selector = ? AND {column} = ? AND r.run_key <> ? AND sr.state NOT IN ('not_run', 'interrupted')
        ORDER BY r.started_at DESC, r.id DESC LIMIT 1""", (selector, value, run_key)).fetchone()  # noqa: S608 - fixed column names
    return None if row is None else {key: row[key] for key in ("id", "runtime_s", "run_key", "git_sha")}


# -- the comment ---------------------------------------------------------------------------------


def verdict(report: RunReport) -> str:
    if report.run.interrupted:
        return "interrupted"
    return "passed" if report.gate.passed else "failed"


def trigger_keys(report: RunReport) -> list[str]:
    """What ``only_on_change`` compares besides the verdict: each fired trigger's identity."""
    return sorted({alert.fingerprint for alert in report.alerts})


def comment_state(report: RunReport, sha: str) -> dict[str, Any]:
    failing = sorted(failing_tests(report))
    return {
        "verdict": verdict(report), "triggers": trigger_keys(report), "run": report.run.id, "sha": sha,
        "failing": failing[:300],
        "runtimes": {r.name: round(r.runtime_s, 3) for r in report.selectors if r.runtime_s is not None},
    }


def read_state(body: str | None) -> dict[str, Any] | None:
    """The hidden state of a comment this harness wrote, or None."""
    text = body or ""
    start = text.find(STATE_START)
    if start < 0:
        return None
    end = text.find(STATE_END, start + len(STATE_START))
    try:
        data = json.loads(text[start + len(STATE_START): end])
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _md(text: object, limit: int = 200) -> str:
    from harness.render import md_cell

    return md_cell(text, limit)


def _signed(delta: float) -> str:
    return f"{delta:+.1f} s"


def comment_body(report: RunReport, target: GitHubTarget, changes: Changes | None, *,
                 check_url: str | None = None, no_changes_reason: str | None = None) -> str:
    """The PR comment's Markdown: short, the marker first, the hidden state last."""
    icon = {"passed": "✅", "failed": "❌", "interrupted": "⏹️"}[verdict(report)]
    ran = [r for r in report.selectors if r.state != "not_run"]
    lines = [MARKER, f"### {icon} ptycho harness `{report.run.cadence}`: gate {verdict(report)}", ""]
    lines.append(f"Commit `{target.head_sha[:7]}` · run `{report.run.id}` · {len(ran)} selector(s) ran in "
                 f"{report.run.wall_s:.1f} s · fails on ≥ {report.gate.fail_on}")
    lines.append("")
    alerts = sorted(report.alerts, key=lambda a: (-SEVERITY_RANK[a.severity], a.trigger, a.selector or ""))
    if alerts:
        lines += [f"**Fired triggers ({len(alerts)})**", "", "| trigger | severity | what |", "|---|---|---|"]
        for alert in alerts[:TRIGGERS_SHOWN]:
            blocking = " (blocking)" if alert.fingerprint in report.gate.blocking else ""
            lines.append(f"| **{alert.trigger}** | {alert.severity}{blocking} | {_md(alert.summary)} |")
        if len(alerts) > TRIGGERS_SHOWN:
            lines.append(f"| … | | {len(alerts) - TRIGGERS_SHOWN} more in the run's summary |")
    else:
        lines.append("No trigger fired.")
    lines.append("")
    shifted = [a for a in alerts if isinstance(a.evidence.get("headline"), str)]
    if shifted:
        # Change points say by how much and since which commit: the line a reviewer acts on.
        lines += ["**Change points**", ""]
        lines += [f"- **{a.trigger}** `{a.selector}`{f' `{_md(a.nodeid, 150)}`' if a.nodeid else ''}: "
                  f"{_md(a.evidence['headline'], 200)}" for a in shifted[:TRIGGERS_SHOWN]]
        lines.append("")
    skipping = [r for r in report.selectors if r.skips]
    if skipping:
        # A skip is never good news: say what did not run and why, grouped and counted.
        lines.append("**Skipped tests**")
        lines.append("")
        for r in skipping:
            did_not_run = " — did not run" + (" (expected here)" if r.skip_expected else "") if r.state == "did_not_run" else ""
            reasons = "; ".join(f"{g.count} × {_md(g.reason, 150)}" for g in r.skips[:5])
            more = f"; {len(r.skips) - 5} more reasons" if len(r.skips) > 5 else ""
            lines.append(f"- `{r.name}`{did_not_run}: {reasons}{more}")
        lines.append("")
    if changes is not None:
        lines.append(f"**Since {_md(changes.against, 300)}**")
        lines.append("")
        if changes.new_failures:
            lines.append(f"- New failures ({len(changes.new_failures)}): "
                         + ", ".join(f"`{_md(n, 150)}`" for n in changes.new_failures[:TESTS_SHOWN])
                         + (" …" if len(changes.new_failures) > TESTS_SHOWN else ""))
        if changes.fixed:
            lines.append(f"- Fixed ({len(changes.fixed)}): "
                         + ", ".join(f"`{_md(n, 150)}`" for n in changes.fixed[:TESTS_SHOWN])
                         + (" …" if len(changes.fixed) > TESTS_SHOWN else ""))
        if not changes.new_failures and not changes.fixed:
            lines.append("- No test changed outcome.")
        for name, before, now in changes.runtimes:
            percent = f" ({(now - before) / before:+.0%})" if before > 0 else ""
            lines.append(f"- `{name}` runtime {before:.1f} s → {now:.1f} s, {_signed(now - before)}{percent}")
        lines.append("")
    elif no_changes_reason:
        lines += [f"_{_md(no_changes_reason, 300)}_", ""]
    links = []
    if target.run_url:
        links.append(f"[workflow run]({target.run_url})")
        links.append(f"[run directory (artifact)]({target.run_url}#artifacts)")
    if check_url:
        links.append(f"[check run]({check_url})")
    links.append("`summary.html` in the run directory")
    lines.append("Details: " + " · ".join(links))
    state = json.dumps(comment_state(report, target.head_sha), separators=(",", ":")).replace("--", "-\\u002d")
    body = "\n".join(lines)
    tail = f"\n{STATE_START}{state}{STATE_END}\n"
    if len(body) + len(tail) > COMMENT_LIMIT:
        body = body[: COMMENT_LIMIT - len(tail) - 40] + "\n… (cut to GitHub's comment limit)"
    return body + tail


# -- the check run -------------------------------------------------------------------------------


def conclusion(report: RunReport) -> str:
    if report.run.interrupted:
        return "cancelled"
    return "success" if report.gate.passed else "failure"


def check_title(report: RunReport) -> str:
    if not report.alerts:
        return f"gate {verdict(report)}: no trigger fired"
    counts: dict[str, int] = {}
    for alert in report.alerts:
        counts[alert.trigger] = counts.get(alert.trigger, 0) + 1
    fired = ", ".join(f"{name} ×{n}" if n > 1 else name for name, n in sorted(counts.items()))
    return f"gate {verdict(report)}: {fired}"[:1000]


def check_text(report: RunReport) -> str:
    """Per-selector table and the failures' messages, cut to the output limit."""
    lines = ["| selector | state | runtime | tests |", "|---|---|---|---|"]
    for r in report.selectors:
        runtime = "–" if r.runtime_s is None else f"{r.runtime_s:.1f} s"
        lines.append(f"| `{r.name}` | {r.state}{' — ' + _md(r.reason, 120) if r.reason else ''} | {runtime} | "
                     f"{r.counts.passed} passed, {r.counts.failed} failed, {r.counts.error} errors, {r.counts.skipped} skipped |")
    failures = [(r.name, t) for r in report.selectors for t in r.failures]
    if failures:
        lines += ["", "### Failures", ""]
        for name, test in failures[:30]:
            lines += [f"**`{_md(test.nodeid, 200)}`** ({name}, {test.failed_stage or test.outcome})", "", "```text",
                      (test.message or test.longrepr or test.outcome)[:1500].replace("```", "ʼʼʼ"), "```", ""]
    if report.notes:
        lines += ["", "### Notes", ""] + [f"- {_md(note, 400)}" for note in report.notes]
    text = "\n".join(lines)
    return text if len(text) <= OUTPUT_LIMIT else text[: OUTPUT_LIMIT - 40] + "\n… (cut to GitHub's limit)"


def _repo_relative(path: str | None, root: Path) -> str | None:
    if not path:
        return None
    candidate = Path(path)
    if candidate.is_absolute():
        try:
            candidate = candidate.resolve().relative_to(root.resolve())
        except (ValueError, OSError):
            return None
    text = candidate.as_posix().removeprefix("./")
    return None if text.startswith("../") else text


def test_locations(report: RunReport, run_dir: Path) -> dict[tuple[str, str], tuple[str, int]]:
    """``(selector, nodeid) -> (repo-relative path, 1-based line)`` for failed tests, from each
    selector's pytest JSON report in the run directory: the crash line when it lies in the
    repository, else the test's own ``def`` line. Tests not found there are absent."""
    root = Path(report.run.root)
    found: dict[tuple[str, str], tuple[str, int]] = {}
    for result in report.selectors:
        wanted = {test.nodeid for test in result.failures if test.kind == "test"}
        if not wanted or result.files is None or not result.files.pytest_json:
            continue
        try:
            data = json.loads((run_dir / result.files.pytest_json).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        for test in data.get("tests") or ():
            nodeid = test.get("nodeid") if isinstance(test, dict) else None
            if nodeid not in wanted:
                continue
            location = None
            for stage in ("setup", "call", "teardown"):
                crash = (test.get(stage) or {}).get("crash") or {}
                path = _repo_relative(crash.get("path"), root)
                if path and isinstance(crash.get("lineno"), int) and crash["lineno"] >= 1:
                    location = (path, crash["lineno"])
                    break
            if location is None and isinstance(test.get("lineno"), int):
                location = (nodeid.split("::", 1)[0], test["lineno"] + 1)  # pytest's location line is 0-based
            if location is not None:
                found[(result.name, nodeid)] = location
    return found


def annotations_for(report: RunReport, run_dir: Path) -> list[Annotation]:
    """One ``failure`` annotation per failed test (with the triggers it fired), then a warning or
    failure per other alert that names a test file; file and line where the run knows them."""
    located = test_locations(report, run_dir)
    by_test: dict[tuple[str | None, str | None], list[str]] = {}
    for alert in report.alerts:
        by_test.setdefault((alert.selector, alert.nodeid), []).append(alert.trigger)
    result: list[Annotation] = []
    seen: set[tuple[str | None, str]] = set()
    for selector in report.selectors:
        for test in selector.failures:
            path, line = located.get((selector.name, test.nodeid), (test.nodeid.split("::", 1)[0], 1))
            triggers = sorted(set(by_test.get((selector.name, test.nodeid), [])))
            message = (test.message or test.outcome).strip()[:4000]
            if triggers:
                message += f"\n\ntriggers: {', '.join(triggers)}"
            result.append(Annotation(path=path, start_line=line, end_line=line, annotation_level="failure",
                                     message=message or test.outcome,
                                     title=f"{test.nodeid} ({selector.name}, {test.failed_stage or test.outcome})"[:255]))
            seen.add((selector.name, test.nodeid))
    for alert in report.alerts:
        if not alert.nodeid or (alert.selector, alert.nodeid) in seen:
            continue
        path = alert.nodeid.split("::", 1)[0]
        if not path.endswith(".py"):
            continue
        level = "failure" if alert.fingerprint in report.gate.blocking else "warning"
        result.append(Annotation(path=path, start_line=1, end_line=1, annotation_level=level,  # type: ignore[arg-type]
                                 message=f"{alert.summary}\nowner {alert.owner}, SLA {alert.sla}"[:4000],
                                 title=f"{alert.trigger} ({alert.severity}): {alert.title}"[:255]))
    return result


# -- publishing ----------------------------------------------------------------------------------


@dataclass
class PublishResult:
    comment: dict[str, Any] | None = None
    check_run: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    rate_limits: list[str] = field(default_factory=list)
    requests: int = 0

    @property
    def complete(self) -> bool:
        return not self.warnings

    def as_dict(self) -> dict[str, Any]:
        return {"comment": self.comment, "check_run": self.check_run, "warnings": self.warnings,
                "rate_limits": self.rate_limits, "requests": self.requests}


def find_comment(client: GitHubClient, target: GitHubTarget) -> IssueComment | None:
    """The harness's comment on the PR (the first carrying the marker), across every page."""
    path = f"repos/{target.repository}/issues/{target.pr_number}/comments"
    for item in client.paginate(path):
        comment = IssueComment.model_validate(item)
        if MARKER in (comment.body or ""):
            return comment
    return None


def publish_comment(client: GitHubClient, report: RunReport, target: GitHubTarget, *, only_on_change: bool,
                    store: Any = None, check_url: str | None = None) -> dict[str, Any]:
    existing = find_comment(client, target)
    previous = read_state(existing.body) if existing is not None else None
    if only_on_change and previous is not None and previous.get("verdict") == verdict(report) \
            and previous.get("triggers") == trigger_keys(report):
        return {"action": "unchanged", "id": existing.id, "url": existing.html_url}  # type: ignore[union-attr]
    changes, reason = None, None
    if target.base_sha and store is not None:
        changes = changes_since_base(store, report, target.base_sha, target.base_ref)
    if changes is None and previous is not None and previous.get("run") != report.run.id:
        changes = changes_since_state(previous, report)
    if changes is None:
        reason = ("no run of the base commit in history and no earlier comment: changes since the base not computed"
                  if target.base_sha else "the PR's base commit is unknown: changes since the base not computed")
    body = CommentBody(body=comment_body(report, target, changes, check_url=check_url, no_changes_reason=reason))
    if existing is None:
        data = client.json("POST", f"repos/{target.repository}/issues/{target.pr_number}/comments", payload=body)
        action = "created"
    else:
        data = client.json("PATCH", f"repos/{target.repository}/issues/comments/{existing.id}", payload=body)
        action = "updated"
    comment = IssueComment.model_validate(data)
    return {"action": action, "id": comment.id, "url": comment.html_url}


def _existing_check_run(client: GitHubClient, target: GitHubTarget, name: str) -> CheckRun | None:
    path = f"repos/{target.repository}/commits/{target.head_sha}/check-runs"
    for item in client.paginate(path, {"check_name": name, "filter": "all"}, items_key="check_runs"):
        run = CheckRun.model_validate(item)
        if run.name == name:
            return run
    return None


def publish_check_run(client: GitHubClient, report: RunReport, run_dir: Path, target: GitHubTarget,
                      name: str) -> dict[str, Any]:
    annotations = annotations_for(report, run_dir)
    left_out = max(0, len(annotations) - MAX_ANNOTATIONS)
    annotations = annotations[:MAX_ANNOTATIONS]
    summary_lines = [f"**{report.run.cadence}** run `{report.run.id}`: gate {verdict(report)} "
                     f"(fails on ≥ {report.gate.fail_on}), {len(report.alerts)} trigger(s) fired."]
    for alert in sorted(report.alerts, key=lambda a: (-SEVERITY_RANK[a.severity], a.trigger))[:TRIGGERS_SHOWN]:
        summary_lines.append(f"- **{alert.trigger}** ({alert.severity}): {_md(alert.summary)}")
    if left_out:
        summary_lines.append(f"\n{left_out} more failed tests are not annotated (see the run's summary).")
    title, summary, text = check_title(report), "\n".join(summary_lines)[:OUTPUT_LIMIT], check_text(report)
    existing = _existing_check_run(client, target, name)
    fields = {"conclusion": conclusion(report), "started_at": report.run.started_at,
              "completed_at": report.run.finished_at, "external_id": report.run.id, "details_url": target.run_url}
    if existing is not None:
        known = {ExistingAnnotation.model_validate(item).key()
                 for item in client.paginate(f"repos/{target.repository}/check-runs/{existing.id}/annotations")}
        annotations = [a for a in annotations if a.key() not in known]  # updates append: never repeat one
    pages = [annotations[i:i + ANNOTATIONS_PER_REQUEST] for i in range(0, len(annotations), ANNOTATIONS_PER_REQUEST)] or [[]]
    first = CheckRunOutput(title=title, summary=summary, text=text, annotations=pages[0])
    if existing is None:
        data = client.json("POST", f"repos/{target.repository}/check-runs",
                           payload=CheckRunCreate(name=name, head_sha=target.head_sha, output=first, **fields))
        action = "created"
    else:
        data = client.json("PATCH", f"repos/{target.repository}/check-runs/{existing.id}",
                           payload=CheckRunUpdate(status="completed", output=first, **fields))
        action = "updated"
    run = CheckRun.model_validate(data)
    for page in pages[1:]:
        client.json("PATCH", f"repos/{target.repository}/check-runs/{run.id}",
                    payload=CheckRunUpdate(output=CheckRunOutput(title=title, summary=summary, annotations=page)))
    return {"action": action, "id": run.id, "url": run.html_url, "name": name, "head_sha": target.head_sha,
            "conclusion": conclusion(report), "annotations": len(annotations), "requests": len(pages),
            "not_annotated": left_out}


def publish(report: RunReport, run_dir: Path, target: GitHubTarget, client: GitHubClient, *,
            check_name: str | None = None, only_on_change: bool = False, store: Any = None) -> PublishResult:
    """The Check Run, then (inside a PR) the comment. A GitHub error or an outlasting rate limit
    becomes a warning in the result, never an exception: the gate's verdict stands on its own."""
    result = PublishResult()
    name = check_name or f"harness {report.run.cadence}"
    try:
        result.check_run = publish_check_run(client, report, Path(run_dir), target, name)
    except GitHubError as exc:
        result.warnings.append(f"check run not published: {exc}")
    if target.pr_number is not None:
        try:
            result.comment = publish_comment(client, report, target, only_on_change=only_on_change, store=store,
                                             check_url=(result.check_run or {}).get("url"))
        except GitHubError as exc:
            result.warnings.append(f"pull-request comment not published: {exc}")
    else:
        result.comment = {"action": "skipped", "reason": "not a pull request: only the check run"}
    result.rate_limits = list(client.rate_limit_events)
    result.requests = client.requests_made
    return result
