"""One entry point for an iterative reference reconstruction of a scan (CLI, quality selector,
benchmark): pick the method, fill in the recommended settings, run it within a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ptycho.evaluation import QualityFigures, evaluate_reconstruction, scanned_region
from ptycho.iterative.epie import reconstruct_epie
from ptycho.iterative.poisson_pie import reconstruct_poisson_pie
from ptycho.iterative.solver import Budget, ProgressCallback, ReconstructionResult
from ptycho.raw_data import RawData

__all__ = [
    "METHODS",
    "DEFAULT_ITERATIONS",
    "DEFAULT_MOMENTUM",
    "LOW_DOSE_COUNTS",
    "mean_counts_per_pattern",
    "recommended_alpha",
    "reference_reconstruction",
    "object_in_input_frame",
    "truth_figures",
]

METHODS = ("epie", "poisson-pie")
DEFAULT_ITERATIONS = 30
DEFAULT_MOMENTUM = 0.9
LOW_DOSE_COUNTS = 1e5
"""Below this mean count per pattern the object step is damped to 0.1: an undamped step fits each
pattern's shot noise (measured: amplitude SSIM 0.86 undamped vs 0.91 damped at 1e4 photons)."""

_METHOD_OPTIONS = {"epie": frozenset(), "poisson-pie": frozenset({"step", "cap"})}


def mean_counts_per_pattern(raw: RawData) -> float:
    """The dose the data itself shows: mean total counts per pattern (amplitudes are sqrt(counts))."""
    return float(np.mean(np.sum(raw.diffraction.astype(np.float64) ** 2, axis=(-2, -1))))


def recommended_alpha(raw: RawData) -> float:
    """Object step: 1 (plain ePIE) at high dose, 0.1 below :data:`LOW_DOSE_COUNTS` counts/pattern."""
    return 1.0 if mean_counts_per_pattern(raw) >= LOW_DOSE_COUNTS else 0.1


def reference_reconstruction(
    raw: RawData | str | Path,
    method: str = "epie",
    *,
    iterations: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    alpha: float | None = None,
    momentum: float = DEFAULT_MOMENTUM,
    probe: np.ndarray | None = None,
    update_probe: bool = False,
    probe_step: float = 1.0,
    progress: ProgressCallback | None = None,
    **method_options: Any,
) -> ReconstructionResult:
    """Iterative reconstruction of ``raw`` (a :class:`RawData` or an NPZ path) with ``method``.

    Stops after ``iterations`` sweeps or ``seconds`` of wall time, whichever comes first
    (:data:`DEFAULT_ITERATIONS` sweeps when neither is given). ``alpha`` defaults to
    :func:`recommended_alpha`; ``momentum`` (0.9) speeds up the slow low-frequency phase (0 gives
    textbook ePIE). Poisson PIE also takes ``step`` and ``cap``. The probe is ``raw.probeGuess``
    unless ``probe`` is given, refined only with ``update_probe``.
    """
    if not isinstance(raw, RawData):
        raw = RawData.from_file(raw)
    if method not in METHODS:
        raise ValueError(f"method: invalid value {method!r}; expected one of {', '.join(METHODS)}")
    unknown = set(method_options) - _METHOD_OPTIONS[method]
    if unknown:
        allowed = ", ".join(sorted(_METHOD_OPTIONS[method])) or "none"
        raise ValueError(f"{method}: unknown option(s) {', '.join(sorted(unknown))}; allowed: {allowed}")
    if not (0 <= momentum < 1):
        raise ValueError(f"momentum: expected 0 <= momentum < 1, got {momentum!r}")
    if iterations is None and seconds is None:
        iterations = DEFAULT_ITERATIONS
    budget = Budget(iterations=iterations, seconds=seconds)
    step_size = recommended_alpha(raw) if alpha is None else float(alpha)
    common = dict(alpha=step_size, seed=seed, probe=probe, update_probe=update_probe, probe_step=probe_step,
                  momentum=momentum, progress=progress)
    if method == "epie":
        return reconstruct_epie(raw, budget, **common)
    return reconstruct_poisson_pie(raw, budget, **common, **method_options)


def object_in_input_frame(result: ReconstructionResult, shape: tuple[int, int]) -> np.ndarray:
    """The reconstructed object on a ``shape`` grid indexed like the input positions (undoing the
    canvas offset), e.g. to compare with ``objectGuess`` or a stitched network canvas."""
    off_x, off_y = (int(round(v)) for v in result.offset)
    canvas = result.object[off_y : off_y + shape[0], off_x : off_x + shape[1]]
    out = np.zeros(shape, dtype=np.complex64)
    out[: canvas.shape[0], : canvas.shape[1]] = canvas
    return out


def truth_figures(result: ReconstructionResult, raw: RawData) -> QualityFigures | None:
    """Quality against ``raw.objectGuess`` inside the scanned area, or None without a ground truth."""
    if raw.objectGuess is None:
        return None
    truth = raw.objectGuess
    recon = object_in_input_frame(result, truth.shape)
    return evaluate_reconstruction(recon, truth, scanned_region(raw.positions, truth.shape))
