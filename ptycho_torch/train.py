"""``python -m ptycho_torch.train``: train a PyTorch PtychoPINN model and save it.

The ``ptycho-train --backend pytorch`` command under the torch package's name (one workflow,
:func:`ptycho.cli.run_train`, through the backend dispatcher). Writes
``{output_dir}/checkpoints/last.ckpt`` (Lightning checkpoint with the four configuration groups as
hyperparameters), ``{output_dir}/manifest.json`` (backend "pytorch") and
``{output_dir}/train_summary.json`` (history, timings, settings).

Exit codes: 0 success; 2 a user's mistake (missing or invalid file, bad value), one line on stderr;
1 an unexpected internal error (with traceback).
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]

PROG = "python -m ptycho_torch.train"


def _parser(prog: str = PROG) -> argparse.ArgumentParser:
    from ptycho.cli import train_parser

    return train_parser(prog, backend=False)


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """``prog``: the command the user typed, for errors."""
    from ptycho.cli import run_train

    return run_train(argv, prog=prog or PROG, backend="pytorch")


if __name__ == "__main__":
    sys.exit(main())
