"""Iterative ptychographic reconstruction (ePIE, Poisson PIE): the network's absolute yardstick.

On simulated data the network is scored against the ground truth; on experimental data the
field's reference is an iterative reconstruction of the same scan. This package provides both
the solvers (numpy, vectorised over sparse sets of positions, built on :mod:`ptycho.physics`)
and the registration that compares a network reconstruction with the reference.

Entry points: :func:`reference_reconstruction` and :func:`compare_to_reference`.
"""

from ptycho.iterative.epie import reconstruct_epie
from ptycho.iterative.poisson_pie import reconstruct_poisson_pie
from ptycho.iterative.reference import (
    DEFAULT_ITERATIONS,
    METHODS,
    mean_counts_per_pattern,
    object_in_input_frame,
    recommended_alpha,
    reference_reconstruction,
    truth_figures,
)
from ptycho.iterative.registration import Registration, compare_to_reference, register_to_reference
from ptycho.iterative.solver import Budget, ReconstructionResult, SweepReport

__all__ = [
    "METHODS",
    "DEFAULT_ITERATIONS",
    "Budget",
    "ReconstructionResult",
    "SweepReport",
    "Registration",
    "reference_reconstruction",
    "reconstruct_epie",
    "reconstruct_poisson_pie",
    "mean_counts_per_pattern",
    "recommended_alpha",
    "register_to_reference",
    "compare_to_reference",
    "object_in_input_frame",
    "truth_figures",
]
