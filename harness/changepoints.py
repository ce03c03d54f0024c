"""Change points in a recorded series: has the latest stretch of runs shifted from the ones before?

The question asked after every run is an *online* one: are the last ``k`` runs (``k`` from
``min_run_length`` to ``max_run_length``) shifted, in the rule's bad direction, against the
``window`` runs before them? For each ``k`` the score is a two-sample statistic on the
log values (runtimes) or raw values (quality figures):

    z_k = (mean(post_w) - mean(pre_w)) / (scale(pre) * sqrt(1/k + 1/m))

where ``_w`` means winsorised at ``clip`` robust standard deviations (1.4826 MAD) around the
median of the reference window, so a single outlier run can neither fire an alert nor hide one,
and ``scale`` is the standard deviation of the winsorised reference (efficient on normal noise,
bounded on outliers). The largest ``z_k`` over ``k`` is a generalised likelihood-ratio scan
(a mean shift of unknown onset); it fires when it reaches ``significance``, the median of the
last ``k`` runs moved by at least ``min_change`` (relative) from the reference median, and
``agreement`` (75 %) of those runs lie ``agreement_margin`` (0.5) robust standard deviations
beyond it: a sign test beside the mean, so one outlier plus noise is not a change (it halves the
false alarms at 10 % noise, benchmarks/detection.py). The onset it reports is the first of those
runs nearer the new level than the old; the commit range is the sha of the run before it and of
that run.

Why not a library here: ruptures' offline segmentations (Pelt, Binseg, Window with a penalty)
answer "where are the breaks in this whole series", need a penalty calibrated per noise level,
and cost a Python loop per series; benchmarks/detection.py compares them on the same synthetic
histories (detection rate, delay, false alarms and time; docs/regression-detection.md). The
scan here is a few numpy reductions over a (series x runs) matrix: one pass judges 600 tests.

Values are checked before any statistic: NaN, infinite, negative and missing values raise
``InvalidMeasurement`` naming the series and the run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

Direction = Literal["increase", "decrease"]
Transform = Literal["log", "linear"]

# Below this spread the reference is treated as this noisy anyway: a perfectly stable series
# (a deterministic quality figure, a cached step) must not turn a 0.1 % wobble into an alert.
SCALE_FLOOR = {"log": 0.01, "linear": 0.002}


class InvalidMeasurement(ValueError):
    """A value that is not a measurement (NaN, infinite, negative, missing): never fed to statistics."""

    def __init__(self, series: str, run: str | None, value: object, expected: str = "a finite number >= 0") -> None:
        where = f" in run {run}" if run else ""
        super().__init__(f"{series}: value {value!r}{where} is not a measurement (expected {expected})")
        self.series, self.run, self.value = series, run, value


def check_measurement(value: object, series: str, run: str | None = None, *, allow_negative: bool = False) -> float:
    """The value as a float, or ``InvalidMeasurement`` for None, NaN, infinity or (for durations) < 0."""
    if value is None or isinstance(value, bool):
        raise InvalidMeasurement(series, run, value)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidMeasurement(series, run, value) from None
    if not math.isfinite(number) or (number < 0 and not allow_negative):
        raise InvalidMeasurement(series, run, value, "a finite number" if allow_negative else "a finite number >= 0")
    return number


@dataclass(frozen=True)
class ScanSettings:
    """The rule's thresholds and the scan's shape (see the module docstring)."""

    min_change: float = 0.10          # relative change of the median, in the bad direction
    significance: float = 2.7         # z score of the best split
    direction: Direction = "increase"
    transform: Transform = "log"
    min_history: int = 10             # reference runs needed before anything is judged
    window: int = 30                  # reference runs (at most) before the candidate onset
    min_run_length: int = 4           # runs after the onset, at least (one run is never a change)
    max_run_length: int = 8           # runs after the onset, at most (older onsets were judged before)
    clip: float = 3.0                 # winsorising, in robust standard deviations
    agreement: float = 0.75           # share of the runs since the onset beyond the reference median
    agreement_margin: float = 0.5     # ... by this many robust standard deviations

    @property
    def needed(self) -> int:
        """Points a series must have before it can be judged (reference plus the shortest stretch)."""
        return self.min_history + self.min_run_length


@dataclass(frozen=True)
class Shift:
    """A change found in one series: the onset is ``onset`` positions from the series' start."""

    onset: int
    before: float          # median of the reference window (original units)
    after: float           # median of the runs since the onset (original units)
    change: float          # after / before - 1 (linear: relative to |before|)
    score: float           # z of the best split
    runs_after: int        # k

    @property
    def percent(self) -> float:
        return 100.0 * self.change


def _transform(values: np.ndarray, transform: Transform) -> np.ndarray:
    if transform == "log":
        with np.errstate(divide="ignore"):
            return np.log(np.maximum(values, 1e-9))
    return values


def _inverse(values: np.ndarray, transform: Transform) -> np.ndarray:
    return np.exp(values) if transform == "log" else values


