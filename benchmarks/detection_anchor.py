"""The anchor of benchmarks/detection.py: e-divisive at its defaults, used online.

Runs in its own virtual environment (signal-processing-algorithms pins numpy < 2, which the
harness cannot share):

    python3 -m venv /tmp/anchor && /tmp/anchor/bin/pip install signal-processing-algorithms==2.1.6
    python benchmarks/detection.py --anchor-python /tmp/anchor/bin/python

Reads {"series": [[...], ...], "start": N} and writes {"starts": [[run, ...], ...]}: for every
run t >= start, e-divisive (pvalue 0.05, 100 permutations, its defaults) over the runs so far (the
last 50); a run raises an alarm when a change point is reported that is new (more than 3 runs
from the last one alarmed), within the last 10 runs, with the level after it higher.
"""

from __future__ import annotations

import json
import sys

import numpy as np
from signal_processing_algorithms.energy_statistics.energy_statistics import e_divisive

WINDOW, RECENT, SEED = 50, 10, 1


def starts_of(values: list[float], start: int) -> list[int]:
    np.random.seed(SEED)  # the permutation test draws from numpy's global generator
    found, last = [], -100
    for t in range(start, len(values) + 1):
        offset = max(0, t - WINDOW)
        window = np.log(np.asarray(values[offset:t], dtype=float))
        for point in e_divisive(window, pvalue=0.05, permutations=100):
            if point < len(window) - RECENT or abs(offset + point - last) <= 3:
                continue
            if np.median(window[point:]) > np.median(window[:point]):
                found.append(t - 1)
                last = offset + point
                break
    return found


def main() -> int:
    source, target = sys.argv[1], sys.argv[2]
    data = json.loads(open(source, encoding="utf-8").read())
    result = {"starts": [starts_of(values, data["start"]) for values in data["series"]]}
    with open(target, "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
