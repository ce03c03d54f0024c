"""The loop every PIE-family solver shares: batches, budget, object/probe updates, cost history.

The algorithms differ only in what they do to the far field (:class:`FourierUpdate`): ePIE
replaces its modulus by the measured amplitude, Poisson PIE takes a capped gradient step on the
Poisson likelihood. Everything else lives here once.

Sequential PIE updates one position at a time, which in numpy is a Python loop over ~1000
positions per sweep. Here the positions are split once into *sparse sets* (no two illuminated
areas in a set overlap, found by greedy colouring), and a whole set is updated at once: since the
updates touch disjoint pixels, that is exactly sequential PIE in a different (seeded, reshuffled
every sweep) order, vectorised.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
from scipy.spatial import cKDTree

from ptycho.iterative.operators import ScanOperator, Window, canvas_for_scan, far_field, near_field, to_fft_order
from ptycho.raw_data import RawData

__all__ = [
    "Budget",
    "FourierUpdate",
    "ReconstructionResult",
    "ProgressCallback",
    "SweepReport",
    "probe_window",
    "sparse_batches",
    "run_pie",
]



@dataclass(frozen=True)
class SweepReport:
    """What a progress callback sees after each full sweep. ``object`` is the live estimate (read
    it, copy it, do not modify it); time spent in the callback is not counted in ``seconds`` nor
    against the budget, so a benchmark may score the estimate on the way."""

    iteration: int
    seconds: float
    cost: float
    object: np.ndarray


ProgressCallback = Callable[[SweepReport], None]

MAX_BATCH = 256


@dataclass(frozen=True)
class Budget:
    """When to stop: after ``iterations`` full sweeps or ``seconds`` of wall time, whichever
    comes first (at least one must be set). A time budget may end a sweep part way; the updates
    made so far are kept."""

    iterations: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.iterations is None and self.seconds is None:
            raise ValueError("budget: set iterations or seconds (or both)")
        if self.iterations is not None and (isinstance(self.iterations, bool) or int(self.iterations) != self.iterations or self.iterations < 1):
            raise ValueError(f"iterations: expected an integer >= 1, got {self.iterations!r}")
        if self.seconds is not None and not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds: expected a finite number > 0, got {self.seconds!r}")


class FourierUpdate(Protocol):
    """What one PIE variant does in Fourier space (all arrays in FFT order, shape (B, N, N))."""

    name: str
    cost_name: str

    def revise(self, far: np.ndarray, modulus: np.ndarray, amplitude: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """The revised far field given the model ``far`` (its ``modulus``) and the measurement."""

    def cost_sum(self, modulus: np.ndarray, amplitude: np.ndarray, counts: np.ndarray) -> float:
        """This method's objective summed over the batch (normalised in :meth:`cost_norm`)."""

    def cost_norm(self, amplitude: np.ndarray, counts: np.ndarray) -> float:
        """Divisor turning the sweep's summed cost into the reported figure."""


@dataclass
class ReconstructionResult:
    """A reconstruction with its history. ``object`` lives on a canvas whose pixel (r, c) is
    object pixel (r, c) of the input positions plus ``offset`` (zero unless a patch would have
    started off the canvas)."""

    method: str
    object: np.ndarray
    probe: np.ndarray
    positions: np.ndarray
    offset: np.ndarray
    iterations: float
    seconds: float
    history_iteration: np.ndarray
    history_seconds: np.ndarray
    history_cost: np.ndarray
    cost_name: str
    seed: int
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def cost(self) -> np.ndarray:
        return self.history_cost

    def metadata(self) -> dict[str, Any]:
        """JSON-able summary (no arrays but the short history)."""
        return {
            "method": self.method,
            "iterations": float(self.iterations),
            "seconds": float(self.seconds),
            "seed": int(self.seed),
            "cost_name": self.cost_name,
            "final_cost": float(self.history_cost[-1]) if self.history_cost.size else None,
            "position_offset_xy": [float(v) for v in self.offset],
            "settings": self.settings,
        }


