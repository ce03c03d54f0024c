"""``python -m harness`` is the ``harness`` console script."""

from harness.cli import run_and_exit

run_and_exit()
