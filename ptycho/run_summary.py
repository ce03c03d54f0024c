"""What ``ptycho-train`` and ``ptycho-infer`` save and print when done, the same for both backends:
``inference_summary.json`` and one line a person reads (or the summary as JSON with ``--json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_inference_summary(output_dir: Path, *, backend: str, device: str, metadata: dict[str, Any],
                            paths: dict[str, Path], timings: dict[str, float]) -> dict[str, Any]:
    """``inference_summary.json`` in ``output_dir``; returns what it holds."""
    summary = {
        "backend": backend,
        "device": device,
        "n_groups": metadata["n_groups"],
        "canvas_shape": metadata["canvas_shape"],
        "poisson_deviance": metadata.get("poisson_deviance"),
        "outputs": {k: str(v) for k, v in paths.items()},
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
    (Path(output_dir) / "inference_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
    return summary


def inference_line(summary: dict[str, Any], output_dir: Path) -> str:
    height, width = summary["canvas_shape"][:2]
    return (f"reconstructed {summary['n_groups']} groups on {summary['device']} -> {output_dir} "
            f"(canvas {height}x{width}, {summary['timings_s']['total']:.1f} s)")


def train_line(summary: dict[str, Any]) -> str:
    losses = summary["history"]["train_loss"]
    last = f", final loss {losses[-1]:.5g}" if losses else ""
    return (f"trained {summary['epochs']} epoch(s) on {summary['n_groups']} groups ({summary['accelerator']}"
            f"{last}) -> {summary['checkpoint']} in {summary['timings_s']['total']:.1f} s")


def print_summary(summary: dict[str, Any], line: str, *, as_json: bool) -> None:
    """The summary as one JSON line (``--json``) or as the line a person reads."""
    print(json.dumps(summary, sort_keys=True) if as_json else line)
