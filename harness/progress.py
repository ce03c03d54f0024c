"""Live progress of a run: a rich table on a terminal, plain lines otherwise (CI logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from harness.runner import ProcessOutcome, ProgressSink, SelectorPlan
from harness.terminal_text import one_line


def _last_line(path, limit: int = 70) -> str:
    """The last non-empty line of a log, read from its tail only."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - 4096))
            lines = [line for line in handle.read().decode("utf-8", "replace").splitlines() if line.strip()]
    except OSError:
        return ""
    text = one_line(lines[-1].strip()) if lines else ""  # a test's output: shown, never acted on
    return text if len(text) <= limit else text[: limit - 1] + "…"


def outcome_word(outcome: ProcessOutcome) -> str:
    if outcome.start_error:
        return "could not start"
    if outcome.timed_out:
        return "timed out"
    if outcome.interrupted:
        return "interrupted"
    if outcome.signal:
        return f"killed by {outcome.signal}"
    return f"exit {outcome.exit_code}"


class PlainProgress(ProgressSink):
    """One line per start and finish; no cursor tricks, so CI logs stay readable."""

    def __init__(self, stream: TextIO | None = None, total: int = 0) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0

    def _say(self, text: str) -> None:
        print(f"[harness] {one_line(text)}", file=self.stream, flush=True)

    def started(self, plan: SelectorPlan) -> None:
        self._say(f"start  {plan.name}: {' '.join(plan.selector.args)}")

    def finished(self, plan: SelectorPlan, outcome: ProcessOutcome) -> None:
        self.done += 1
        wall = f"{outcome.wall_s:.1f} s" if outcome.wall_s is not None else "-"
        self._say(f"done   {plan.name}: {outcome_word(outcome)} in {wall} ({self.done}/{self.total})")


class SilentProgress(ProgressSink):
    """For --progress none."""


class RichProgress(ProgressSink):
    """A live table: each running selector with its elapsed time and the last line of its log."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=stream or sys.stderr)
        self.total = total
        self.finished_rows: list[tuple[str, str, str]] = []
        self.running: dict[str, tuple[SelectorPlan, float]] = {}
        self._last_render = 0.0
        self.live = Live(self._table(), console=self.console, refresh_per_second=4, transient=False)
        self.live.start()

    def _table(self):
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"harness: {len(self.finished_rows)}/{self.total} selectors done", expand=False)
        table.add_column("selector")
        table.add_column("status")
        table.add_column("time", justify="right")
        table.add_column("last output", overflow="ellipsis", max_width=72)
        for name, status, wall in self.finished_rows:
            table.add_row(name, status, wall, "")
        now = time.monotonic()
        for name, (plan, started) in self.running.items():
            # A Text, not a markup string: "[/]" in a test's output must not be parsed as markup.
            table.add_row(name, "[yellow]running[/]", f"{now - started:.0f} s", Text(_last_line(plan.stdout_path)))
        return table

    def started(self, plan: SelectorPlan) -> None:
        self.running[plan.name] = (plan, time.monotonic())
        self.live.update(self._table())

    def finished(self, plan: SelectorPlan, outcome: ProcessOutcome) -> None:
        self.running.pop(plan.name, None)
        colour = "green" if outcome.exit_code == 0 else "red"
        wall = f"{outcome.wall_s:.1f} s" if outcome.wall_s is not None else "-"
        self.finished_rows.append((plan.name, f"[{colour}]{outcome_word(outcome)}[/]", wall))
        self.live.update(self._table())

    def tick(self, running) -> None:
        now = time.monotonic()
        if now - self._last_render >= 0.25:
            self._last_render = now
            self.live.update(self._table())

    def close(self) -> None:
        self.live.stop()


def make_progress(mode: str, total: int, stream: TextIO | None = None) -> ProgressSink:
    """``auto`` picks rich on a terminal and plain lines elsewhere."""
    stream = stream or sys.stderr
    if mode == "none":
        return SilentProgress()
    if mode == "rich" or (mode == "auto" and stream.isatty()):
        return RichProgress(total, stream)
    return PlainProgress(stream, total)
