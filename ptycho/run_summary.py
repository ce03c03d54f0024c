"""What ``ptycho-train`` and ``ptycho-infer`` save and print when done, the same for both backends:
``inference_summary.json`` and one line a person reads (or the summary as JSON with ``--json``),
or, for a user's mistake, one line and exit 2."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ptycho.cli_arguments import UsageError


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


def finish(prog: str, work: Callable[[], dict[str, Any] | None], line: Callable[[dict[str, Any]], str], *,
           as_json: bool) -> int:
    """Run a command's ``work`` and say how it went: its summary and exit 0 (nothing printed when
    ``work`` returns None: a process that is not rank zero), or, for a user's mistake (a flag's
    value, the data contract, a model artifact, a file), ``<prog>: error: ...`` and exit 2."""
    from ptycho.model_manifest import ModelArtifactError  # covers BackendMismatchError, bad hyperparameters
    from ptycho.raw_data import DataContractError

    try:
        summary = work()
    except (UsageError, DataContractError, ModelArtifactError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if summary is not None:
        print_summary(summary, line(summary), as_json=as_json)
    return 0
