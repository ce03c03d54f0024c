"""GitHub Actions integration: the job summary and the annotations, written by the harness itself.

When ``GITHUB_ACTIONS`` is ``true`` a run appends its ``summary.md`` to ``$GITHUB_STEP_SUMMARY``
and prints ``::error`` / ``::warning`` workflow commands for the triggers it fired, so the
workflow YAML stays a plain ``harness run``. GitHub's limits (DESIGN, known behaviour): a step
summary holds at most 1 MiB, and a step shows at most 10 error and 10 warning annotations.

Owned by the workflows issue (8); the run flow calls ``publish(report, run_dir)`` once.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from harness.report_model import SEVERITY_RANK, Alert, RunReport

STEP_SUMMARY_LIMIT_BYTES = 1024 * 1024
MAX_ANNOTATIONS = 10  # per level (error, warning) and step


def in_github_actions(env: Mapping[str, str] | None = None) -> bool:
    """True inside a GitHub Actions job (the runner sets ``GITHUB_ACTIONS=true``)."""
    return (os.environ if env is None else env).get("GITHUB_ACTIONS") == "true"


def run_page_url(env: Mapping[str, str]) -> str | None:
    """The workflow run's page, where its artifacts are listed, or None outside Actions."""
    server, repository, run_id = (env.get(k) for k in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if not (server and repository and run_id):
        return None
    return f"{server}/{repository}/actions/runs/{run_id}#artifacts"


def fit_summary(markdown: str, budget_bytes: int, run_name: str, artifact_url: str | None) -> str:
    """``markdown`` if it fits in ``budget_bytes`` (UTF-8), else its head cut at a line end plus a
    note saying how much was left out and where the whole summary is."""
    encoded = markdown.encode("utf-8")
    if len(encoded) <= budget_bytes:
        return markdown
    where = f"[the run's artifact]({artifact_url})" if artifact_url else "the run's artifact"
    note = (
        "\n\n---\n**Summary truncated** to fit GitHub's 1 MiB step-summary limit: "
        f"{{shown:,}} of {len(encoded):,} bytes shown. The full summary is `summary.md` (and "
        f"`summary.html`) in the run directory `{run_name}`, uploaded as {where}.\n"
    )
    room = budget_bytes - len(note.format(shown=len(encoded)).encode("utf-8"))
    if room <= 0:
        return ""
    head = encoded[:room].decode("utf-8", errors="ignore")
    cut = head.rfind("\n")
    if cut > 0:
        head = head[: cut + 1]
    return head + note.format(shown=len(head.encode("utf-8")))


def append_step_summary(summary_path: Path, markdown: str, run_name: str, artifact_url: str | None) -> int:
    """Append ``markdown`` to the step summary file within what is left of its 1 MiB.

    Earlier commands of the same step may have written to it already; their bytes count too.
    Returns the number of bytes written.
    """
    used = summary_path.stat().st_size if summary_path.exists() else 0
    text = fit_summary(markdown, STEP_SUMMARY_LIMIT_BYTES - used, run_name, artifact_url)
    if not text:
        return 0
    data = text.encode("utf-8")
    with open(summary_path, "ab") as handle:
        handle.write(data)
    return len(data)


_RUN_DIRECTORY_LINK = re.compile(r"\[([^\]\n]*)\]\((images/[^)\s]+)\)")


def artifact_links(markdown: str, artifact_url: str | None) -> str:
    """summary.md's links into the run directory (``images/...``) for the job summary, where a
    relative link leads nowhere: to the run's artifacts instead, the path kept as the link title."""
    if artifact_url:
        return _RUN_DIRECTORY_LINK.sub(
            lambda m: f'[{m.group(1)}]({artifact_url} "{m.group(2)} in the run directory artifact")', markdown)
    return _RUN_DIRECTORY_LINK.sub(lambda m: f"{m.group(1)} (`{m.group(2)}`)", markdown)


def _escape(text: str) -> str:
    """Workflow-command message escaping (``%``, CR, LF): a newline cannot start a command."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape(text).replace(":", "%3A").replace(",", "%2C")


def _test_file(nodeid: str | None) -> str | None:
    path = (nodeid or "").split("::", 1)[0]
    return path if path.endswith(".py") else None


def annotation_line(level: str, alert: Alert) -> str:
    """One ``::error``/``::warning`` command for a fired trigger (``file=`` names the test file)."""
    properties = [f"title={_escape_property(f'{alert.trigger} ({alert.severity}): {alert.title}')}"]
    test_file = _test_file(alert.nodeid)
    if test_file:
        properties.insert(0, f"file={_escape_property(test_file)}")
    where = f" [{alert.selector}]" if alert.selector else ""
    message = f"{alert.summary}{where}; owner {alert.owner}, SLA {alert.sla}"
    return f"::{level} {','.join(properties)}::{_escape(message)}"


def annotation_lines(alerts: Sequence[Alert], fail_on: str = "high") -> list[str]:
    """Annotations for the fired triggers, most severe first, at most 10 per level.

    Triggers at or above the gate's ``fail_on`` are errors (they fail the job), the rest
    warnings. When a level has more than 10, the tenth line says how many were left out.
    """
    threshold = SEVERITY_RANK[fail_on]
    lines: list[str] = []
    for level in ("error", "warning"):
        chosen = sorted(
            (a for a in alerts if (SEVERITY_RANK[a.severity] >= threshold) == (level == "error")),
            key=lambda a: (-SEVERITY_RANK[a.severity], a.trigger, a.selector or "", a.nodeid or ""),
        )
        if len(chosen) <= MAX_ANNOTATIONS:
            lines += [annotation_line(level, a) for a in chosen]
            continue
        shown = chosen[: MAX_ANNOTATIONS - 1]
        left = len(chosen) - len(shown)
        lines += [annotation_line(level, a) for a in shown]
        lines.append(f"::{level} title={_escape_property(f'{left} more {level}s')}::"
                     f"{_escape(f'{left} more fired triggers at this level: see the job summary')}")
    return lines


def annotations(report: RunReport) -> list[str]:
    """The annotation lines of a run (``fail_on`` from its gate)."""
    return annotation_lines(report.alerts, report.gate.fail_on)


def publish(
    report: RunReport | None,
    directory: Path,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
) -> bool:
    """Inside GitHub Actions: job summary plus annotations for ``report`` (read from
    ``directory/report.json`` when None). Outside Actions it does nothing and returns False.

    Annotations go to stderr (the runner reads workflow commands on both streams; stdout may
    carry ``--json``). A missing or unwritable summary file is reported, never fatal: the run's
    verdict must not depend on the CI's plumbing.
    """
    env = os.environ if env is None else env
    if not in_github_actions(env):
        return False
    out = out or sys.stderr
    directory = Path(directory)
    if report is None:
        report = RunReport.model_validate_json((directory / "report.json").read_text(encoding="utf-8"))
    summary_file = env.get("GITHUB_STEP_SUMMARY")
    summary_md = directory / "summary.md"
    if summary_file and summary_md.exists():
        try:
            markdown = artifact_links(summary_md.read_text(encoding="utf-8"), run_page_url(env))
            append_step_summary(Path(summary_file), markdown, directory.name, run_page_url(env))
        except OSError as exc:
            print(f"harness: cannot write the job summary to {summary_file}: {exc.strerror or exc}", file=sys.stderr)
    for line in annotations(report):
        print(line, file=out)
    out.flush()
    return True
