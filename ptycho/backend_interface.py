"""The one interface both backends implement, and the values that cross it.

The workflows are written once against :class:`Backend`: train-then-reconstruct
(:func:`ptycho.workflows.train_and_reconstruct.train_and_reconstruct`, behind ``run_cdi_example`` and
``run_cdi_example_torch``) and the ``ptycho-train`` / ``ptycho-infer`` commands (:mod:`ptycho.cli`).
Each backend implements it once, as a thin adapter over its own functions:

- ``tensorflow``: :class:`ptycho.tf_backend.workflows.components.TensorFlowBackend` (Keras model, ``wts.h5.zip``);
- ``pytorch``: :class:`ptycho_torch.workflows.components.TorchBackend` (Lightning,
  ``checkpoints/last.ckpt`` + ``manifest.json``).

A caller gets an adapter from the dispatcher, :func:`ptycho.workflows.backend_selector.select_backend`,
which first syncs the legacy ``params.cfg`` (CONFIG-001) and raises :data:`TORCH_UNAVAILABLE_MESSAGE`
when the PyTorch backend is asked for without torch (POLICY-001). The adapters take N, gridsize and
the neighbour count from the configs they are given, never from ``params.cfg``.

This module imports neither TensorFlow nor torch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # pragma: no cover - types only
    from ptycho.config.config import InferenceConfig, TrainingConfig
    from ptycho.raw_data import GroupedData, RawData
    from ptycho.workflows.reconstruction import Reconstruction

__all__ = ["TORCH_UNAVAILABLE_MESSAGE", "TrainingOptions", "LoadedModel", "Backend"]

# The brief's §1.3 text (POLICY-001), word for word: the dispatcher raises it, and so does importing
# ``ptycho_torch`` without torch. Defined here because this module loads without either framework.
TORCH_UNAVAILABLE_MESSAGE = (
    "PyTorch backend selected but torch module unavailable.\n"
    "Install PyTorch: pip install torch>=2.2\n"
    "See docs/workflows/pytorch.md for installation guidance."
)


@dataclass(frozen=True)
class TrainingOptions:
    """How (not what) to train: device, seeding, output chrome. Not part of the model, not saved
    with it. The TensorFlow backend trains on one device (``devices`` 1, ``strategy`` auto)."""

    accelerator: str = "cpu"  # cpu, cuda, gpu, or auto (a visible GPU, else the CPU)
    devices: int = 1
    strategy: str = "auto"
    seed: int = 42
    progress: bool | None = None  # None: only when stderr is a terminal and not under CI
    csv_logger: bool = False  # per-epoch metrics in {output_dir}/logs
    val_images: int = 64  # validation groups per epoch when test data are given (0: none)
    # Intra-op CPU threads (0: the framework's default). One by default: on a shared machine more
    # threads mostly contend (measured: a torch step 3-12x slower on 2 loaded cores).
    num_threads: int = 1
    debug: bool = False  # write {output_dir}/train_debug.log (brief §3.1)
    save: bool = True  # write the model into config.output_dir

    def show_progress(self) -> bool:
        if self.progress is not None:
            return self.progress
        return sys.stderr.isatty() and not os.environ.get("CI")


@dataclass
class LoadedModel:
    """A saved model, loaded for reconstruction."""

    model: Any  # what Backend.reconstruct takes: the Keras model or the torch network (eval mode)
    config: "InferenceConfig"  # as saved: the model's N and gridsize, the neighbour count it was trained with
    checkpoint: Path  # the file the weights came from
    manifest: dict[str, Any]
    device: Any  # where the model runs, in the backend's terms (a TensorFlow device string, a torch.device)
    device_label: str  # the same as reports show it: "cpu", "gpu" (TensorFlow), "cuda" (torch)
    saved: dict[str, Any] = field(default_factory=dict)  # the legacy parameters saved with the model


class Backend(Protocol):
    """Train, load, reconstruct: what a workflow needs of a backend (saving is part of training:
    the Lightning checkpoint is written by the training loop)."""

    name: str  # 'tensorflow' or 'pytorch' (``results['backend']``)
    # Modules only training loads, which a command imports up front to time start-up apart from training.
    training_imports: tuple[str, ...]

    def train(
        self, train_data: "RawData", test_data: "RawData | None", config: "TrainingConfig", options: TrainingOptions
    ) -> dict[str, Any]:
        """Group the data with ``config``'s N, gridsize and neighbour count, fit, and (with
        ``options.save``) save the model into ``config.output_dir``.

        Returns at least ``config`` (N resolved from the data), ``model`` (what :meth:`reconstruct`
        takes), ``models`` (``diffraction_to_obj``), ``history`` (per-epoch ``train_loss``,
        ``val_loss`` or None), ``checkpoint_path`` (None when not saved), ``epochs``,
        ``global_step``, ``train_container`` / ``test_container`` (GroupedData), ``train_data`` /
        ``test_data`` (RawData), ``timings`` (seconds: ``grouping``, ``training``,
        ``checkpoint``), ``accelerator`` ('cpu' or 'gpu'), ``devices``, ``strategy`` and
        ``is_global_zero`` (False on the other ranks of a multi-process run). A scan that cannot
        be grouped as configured raises ``GroupingError`` (a ValueError naming the file)."""
        ...

    def load(self, model_path: Path, accelerator: str = "cpu", num_threads: int = 1) -> LoadedModel:
        """Load this backend's model from ``model_path`` (its training directory or the file
        itself). An artifact of the other backend raises ``BackendMismatchError``."""
        ...

    def reconstruct(
        self,
        model: Any,
        raw: "RawData",
        *,
        neighbor_count: int,
        n_images: int | None = None,
        seed: int = 0,
        batch_size: int = 256,
        flip_x: bool = False,
        flip_y: bool = False,
        transpose: bool = False,
        M: int | None = None,
        timings: dict[str, float] | None = None,
        with_deviance: bool = True,
        device: Any = None,
    ) -> "tuple[Reconstruction, GroupedData]":
        """Group ``raw`` with the model's N and gridsize and ``neighbor_count``, predict, stitch.
        ``device``: where to run, as in :attr:`LoadedModel.device` (None: where the model is).
        Grouping or canvas limits the request runs into raise a ValueError naming them."""
        ...