def scan(matrix: np.ndarray, settings: ScanSettings) -> tuple[np.ndarray, list[Shift | None]]:
    """Judge every row of ``matrix`` (series x runs, oldest first, NaN-padded on the left).

    Returns (fires, shifts): ``fires`` a bool per row, ``shifts`` the best split of each row that
    passed the magnitude gate (None where none did), fired or not, for the evidence.
    The rows must already be checked measurements; NaN only marks "no run" at the start.
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.ndim != 2:
        raise ValueError(f"scan expects a (series, runs) matrix, got shape {matrix.shape}")
    rows, n = matrix.shape
    fires = np.zeros(rows, dtype=bool)
    shifts: list[Shift | None] = [None] * rows
    if rows == 0 or n < settings.needed:
        return fires, shifts
    y = _transform(matrix, settings.transform)
    sign = 1.0 if settings.direction == "increase" else -1.0
    floor = SCALE_FLOOR[settings.transform]
    best_z = np.full(rows, -np.inf)
    best_k = np.zeros(rows, dtype=int)
    best_center = np.full(rows, np.nan)
    best_after = np.full(rows, np.nan)
    for k in range(settings.min_run_length, min(settings.max_run_length, n - settings.min_history) + 1):
        post = y[:, n - k:]
        pre = y[:, max(0, n - k - settings.window): n - k]
        m = np.sum(~np.isnan(pre), axis=1)
        usable = (m >= settings.min_history) & ~np.isnan(post).any(axis=1)
        if not usable.any():
            continue
        with np.errstate(invalid="ignore"), _quiet_nan_warnings():
            center = _row_medians(pre)
            mad = 1.4826 * _row_medians(np.abs(pre - center[:, None]))
            if settings.transform == "linear":
                row_floor = np.maximum(floor * np.abs(center), 1e-12)
            else:
                row_floor = np.full(rows, floor)
            robust = np.maximum(mad, row_floor)
            low, high = center - settings.clip * robust, center + settings.clip * robust
            pre_w = np.clip(pre, low[:, None], high[:, None])
            post_w = np.clip(post, low[:, None], high[:, None])
            scale = np.maximum(np.nanstd(pre_w, axis=1, ddof=1), row_floor)
            z = sign * (post_w.mean(axis=1) - np.nanmean(pre_w, axis=1)) / (scale * np.sqrt(1.0 / k + 1.0 / np.maximum(m, 1)))
            after = _row_medians(post)
        moved = sign * _relative(after, center, settings.transform) >= settings.min_change
        # A sign test beside the mean: most runs since the onset, not one extreme one, moved.
        beyond = np.sum(sign * (post - center[:, None]) > settings.agreement_margin * robust[:, None], axis=1)
        moved &= beyond >= math.ceil(settings.agreement * k - 1e-9)
        better = usable & moved & (z > best_z)
        best_z = np.where(better, z, best_z)
        best_k = np.where(better, k, best_k)
        best_center = np.where(better, center, best_center)
        best_after = np.where(better, after, best_after)
    found = np.isfinite(best_z)
    fires = found & (best_z >= settings.significance)
    for row in np.flatnonzero(found):
        k, center = int(best_k[row]), float(best_center[row])
        # The scan's shortest stretch may start a run or two early (min_run_length, agreement):
        # the onset is the first run nearer the new level than the old one.
        while k > 2:  # a change is never dated to this run alone
            post = y[row, n - k:]
            level = float(np.median(post))
            if abs(post[0] - center) >= abs(post[0] - level):
                break
            k -= 1
        after_t = float(np.median(y[row, n - k:]))
        shifts[row] = Shift(
            onset=int(n - k), before=float(_inverse(np.array(center), settings.transform)),
            after=float(_inverse(np.array(after_t), settings.transform)),
            change=float(_relative(np.array(after_t), np.array(center), settings.transform)),
            score=float(best_z[row]), runs_after=k,
        )
    return fires, shifts


def _row_medians(values: np.ndarray) -> np.ndarray:
    """Median of each row ignoring NaN (np.nanmedian goes through masked arrays: 20x slower on
    the small rows scanned here). NaN for a row without values."""
    ordered = np.sort(values, axis=1)  # NaN sort last
    count = np.sum(~np.isnan(values), axis=1)
    rows = np.arange(values.shape[0])
    low = np.clip((count - 1) // 2, 0, None)
    high = np.clip(count // 2, 0, values.shape[1] - 1)
    middle = (ordered[rows, low] + ordered[rows, np.minimum(high, np.maximum(count - 1, 0))]) / 2.0
    middle[count == 0] = np.nan
    return middle


def _relative(after: np.ndarray, before: np.ndarray, transform: Transform) -> np.ndarray:
    if transform == "log":
        return np.expm1(after - before)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (after - before) / np.maximum(np.abs(before), 1e-12)


class _quiet_nan_warnings:
    """All-NaN slices (a series too short for this k) are expected and masked by ``usable``."""

    def __enter__(self) -> None:
        import warnings

        self._catcher = warnings.catch_warnings()
        self._catcher.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._catcher.__exit__(*exc)


def detect(values: Sequence[float], settings: ScanSettings) -> Shift | None:
    """One series (oldest first): the shift that fires now, or None."""
    fires, shifts = scan(np.asarray([values], dtype=float), settings)
    return shifts[0] if fires[0] else None


def still_shifted(recent: Sequence[float], before: float, settings: ScanSettings) -> bool:
    """An open change persists while the median of the latest runs stays at least half the
    rule's ``min_change`` away from the level before it, in the bad direction."""
    if not recent:
        return True
    level = float(np.median(np.asarray(recent, dtype=float)))
    sign = 1.0 if settings.direction == "increase" else -1.0
    if settings.transform == "log":
        change = level / before - 1.0 if before > 0 else math.inf
    else:
        change = (level - before) / max(abs(before), 1e-12)
    return sign * change >= settings.min_change / 2.0


def short_sha(sha: str | None) -> str:
    return (sha or "unknown")[:7]
