"""Render a run's ``summary.md`` and ``summary.html`` from ``report.json``'s model (Jinja2).

HTML autoescapes; Markdown table cells are escaped by the ``md`` filter, because test
messages are untrusted text that may contain pipes, newlines or markup.
"""

from __future__ import annotations

import re
from pathlib import Path

from harness.locations import PACKAGE_DIR
from harness.report_model import SEVERITY_RANK, RunReport, SelectorResult
from harness.states import STATE_LABELS
from harness.terminal_text import neutralise

TEMPLATES = PACKAGE_DIR / "templates"
# GitHub caps a step summary at 1 MiB; stay clear of it.
MAX_SUMMARY_BYTES = 1_000_000
_SEVERITY_ICON = {"critical": "🔴", "high": "🟠", "medium": "🟡", "warning": "🟡", "info": "🔵"}
_STATE_ICON = {"passed": "✅", "not_run": "➖", "flaky": "⚠️"}


def md_cell(value: object, limit: int = 300) -> str:
    """Text safe inside a Markdown table cell: one line, pipes and angle brackets escaped."""
    text = "" if value is None else str(value)
    text = re.sub(r"\s*[\r\n\x0b\x0c\x85\u2028\u2029]+\s*", " ⏎ ", text.strip())  # a lone CR ends a row too
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
    env.globals["state_icon"] = state_icon
    env.globals["state_label"] = state_label
    return env


def state_icon(result: SelectorResult) -> str:
    """A selector that did not run is only neutral when the catalog expects it (allow_skip)."""
    if result.skip_expected:
        return "⏭️"
    return _STATE_ICON.get(str(result.state), "❌")


def state_label(result: SelectorResult) -> str:
    label = STATE_LABELS.get(str(result.state), str(result.state))
    return f"{label} (expected here)" if result.skip_expected else label


def environments(report: RunReport) -> list[tuple[str, list[str]]]:
    """Each distinct interpreter + framework versions the selectors saw, with the selectors."""
    seen: dict[str, list[str]] = {}
    for result in report.selectors:
        env = result.environment
        if env is None:
            continue
        versions = [f"{name} {env.packages.get(name) or '—'}" for name in ("torch", "tensorflow")]
        tf_cpu = env.packages.get("tensorflow-cpu")
        if tf_cpu and not env.packages.get("tensorflow"):
            versions[1] = f"tensorflow-cpu {tf_cpu}"
        line = f"python {env.python or '?'} ({env.executable or 'unknown interpreter'}) · {' · '.join(versions)}"
        seen.setdefault(line, []).append(result.name)
    return list(seen.items())


def _context(report: RunReport) -> dict:
    alerts = sorted(report.alerts, key=lambda a: (-SEVERITY_RANK[a.severity], a.trigger))
    failures = [(result.name, test) for result in report.selectors for test in result.failures]
    skipping = [result for result in report.selectors if result.skips]
    return {"report": report, "run": report.run, "gate": report.gate, "alerts": alerts, "failures": failures,
            "skipping": skipping, "environments": environments(report)}


def render_markdown(report: RunReport, images: list | None = None) -> str:
    text = _environment(False).get_template("summary.md.j2").render(**_context(report), images=images or [])
    # Markdown is read in terminals too (cat summary.md): no text the tests wrote may carry an
    # escape sequence or a carriage return into it (the template itself has none).
    text = neutralise(text, keep="\n\t")
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
