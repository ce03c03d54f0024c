"""Train, then reconstruct the test scan: the workflow behind ``run_cdi_example`` (TensorFlow) and
``run_cdi_example_torch`` (PyTorch), written once over :class:`ptycho.backend_interface.Backend`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ptycho.backend_interface import Backend, TrainingOptions
from ptycho.config.config import TrainingConfig
from ptycho.raw_data import RawData
from ptycho.workflows.grouping import ensure_raw_data

__all__ = ["train_and_reconstruct"]


def train_and_reconstruct(
    backend: Backend,
    train_data: RawData | Path | str,
    test_data: RawData | Path | str | None,
    config: TrainingConfig,
    options: TrainingOptions,
    *,
    do_stitching: bool = False,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train with ``backend``, then (with ``do_stitching`` and test data) reconstruct the whole
    test scan: ``(amplitude, phase, results)``; ``amplitude`` and ``phase`` are None without
    stitching.

    ``results`` is :meth:`Backend.train`'s, with ``backend`` and, after stitching,
    ``obj_tensor_full`` (complex object), ``reconstruction``, ``global_offsets`` (every stitched
    patch position), ``recon_amp``, ``recon_phase``, ``poisson_deviance``, ``reassembly_timings``
    and ``test_container`` (the grouped test scan).
    """
    train_raw = ensure_raw_data(train_data, "train_data")
    test_raw = ensure_raw_data(test_data, "test_data")
    if train_raw is None:
        raise ValueError("train_data: required for training")
    results = backend.train(train_raw, test_raw, config, options)
    results["backend"] = backend.name
    amplitude = phase = None
    if do_stitching and test_raw is not None:
        timings: dict[str, float] = {}
        recon, grouped = backend.reconstruct(
            results["model"], test_raw, neighbor_count=results["config"].neighbor_count, flip_x=flip_x, flip_y=flip_y,
            transpose=transpose, M=M, timings=timings,
        )
        amplitude, phase = recon.amplitude, recon.phase
        results.update(
            obj_tensor_full=recon.obj,
            reconstruction=recon,
            global_offsets=recon.positions,
            recon_amp=amplitude,
            recon_phase=phase,
            poisson_deviance=recon.metadata["poisson_deviance"],
            reassembly_timings=timings,
            test_container=grouped,
        )
    return amplitude, phase, results
