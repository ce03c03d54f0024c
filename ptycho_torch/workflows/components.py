"""Training and reconstruction workflows of the PyTorch backend (brief §1.4).

``run_cdi_example_torch`` is what the backend dispatcher calls for ``backend='pytorch'``: it trains
with Lightning and, when asked, stitches a reconstruction, returning ``(amplitude, phase, results)``
like the TensorFlow path. ``_train_with_lightning`` builds the Trainer: the CPU unless a GPU was
asked for (``CUDA_VISIBLE_DEVICES=""`` always means the CPU), deterministic seeding,
``ModelCheckpoint(save_last=True)`` writing ``{output_dir}/checkpoints/last.ckpt``, no logger or a
CSV one, a progress bar only on a terminal. After training the bundle's ``manifest.json`` is
written beside the checkpoint.

:class:`TorchBackend` is this backend's implementation of :class:`ptycho.backend_interface.Backend`
(a thin adapter over the functions below); ``run_cdi_example_torch`` is the shared
:func:`ptycho.workflows.train_and_reconstruct.train_and_reconstruct` over it. Grouping takes N,
gridsize and the neighbour count from the configs, not from ``params.cfg``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ptycho.backend_interface import LoadedModel, TrainingOptions
from ptycho.config.config import InferenceConfig, TrainingConfig, legacy_items
from ptycho.model_manifest import TORCH_CHECKPOINT
from ptycho.raw_data import GroupedData, RawData
from ptycho.workflows.grouping import GroupingError, ensure_raw_data, group_for_training, training_inputs
from ptycho.workflows.train_and_reconstruct import train_and_reconstruct
from ptycho_torch.config_bridge import to_hyperparameters
from ptycho_torch.dataloader import grouped_loader

__all__ = [
    "TorchExecution",
    "ensure_raw_data",
    "group_for_training",
    "GroupingError",
    "_train_with_lightning",
    "train_cdi_model_torch",
    "_reassemble_cdi_image_torch",
    "run_cdi_example_torch",
    "TorchBackend",
    "BACKEND",
]

log = logging.getLogger(__name__)

VALID_ACCELERATORS = ("cpu", "cuda", "gpu", "auto")
VALID_STRATEGIES = ("auto", "ddp", "ddp_spawn")


@dataclass(frozen=True)
class TorchExecution:
    """How (not what) to train: devices, seeding, output chrome. Not part of the model."""

    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"
    seed: int = 42
    progress_bar: bool | None = None  # None: only when stderr is a terminal and not under CI
    csv_logger: bool = False
    val_images: int = 64  # validation groups per epoch when test data are given (0: no validation)
    deterministic: bool = True
    # Intra-op CPU threads during training (0: torch's default). One by default: these small
    # convolutions gain little from a second thread, and on a shared CI machine oversubscribed
    # OpenMP threads made a training step 3-12x slower (measured, 2 cores under load).
    num_threads: int = 1
    # Write {output_dir}/train_debug.log (brief §3.1): per-epoch loss, intensity scale, learning
    # rate, timings, data shapes and the resolved configuration.
    debug: bool = False

    def __post_init__(self) -> None:
        if self.accelerator not in VALID_ACCELERATORS:
            raise ValueError(f"accelerator: invalid value {self.accelerator!r}; expected one of {', '.join(VALID_ACCELERATORS)}")
        if isinstance(self.devices, bool) or not isinstance(self.devices, int) or self.devices < 1:
            raise ValueError(f"devices: invalid value {self.devices!r}; expected an integer >= 1")
        if self.strategy not in VALID_STRATEGIES:
            raise ValueError(f"strategy: invalid value {self.strategy!r}; expected one of {', '.join(VALID_STRATEGIES)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: invalid value {self.seed!r}; expected an integer >= 0")
        if self.val_images < 0:
            raise ValueError(f"val_images: invalid value {self.val_images!r}; expected an integer >= 0")
        if isinstance(self.num_threads, bool) or not isinstance(self.num_threads, int) or self.num_threads < 0:
            raise ValueError(f"num_threads: invalid value {self.num_threads!r}; expected an integer >= 0 (0: torch's default)")

    def resolved_accelerator(self) -> str:
        """``cpu`` or ``gpu``. A GPU only when asked for and visible; asking for one that is not
        visible is an error, never a silent fallback either way."""
        if self.accelerator == "cpu":
            return "cpu"
        visible = torch.cuda.is_available()
        if self.accelerator == "auto":
            return "gpu" if visible else "cpu"
        if not visible:
            raise ValueError(
                f"accelerator: {self.accelerator!r} requested but no CUDA device is visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!r})"
            )
        return "gpu"

    def show_progress(self) -> bool:
        if self.progress_bar is not None:
            return self.progress_bar
        return sys.stderr.isatty() and not os.environ.get("CI")


def _callbacks_module():
    import lightning.pytorch as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    class TimedModelCheckpoint(ModelCheckpoint):
        """ModelCheckpoint that adds up the seconds spent writing checkpoints."""

        seconds = 0.0

        def _save_checkpoint(self, trainer, filepath):  # noqa: ANN001 - Lightning's signature
            start = time.perf_counter()
            super()._save_checkpoint(trainer, filepath)
            self.seconds += time.perf_counter() - start

    class LossHistory(L.Callback):
        """Per-epoch training (and validation) loss, for ``results['history']``."""

        def __init__(self) -> None:
            self.train_loss: list[float] = []
            self.val_loss: list[float] = []

        def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            value = trainer.callback_metrics.get("train_loss")
            if value is not None:
                self.train_loss.append(float(value))

        def on_validation_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            value = trainer.callback_metrics.get("val_loss")
            if value is not None and not trainer.sanity_checking:
                self.val_loss.append(float(value))

    class DebugLogCallback(L.Callback):
        """Feeds :class:`ptycho.debug_log.TrainDebugLog` once per epoch (rank zero only)."""

        def __init__(self, debug_log) -> None:  # noqa: ANN001
            self.debug_log = debug_log

        def on_train_epoch_start(self, trainer, pl_module) -> None:  # noqa: ANN001
            self.debug_log.epoch_started()

        def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: ANN001
            if not trainer.is_global_zero:
                return
            metrics = trainer.callback_metrics
            loss, val = metrics.get("train_loss"), metrics.get("val_loss")
            lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
            self.debug_log.epoch(
                trainer.current_epoch + 1, None if loss is None else float(loss),
                float(torch.exp(pl_module.network.physics.log_intensity_scale).detach().cpu()), float(lr),
                val_loss=None if val is None else float(val), steps=int(trainer.global_step),
            )

    return L, TimedModelCheckpoint, LossHistory, DebugLogCallback


@contextlib.contextmanager
def cpu_threads(count: int):
    """Run with ``count`` intra-op threads (0: leave torch's setting), restoring the previous value."""
    previous = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def _quiet_lightning():
    """Keep Lightning's chatter (device banners, tips, known deprecations) out of user logs."""
    names = ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed")
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*`isinstance\(treespec, LeafSpec\)` is deprecated")
        warnings.filterwarnings("ignore", message=r".*You defined a `validation_step` but have no `val_dataloader`")
        warnings.filterwarnings("ignore", message=r".*does not have many workers")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _make_trainer(L, config: TrainingConfig, execution: TorchExecution, accelerator: str, logger, callbacks, validate: bool, output_dir: Path):
    return L.Trainer(
        max_epochs=config.nepochs,
        accelerator=accelerator,
        devices=execution.devices,
        strategy=execution.strategy,
        deterministic=execution.deterministic if accelerator == "cpu" else "warn",
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=execution.show_progress(),
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if validate else 0,
        log_every_n_steps=10,
        default_root_dir=str(output_dir),
    )


def _train_with_lightning(
    train_grouped: GroupedData,
    test_grouped: GroupedData | None,
    config: TrainingConfig,
    probe: np.ndarray,
    execution: TorchExecution | None = None,
    inference_config: InferenceConfig | None = None,
) -> dict[str, Any]:
    """Build the LightningModule from all four configuration groups, fit it, save the bundle.

    Returns ``history`` (per-epoch losses), ``models`` (``diffraction_to_obj``: the trained
    module), ``trainer``, ``checkpoint_path``, ``hyper_parameters`` and ``timings``.
    """
    execution = execution or TorchExecution()
    L, TimedModelCheckpoint, LossHistory, DebugLogCallback = _callbacks_module()
    from ptycho_torch.model import PtychoPINN_Lightning
    from ptycho_torch.model_manager import save_torch_bundle

    accelerator = execution.resolved_accelerator()
    if accelerator == "cpu":
        torch.set_flush_denormal(True)  # zero-count pixels: denormals slow the CPU backward pass many-fold
    L.seed_everything(execution.seed, workers=True, verbose=False)
    hparams = to_hyperparameters(config, inference_config, seed=execution.seed)
    module = PtychoPINN_Lightning(**hparams, probe=probe)

    output_dir = Path(config.output_dir)
    checkpoint = TimedModelCheckpoint(
        dirpath=output_dir / TORCH_CHECKPOINT.parent,
        save_last=True,
        save_top_k=0,
        enable_version_counter=False,
    )
    history = LossHistory()
    logger: Any = False
    if execution.csv_logger:
        from lightning.pytorch.loggers import CSVLogger

        logger = CSVLogger(save_dir=str(output_dir), name="logs")
    validate = test_grouped is not None and execution.val_images > 0
    callbacks: list[Any] = [checkpoint, history]
    debug_log = None
    if execution.debug:
        from ptycho.config.config import legacy_items
        from ptycho.debug_log import TrainDebugLog

        debug_log = TrainDebugLog(output_dir, "pytorch")
        debug_log.configuration({**legacy_items(config), "execution": dataclasses.asdict(execution), "accelerator": accelerator})
        debug_log.data_shapes(
            train_X=train_grouped.X.shape, train_offsets=train_grouped.offsets.shape,
            test_X=None if test_grouped is None else test_grouped.X.shape, normalisation_scale=train_grouped.scale,
        )
        callbacks.append(DebugLogCallback(debug_log))
    with _quiet_lightning():
        trainer = _make_trainer(L, config, execution, accelerator, logger, callbacks, validate, output_dir)
    train_loader = grouped_loader(train_grouped, config.batch_size, shuffle=True, seed=execution.seed)
    val_loader = None
    if validate:
        assert test_grouped is not None
        count = min(execution.val_images, len(test_grouped.X))
        val_subset = GroupedData(
            X=test_grouped.X[:count], counts_amplitude=test_grouped.counts_amplitude[:count],
            indices=test_grouped.indices[:count], offsets=test_grouped.offsets[:count],
            centers=test_grouped.centers[:count], scale=test_grouped.scale,
            gridsize=test_grouped.gridsize, N=test_grouped.N,
        )
        val_loader = grouped_loader(val_subset, max(config.batch_size, 64), shuffle=False)
    start = time.perf_counter()
    with _quiet_lightning(), cpu_threads(execution.num_threads if accelerator == "cpu" else 0):
        trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    fit_seconds = time.perf_counter() - start
    ckpt_path = output_dir / TORCH_CHECKPOINT
    manifest_seconds = 0.0
    if trainer.is_global_zero:
        start = time.perf_counter()
        save_torch_bundle(
            output_dir,
            hparams,
            {"epochs": int(trainer.current_epoch), "global_step": int(trainer.global_step), "devices": execution.devices,
             "strategy": execution.strategy, "accelerator": accelerator},
        )
        manifest_seconds = time.perf_counter() - start
    if debug_log is not None:
        debug_log.close(global_step=int(trainer.global_step), checkpoint=ckpt_path, training_s=fit_seconds - checkpoint.seconds,
                        checkpoint_s=checkpoint.seconds + manifest_seconds)
    return {
        "history": {"train_loss": history.train_loss, "val_loss": history.val_loss if validate else None},
        "models": {"diffraction_to_obj": module, "autoencoder": module},
        "lightning_module": module,
        "trainer": trainer,
        "checkpoint_path": ckpt_path,
        "hyper_parameters": hparams,
        "timings": {
            "training": fit_seconds - checkpoint.seconds,
            "checkpoint": checkpoint.seconds + manifest_seconds,
        },
    }


def train_cdi_model_torch(
    train_data: RawData | Path | str,
    test_data: RawData | Path | str | None,
    config: TrainingConfig,
    execution: TorchExecution | None = None,
) -> dict[str, Any]:
    """Group the data (N, gridsize, neighbours from ``config``; ``N = 0`` takes it from the
    training data) and train; returns
    :func:`_train_with_lightning`'s results plus the grouped containers."""
    execution = execution or TorchExecution()
    train_raw, test_raw, config = training_inputs(train_data, test_data, config)
    start = time.perf_counter()
    train_grouped = group_for_training(train_raw, config, seed=config.subsample_seed if config.subsample_seed is not None else execution.seed)
    test_grouped = None
    if test_raw is not None and execution.val_images > 0:
        test_grouped = group_for_training(test_raw, config, n_groups=execution.val_images, seed=execution.seed + 1)
    grouping_seconds = time.perf_counter() - start
    results = _train_with_lightning(train_grouped, test_grouped, config, train_raw.probeGuess, execution)
    results["timings"]["grouping"] = grouping_seconds
    results.update(train_container=train_grouped, test_container=test_grouped, train_data=train_raw, test_data=test_raw,
                   config=config)
    return results


def _reassemble_cdi_image_torch(
    test_data: RawData | Path | str,
    config: TrainingConfig | InferenceConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int | None = None,
    train_results: dict[str, Any] | None = None,
    network: Any = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Predict every group of ``test_data`` with the trained network and stitch the object natively.

    The network is ``network`` or ``train_results['models']['diffraction_to_obj']``. Returns
    ``(recon_amp, recon_phase, results)`` with ``results['obj_tensor_full']`` (the complex object),
    ``results['global_offsets']`` (every stitched patch position), ``results['reconstruction']``.
    """
    raw = ensure_raw_data(test_data, "test_data")
    if raw is None:
        raise ValueError("test_data: required for reassembly")
    if network is None:
        if not train_results or "models" not in train_results:
            raise ValueError("_reassemble_cdi_image_torch: pass network= or train_results with results['models']")
        network = train_results["models"]["diffraction_to_obj"]
    # An InferenceConfig may ask for a subset; after training, the whole test scan is reconstructed.
    n_groups = config.n_groups if isinstance(config, InferenceConfig) else None
    timings: dict[str, float] = {}
    recon, grouped = BACKEND.reconstruct(
        network, raw, neighbor_count=config.neighbor_count, n_images=n_groups, seed=0, flip_x=flip_x, flip_y=flip_y,
        transpose=transpose, M=M, timings=timings, with_deviance=True,
    )
    results = {
        "obj_tensor_full": recon.obj,
        "reconstruction": recon,
        "global_offsets": recon.positions,
        "recon_amp": recon.amplitude,
        "recon_phase": recon.phase,
        "poisson_deviance": recon.metadata["poisson_deviance"],
        "reassembly_timings": timings,
        "test_container": grouped,
    }
    return recon.amplitude, recon.phase, results


def run_cdi_example_torch(
    train_data: RawData | Path | str,
    test_data: RawData | Path | str | None,
    config: TrainingConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int | None = None,
    do_stitching: bool = False,
    execution: TorchExecution | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train, then (with ``do_stitching`` and test data) reconstruct: ``(amplitude, phase, results)``.

    ``results`` holds ``history``, ``models``, ``checkpoint_path`` and, with stitching, the
    reconstruction (``obj_tensor_full``, ``recon_amp``, ``recon_phase``, ``global_offsets``).
    ``amplitude`` and ``phase`` are None without stitching.
    """
    return train_and_reconstruct(
        BACKEND, train_data, test_data, config, execution or TorchExecution(), do_stitching=do_stitching,
        flip_x=flip_x, flip_y=flip_y, transpose=transpose, M=M,
    )


class TorchBackend:
    """:class:`ptycho.backend_interface.Backend` for the Lightning model: train with
    :func:`train_cdi_model_torch`, load with :func:`ptycho_torch.model_manager.load_torch_bundle`,
    reconstruct with :func:`ptycho_torch.inference.reconstruct`.

    ``train`` takes :class:`~ptycho.backend_interface.TrainingOptions` or, for the torch-only
    settings, a :class:`TorchExecution`. The checkpoint is always written (Lightning writes it while
    training), so ``TrainingOptions.save`` is not consulted.
    """

    name = "pytorch"
    # Loaded by training only (inference runs the plain network): a command imports it up front so
    # that its timings keep start-up apart from training.
    training_imports = ("lightning.pytorch",)

    @staticmethod
    def execution(options: TrainingOptions | TorchExecution) -> TorchExecution:
        """The TorchExecution ``options`` describe (ValueError names a bad field)."""
        if isinstance(options, TorchExecution):
            return options
        return TorchExecution(
            accelerator=options.accelerator, devices=options.devices, strategy=options.strategy, seed=options.seed,
            progress_bar=options.progress, csv_logger=options.csv_logger, val_images=options.val_images,
            num_threads=options.num_threads, debug=options.debug,
        )

    def train(self, train_data: RawData, test_data: RawData | None, config: TrainingConfig,
              options: TrainingOptions | TorchExecution) -> dict[str, Any]:
        execution = self.execution(options)
        try:
            accelerator = execution.resolved_accelerator()  # a GPU asked for and not visible: before grouping
        except ValueError as exc:
            from ptycho.cli_arguments import UsageError

            raise UsageError(str(exc)) from None
        results = train_cdi_model_torch(train_data, test_data, config, execution)
        trainer = results["trainer"]
        results.update(
            model=results["models"]["diffraction_to_obj"], epochs=int(trainer.current_epoch),
            global_step=int(trainer.global_step), accelerator=accelerator, devices=execution.devices,
            strategy=execution.strategy, is_global_zero=bool(trainer.is_global_zero),
        )
        return results

    def load(self, model_path: Path, accelerator: str = "cpu", num_threads: int = 1) -> LoadedModel:
        from ptycho_torch.inference import select_device
        from ptycho_torch.model_manager import load_torch_bundle

        device = select_device(accelerator)
        if device.type == "cpu":
            torch.set_flush_denormal(True)  # zero-count pixels: denormals slow the CPU many-fold
            if num_threads:
                torch.set_num_threads(num_threads)
        bundle = load_torch_bundle(model_path, map_location=device)
        saved = {
            **legacy_items(bundle.inference_config),
            "model_config": bundle.model_config,
            "manifest": bundle.manifest,
            "hyper_parameters": bundle.hyper_parameters,
        }
        return LoadedModel(
            model=bundle.network, config=bundle.inference_config, checkpoint=Path(bundle.checkpoint_path),
            manifest=bundle.manifest, device=device, device_label=str(device), saved=saved,
        )

    def reconstruct(self, model: Any, raw: RawData, *, neighbor_count: int, device: Any = None,
                    **request: Any) -> tuple[Any, GroupedData]:
        from ptycho_torch.inference import reconstruct

        network = getattr(model, "network", model)  # a LightningModule wraps the plain network
        if device is None:
            device = next(network.parameters()).device
        return reconstruct(network, raw, neighbor_count=neighbor_count, device=device, **request)


BACKEND = TorchBackend()
