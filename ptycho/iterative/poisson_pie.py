"""Poisson PIE: a capped gradient step on the Poisson likelihood of the counts.

For ``L = sum(|Psi|^2 - k log |Psi|^2)`` the gradient with respect to ``Psi*`` is
``Psi (1 - k / |Psi|^2)``; a step ``mu`` gives ``Psi (1 - mu + mu r)`` with ``r = k / |Psi|^2``.
With ``mu = 1/2`` this agrees with ePIE's modulus replacement to first order near the solution;
away from it, it follows the likelihood of the counts the detector actually records (the
network's training loss) instead of a least-squares fit of amplitudes. ``r`` is capped so that a
pixel the model thinks is dark but which caught a photon cannot throw the update off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ptycho.iterative.solver import Budget, ProgressCallback, ReconstructionResult, run_pie
from ptycho.raw_data import RawData

__all__ = ["PoissonGradientStep", "reconstruct_poisson_pie"]

NLL_EPS = 1e-6  # as in ptycho.physics.poisson_nll


@dataclass(frozen=True)
class PoissonGradientStep:
    """Far-field gradient step on the Poisson likelihood; cost: the mean Poisson negative
    log-likelihood per pixel, :func:`ptycho.physics.poisson_nll` (the network's loss)."""

    step: float = 0.5
    cap: float = 4.0
    name: str = "poisson-pie"
    cost_name: str = "poisson_nll"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.step) and 0 < self.step <= 1):
            raise ValueError(f"step: expected 0 < step <= 1, got {self.step!r}")
        if not (math.isfinite(self.cap) and self.cap > 1):
            raise ValueError(f"cap: expected a finite cap > 1, got {self.cap!r}")

    def revise(self, far: np.ndarray, modulus: np.ndarray, amplitude: np.ndarray, counts: np.ndarray) -> np.ndarray:
        ratio = np.minimum(counts / np.maximum(modulus * modulus, 1e-12), self.cap)
        return far * ((1 - self.step) + self.step * ratio)

    def cost_sum(self, modulus: np.ndarray, amplitude: np.ndarray, counts: np.ndarray) -> float:
        # ptycho.physics.poisson_nll (the network's training loss), summed, in float32 passes
        lam = modulus * modulus
        return float(np.sum(lam, dtype=np.float64) - np.sum(counts * np.log(lam + NLL_EPS), dtype=np.float64))

    def cost_norm(self, amplitude: np.ndarray, counts: np.ndarray) -> float:
        return float(counts.size)


def reconstruct_poisson_pie(
    raw: RawData,
    budget: Budget,
    *,
    alpha: float = 1.0,
    step: float = 0.5,
    cap: float = 4.0,
    seed: int = 0,
    probe: np.ndarray | None = None,
    update_probe: bool = False,
    probe_step: float = 1.0,
    momentum: float = 0.0,
    progress: ProgressCallback | None = None,
) -> ReconstructionResult:
    """Poisson PIE with object step ``alpha``, far-field step ``step`` and ratio cap ``cap``."""
    return run_pie(
        raw, PoissonGradientStep(step=step, cap=cap), budget, alpha=alpha, seed=seed, probe=probe,
        update_probe=update_probe, probe_step=probe_step, momentum=momentum, progress=progress,
        settings={"step": float(step), "cap": float(cap)},
    )
