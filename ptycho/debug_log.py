"""``{output_dir}/train_debug.log`` (brief §3.1): what a training run did, epoch by epoch.

Written only with ``--debug``. One line per event, ``key=value`` pairs after a UTC timestamp, so a
person can read it and ``grep``/``awk`` can slice it; the resolved configuration is one JSON line.
Both backends write it through :class:`TrainDebugLog`, so the two logs read the same.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

__all__ = ["DEBUG_LOG_NAME", "TrainDebugLog"]

DEBUG_LOG_NAME = "train_debug.log"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (tuple, list)):
        return "x".join(str(v) for v in value) if all(isinstance(v, int) for v in value) else json.dumps(value)
    return str(value)


class TrainDebugLog:
    """Append-only debug log of one training run; flushed after every line so a crash keeps it."""

    def __init__(self, output_dir: Path | str, backend: str):
        self.path = Path(output_dir) / DEBUG_LOG_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("w", encoding="utf-8")
        self._start = time.perf_counter()
        self._epoch_start = self._start
        self.line("start", backend=backend)

    def line(self, event: str, **fields: Any) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        parts = [stamp, event] + [f"{k}={_fmt(v)}" for k, v in fields.items() if v is not None]
        self._file.write(" ".join(parts) + "\n")
        self._file.flush()

    def configuration(self, config: Mapping[str, Any]) -> None:
        self._file.write(f"# configuration {json.dumps(config, sort_keys=True, default=str)}\n")
        self._file.flush()

    def data_shapes(self, **shapes: Any) -> None:
        self.line("data", **shapes)

    def epoch_started(self) -> None:
        self._epoch_start = time.perf_counter()

    def epoch(self, epoch: int, train_loss: float | None, intensity_scale: float, learning_rate: float,
              val_loss: float | None = None, steps: int | None = None) -> None:
        now = time.perf_counter()
        self.line(
            "epoch", epoch=epoch, train_loss=train_loss, val_loss=val_loss, intensity_scale=intensity_scale,
            learning_rate=learning_rate, steps=steps, epoch_s=now - self._epoch_start, elapsed_s=now - self._start,
        )
        self._epoch_start = now

    def close(self, **summary: Any) -> None:
        if self._file.closed:
            return
        self.line("end", elapsed_s=time.perf_counter() - self._start, **summary)
        self._file.close()
