"""Render a run's ``summary.md`` and ``summary.html`` from ``report.json``'s model (Jinja2).

HTML autoescapes; Markdown table cells are escaped by the ``md`` filter, because test
messages are untrusted text that may contain pipes, newlines or markup.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.locations import PACKAGE_DIR
from harness.report_model import SEVERITY_RANK, RunReport

TEMPLATES = PACKAGE_DIR / "templates"
# GitHub caps a step summary at 1 MiB; stay clear of it.
MAX_SUMMARY_BYTES = 1_000_000
_SEVERITY_ICON = {"critical": "🔴", "high": "🟠", "medium": "🟡", "warning": "🟡", "info": "🔵"}
_STATE_ICON = {"passed": "✅", "skipped": "⏭️", "not_run": "➖", "flaky": "⚠️"}


def md_cell(value: object, limit: int = 300) -> str:
    """Text safe inside a Markdown table cell: one line, pipes and angle brackets escaped."""
    text = "" if value is None else str(value)
    text = re.sub(r"\s*\n\s*", " ⏎ ", text.strip())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|").replace("`", "ʼ")


def md_text(value: object) -> str:
    """Untrusted text in a Markdown paragraph or list item: markup escaped, code spans kept."""
    text = "" if value is None else str(value)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def _environment(autoescape: bool):
    from jinja2 import Environment, FileSystemBytecodeCache, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        # Compiled templates are cached in a private per-user temp folder (keyed by the template's
        # checksum): compiling them took a third of a second of every run.
        bytecode_cache=FileSystemBytecodeCache(),
        autoescape=autoescape,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["md"] = md_cell
    env.filters["md_text"] = md_text
    env.filters["seconds"] = seconds
    env.globals["severity_icon"] = lambda s: _SEVERITY_ICON.get(s, "")
    env.globals["state_icon"] = lambda s: _STATE_ICON.get(str(s), "❌")
    return env


def _context(report: RunReport) -> dict:
    alerts = sorted(report.alerts, key=lambda a: (-SEVERITY_RANK[a.severity], a.trigger))
    failures = [(result.name, test) for result in report.selectors for test in result.failures]
    return {"report": report, "run": report.run, "gate": report.gate, "alerts": alerts, "failures": failures}


def render_markdown(report: RunReport, images: list | None = None) -> str:
    text = _environment(False).get_template("summary.md.j2").render(**_context(report), images=images or [])
    encoded = text.encode("utf-8")
    if len(encoded) > MAX_SUMMARY_BYTES:
        cut = encoded[: MAX_SUMMARY_BYTES - 200].decode("utf-8", "ignore")
        text = cut + "\n\n… summary truncated (GitHub's 1 MiB limit); see report.json and summary.html.\n"
    return text


def render_html(report: RunReport, images: list | None = None) -> str:
    """``images``: harness.report_images.SelectorImages, paths relative to the run directory."""
    return _environment(True).get_template("summary.html.j2").render(**_context(report), images=images or [])


def write_reports(report: RunReport, directory: Path) -> list[str]:
    """``report.json``, ``summary.md`` and ``summary.html`` into ``directory``.

    report.json comes first and is what matters; a summary that fails to render is replaced by
    a short text saying so (the run is still published), and the problem is returned.
    """
    (directory / "report.json").write_text(report.to_json() + "\n", encoding="utf-8")
    problems = []
    try:
        from harness.report_images import gather_images

        images = gather_images(report, directory)
    except Exception as exc:  # pictures are a convenience: the summaries still get written
        problems.append(f"images not gathered into {directory.name}/images ({type(exc).__name__}: {exc})")
        images = []
    for name, render in (("summary.md", render_markdown), ("summary.html", render_html)):
        try:
            text = render(report, images)
        except Exception as exc:  # a template bug must not cost the run its report
            problems.append(f"{name} could not be rendered ({type(exc).__name__}: {exc}); see report.json")
            text = f"{problems[-1]}\n"
        (directory / name).write_text(text, encoding="utf-8")
    return problems
