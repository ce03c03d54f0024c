"""ePIE (Maiden & Rodenburg 2009): replace the far field's modulus by the measured amplitude.

The object step ``alpha`` is 1 in the original; at low dose a damped step (0.1) averages the
Poisson noise over many overlapping updates instead of fitting each pattern exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptycho.iterative.solver import Budget, ProgressCallback, ReconstructionResult, run_pie
from ptycho.raw_data import RawData

__all__ = ["ModulusReplacement", "reconstruct_epie"]


@dataclass(frozen=True)
class ModulusReplacement:
    """Project the far field onto the measured modulus; cost: relative amplitude error
    ``sum((|Psi| - sqrt(k))^2) / sum(k)``."""

    name: str = "epie"
    cost_name: str = "relative_amplitude_error"

    def revise(self, far: np.ndarray, modulus: np.ndarray, amplitude: np.ndarray, counts: np.ndarray) -> np.ndarray:
        return far * (amplitude / np.maximum(modulus, 1e-12))

    def cost_sum(self, modulus: np.ndarray, amplitude: np.ndarray, counts: np.ndarray) -> float:
        return float(np.sum((modulus - amplitude) ** 2, dtype=np.float64))

    def cost_norm(self, amplitude: np.ndarray, counts: np.ndarray) -> float:
        return float(np.sum(counts, dtype=np.float64)) or 1.0


def reconstruct_epie(
    raw: RawData,
    budget: Budget,
    *,
    alpha: float = 1.0,
    seed: int = 0,
    probe: np.ndarray | None = None,
    update_probe: bool = False,
    probe_step: float = 1.0,
    momentum: float = 0.0,
    progress: ProgressCallback | None = None,
) -> ReconstructionResult:
    """ePIE with object step ``alpha`` (known probe unless ``update_probe``)."""
    return run_pie(
        raw, ModulusReplacement(), budget, alpha=alpha, seed=seed, probe=probe,
        update_probe=update_probe, probe_step=probe_step, momentum=momentum, progress=progress,
    )