def probe_window(probe: np.ndarray, threshold: float = 1e-3, margin: int = 2) -> Window:
    """The box of the patch where ``|P|^2`` exceeds ``threshold`` of its maximum, grown by
    ``margin`` pixels (room for an updated probe) and clipped to the patch."""
    power = np.abs(probe) ** 2
    rows, cols = np.nonzero(power > threshold * power.max())
    n_rows, n_cols = power.shape
    return (
        slice(max(int(rows.min()) - margin, 0), min(int(rows.max()) + 1 + margin, n_rows)),
        slice(max(int(cols.min()) - margin, 0), min(int(cols.max()) + 1 + margin, n_cols)),
    )


def sparse_batches(positions: np.ndarray, width: float, rng: np.random.Generator, max_batch: int = MAX_BATCH) -> list[np.ndarray]:
    """Split positions into sets in which no two ``width`` x ``width`` boxes overlap (two
    positions share a set only if they are more than ``width`` apart along x or y), by greedy
    colouring in a seeded random order; sets larger than ``max_batch`` are split (they stay
    sparse)."""
    positions = np.asarray(positions, dtype=np.float64)
    count = positions.shape[0]
    neighbours = cKDTree(positions).query_ball_point(positions, r=float(width), p=np.inf)
    colour = np.full(count, -1, dtype=np.int64)
    for i in rng.permutation(count):
        taken = set(colour[neighbours[i]].tolist())
        c = 0
        while c in taken:
            c += 1
        colour[i] = c
    batches: list[np.ndarray] = []
    for c in range(int(colour.max()) + 1):
        members = np.flatnonzero(colour == c)
        for start in range(0, members.size, max_batch):
            batches.append(members[start : start + max_batch])
    return batches


def _scaled_probe(probe: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The probe rescaled so a unit object predicts the measured mean counts per pattern (the
    data's absolute scale is unknown on experimental data; the object then comes out ~1)."""
    power = float(np.sum(np.abs(probe) ** 2))
    mean_counts = float(np.mean(np.sum(counts, axis=(-2, -1), dtype=np.float64)))
    if not power > 0:
        raise ValueError("probe: the probe is zero everywhere")
    if not mean_counts > 0:
        raise ValueError("diffraction: every pattern is zero; nothing to reconstruct")
    return (probe * np.sqrt(mean_counts / power)).astype(np.complex64)


def run_pie(
    raw: RawData,
    update: FourierUpdate,
    budget: Budget,
    *,
    alpha: float,
    seed: int = 0,
    probe: np.ndarray | None = None,
    update_probe: bool = False,
    probe_step: float = 1.0,
    momentum: float = 0.0,
    progress: ProgressCallback | None = None,
    settings: dict[str, Any] | None = None,
) -> ReconstructionResult:
    """Reconstruct ``raw`` with the PIE variant ``update``.

    ``probe`` defaults to ``raw.probeGuess`` (known probe), rescaled to the data's counts;
    ``alpha`` is the object step (1 is plain ePIE); ``probe_step`` the probe step when
    ``update_probe`` (the probe stays inside the window its initial support defines);
    ``momentum`` > 0 adds mPIE-style momentum between sweeps. The object starts at 1.
    Deterministic for a seed when stopped by ``budget.iterations``.
    """
    start = time.perf_counter()
    paused = 0.0  # seconds spent in the progress callback, excluded from the clock

    def clock() -> float:
        return time.perf_counter() - start - paused

    if not (math.isfinite(alpha) and 0 < alpha <= 2):
        raise ValueError(f"alpha: expected 0 < alpha <= 2, got {alpha!r}")
    if not (math.isfinite(probe_step) and 0 < probe_step <= 2):
        raise ValueError(f"probe_step: expected 0 < probe_step <= 2, got {probe_step!r}")
    if not (math.isfinite(momentum) and 0 <= momentum < 1):
        raise ValueError(f"momentum: expected 0 <= momentum < 1, got {momentum!r}")
    n = raw.N
    initial_probe = raw.probeGuess if probe is None else np.asarray(probe)
    if initial_probe.shape != (n, n):
        raise ValueError(f"probe: expected shape ({n}, {n}) matching the patterns, got {initial_probe.shape}")
    rng = np.random.default_rng(seed)
    truth_shape = raw.objectGuess.shape if raw.objectGuess is not None else None
    shape, offset = canvas_for_scan(raw.positions, n, min_shape=truth_shape)
    positions = raw.positions + offset
    amplitude = to_fft_order(raw.diffraction.astype(np.float32))
    counts = amplitude**2
    full_probe = _scaled_probe(initial_probe.astype(np.complex64), counts)
    window = probe_window(full_probe)
    operator = ScanOperator(positions, n, shape, window)
    lit = full_probe[window].copy()  # the probe inside the window; zero outside it by construction
    height, width = lit.shape
    # footprints are (h+1) x (w+1) pixels: positions further apart than that never share a pixel
    batches = sparse_batches(positions, max(height, width) + 1, rng)
    obj = np.ones(shape, dtype=np.complex64)
    velocity = np.zeros_like(obj) if momentum else None
    previous = obj.copy() if momentum else None
    cost_norm = update.cost_norm(amplitude, counts)

    hist_it: list[float] = []
    hist_t: list[float] = []
    hist_cost: list[float] = []
    sweeps_done = 0
    visited = 0
    out_of_time = False
    while budget.iterations is None or sweeps_done < budget.iterations:
        if velocity is not None and sweeps_done > 0:
            # mPIE-style momentum, applied as a sweep starts so reports show the plain PIE estimate
            velocity *= momentum
            velocity += obj - previous
            obj += momentum * velocity
            previous[...] = obj
        sweep_cost = 0.0
        visited = 0
        for b in rng.permutation(len(batches)):
            sel = batches[b]
            patches = operator.extract(obj, sel)
            psi = np.zeros((sel.size, n, n), dtype=np.complex64)
            psi[:, window[0], window[1]] = lit * patches
            far = far_field(psi)
            modulus = np.abs(far)
            sweep_cost += update.cost_sum(modulus, amplitude[sel], counts[sel])
            revised = near_field(update.revise(far, modulus, amplitude[sel], counts[sel]))
            delta = revised[:, window[0], window[1]] - psi[:, window[0], window[1]]
            object_step = alpha / float(np.max(lit.real**2 + lit.imag**2))
            operator.add_adjoint(obj, (object_step * np.conj(lit)) * delta, sel)
            if update_probe:
                patch_power = np.sum(patches.real**2 + patches.imag**2, axis=0)
                step = np.sum(np.conj(patches) * delta, axis=0) / (patch_power + 1e-3 * float(patch_power.max()))
                lit = (lit + probe_step * step).astype(np.complex64)
            visited += sel.size
            if budget.seconds is not None and clock() >= budget.seconds:
                out_of_time = True
                break
        fraction = visited / operator.n_positions
        if out_of_time and fraction < 1:
            if visited:
                hist_it.append(sweeps_done + fraction)
                hist_t.append(clock())
                hist_cost.append(sweep_cost / (cost_norm * fraction))
            break
        sweeps_done += 1
        elapsed = clock()
        hist_it.append(float(sweeps_done))
        hist_t.append(elapsed)
        hist_cost.append(sweep_cost / cost_norm)
        if progress is not None:
            before = time.perf_counter()
            progress(SweepReport(sweeps_done, elapsed, hist_cost[-1], obj))
            paused += time.perf_counter() - before
        if out_of_time:
            break
    total = clock()
    current_probe = np.zeros((n, n), dtype=np.complex64)
    current_probe[window] = lit
    return ReconstructionResult(
        method=update.name,
        object=obj,
        probe=current_probe,
        positions=positions,
        offset=offset,
        iterations=hist_it[-1] if hist_it else 0.0,
        seconds=total,
        history_iteration=np.asarray(hist_it),
        history_seconds=np.asarray(hist_t),
        history_cost=np.asarray(hist_cost),
        cost_name=update.cost_name,
        seed=int(seed),
        settings={"alpha": float(alpha), "update_probe": bool(update_probe), "probe_step": float(probe_step),
                  "momentum": float(momentum),
                  "batches": len(batches),
                  "window": [window[0].start, window[0].stop, window[1].start, window[1].stop], **(settings or {})},
    )
