"""TensorFlow training workflow and Backend adapter: the twin of ``ptycho_torch.workflows.components``.

``run_cdi_example`` is what the backend dispatcher calls for ``backend='tensorflow'`` (through
``ptycho.workflows.components``, the module the brief names): it trains the Keras PtychoPINN
(:mod:`ptycho.tf_backend.network`) with compiled steps (``tf.function``) and Adam on the Poisson
NLL of the normalised amplitudes (docs/architecture.md §6, the torch backend's loss), saves
``{output_dir}/wts.h5.zip``, and with ``do_stitching`` reconstructs the test scan
(:mod:`ptycho.tf_backend.inference`). It returns ``(amplitude, phase, results)`` with the torch
path's ``results`` keys.

:class:`TensorFlowBackend` is this backend's implementation of :class:`ptycho.backend_interface.Backend`
(a thin adapter over the functions below); ``run_cdi_example`` is the shared
:func:`ptycho.workflows.train_and_reconstruct.train_and_reconstruct` over it. Grouping takes N,
gridsize and the neighbour count from the configs, not from ``params.cfg``. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
from ptycho.tf_backend.runtime import tf  # first: sets TensorFlow's runtime options before keras loads it
import keras

from ptycho import params
from ptycho.backend_interface import LoadedModel, TrainingOptions
from ptycho.config.config import InferenceConfig, TrainingConfig, legacy_items
from ptycho.raw_data import GroupedData, RawData
from ptycho.tf_backend import model_manager
from ptycho.tf_backend.adam import TorchAdam
from ptycho.tf_backend.inference import input_signature, intensity_scale_of, reconstruct
from ptycho.tf_backend.model_manager import load_model, save_model
from ptycho.tf_backend.network import PtychoPINN, build_model, training_loss
from ptycho.workflows.grouping import ensure_raw_data, group_for_training, training_inputs
from ptycho.workflows.reconstruction import Reconstruction
from ptycho.workflows.train_and_reconstruct import train_and_reconstruct

__all__ = [
    "DEFAULT_SEED",
    "ensure_raw_data",
    "group_for_training",
    "train_cdi_model",
    "run_cdi_example",
    "save_trained_model",
    "load_inference_bundle",
    "initial_model",
    "save_outputs",
    "TensorFlowBackend",
    "BACKEND",
]

log = logging.getLogger(__name__)

# Seed of weight initialisation, subset and batch order (the torch backend's default too).
DEFAULT_SEED = 42
VAL_IMAGES = 64


def _compiled_steps(model: PtychoPINN, optimizer: TorchAdam, config: TrainingConfig):
    nll, mae = float(config.nll_weight), float(config.mae_weight)
    variables = optimizer.variables

    @tf.function(input_signature=input_signature(model), autograph=False)
    def train_step(x: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = training_loss(model(x, offsets, training=True).amplitude, x, nll, mae)
        optimizer.apply_gradients(tape.gradient(loss, variables))
        return loss

    @tf.function(input_signature=input_signature(model), autograph=False)
    def eval_step(x: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        return training_loss(model(x, offsets).amplitude, x, nll, mae)

    return train_step, eval_step


def _mean_loss(step: Callable, grouped: GroupedData, order: np.ndarray, batch_size: int) -> float:
    total = 0.0
    for lo in range(0, len(order), batch_size):
        idx = order[lo : lo + batch_size]
        total += float(step(tf.constant(grouped.X[idx]), tf.constant(grouped.offsets[idx]))) * len(idx)
    return total / len(order)


def train_cdi_model(
    train_data: RawData | Path | str,
    test_data: RawData | Path | str | None,
    config: TrainingConfig,
    seed: int = DEFAULT_SEED,
    val_images: int = VAL_IMAGES,
    progress: Callable[[int, int, float, float | None, float], None] | None = None,
    debug: bool = False,
    save: bool = True,
) -> dict[str, Any]:
    """Group the data (N, gridsize, neighbours from ``config``), train, save ``wts.h5.zip``
    (unless ``save`` is False).

    ``config.model.N = 0`` takes N from the training data. The trained model becomes this process's
    current model (:func:`ptycho.tf_backend.model_manager.save` writes it) and ``params.cfg['intensity_scale']``
    its learned intensity scale.

    ``debug`` writes ``{output_dir}/train_debug.log`` (brief §3.1; :mod:`ptycho.debug_log`).

    Returns ``history`` (per-epoch ``train_loss``, ``val_loss`` on up to ``val_images`` test groups
    or None), ``models`` (``diffraction_to_obj``), ``checkpoint_path`` (the archive),
    ``train_container``/``test_container``, ``train_data``/``test_data``, ``global_step`` and
    ``timings``. ``progress(epoch, nepochs, train_loss, val_loss, seconds)`` runs after every epoch.
    """
    train_raw, test_raw, config = training_inputs(train_data, test_data, config)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    train_grouped = group_for_training(
        train_raw, config, seed=config.subsample_seed if config.subsample_seed is not None else seed
    )
    test_grouped = None
    if test_raw is not None and val_images > 0:
        test_grouped = group_for_training(test_raw, config, n_groups=val_images, seed=seed + 1)
    timings["grouping"] = time.perf_counter() - start

    debug_log = None
    if debug:
        from ptycho.debug_log import TrainDebugLog

        debug_log = TrainDebugLog(config.output_dir, "tensorflow")
        debug_log.configuration({"seed": seed, "val_images": val_images, **legacy_items(config)})
        debug_log.data_shapes(
            train_X=train_grouped.X.shape, train_offsets=train_grouped.offsets.shape,
            test_X=None if test_grouped is None else test_grouped.X.shape, normalisation_scale=train_grouped.scale,
            grouping_s=timings["grouping"],
        )

    keras.utils.set_random_seed(seed)
    model = build_model(config.model, train_raw.probeGuess)
    # docs/architecture.md §6: torch's Adam (update rule and defaults).
    optimizer = TorchAdam(model.trainable_variables, learning_rate=config.learning_rate)
    train_step, eval_step = _compiled_steps(model, optimizer, config)
    rng = np.random.default_rng(seed)
    n = train_grouped.X.shape[0]
    train_loss: list[float] = []
    val_loss: list[float] = []
    steps = 0
    start = time.perf_counter()
    for epoch in range(config.nepochs):
        t0 = time.perf_counter()
        order = rng.permutation(n)
        loss = _mean_loss(train_step, train_grouped, order, config.batch_size)
        steps += math.ceil(n / config.batch_size)
        if not math.isfinite(loss):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1}: loss {loss}")
        train_loss.append(loss)
        val = None
        if test_grouped is not None:
            val = _mean_loss(eval_step, test_grouped, np.arange(len(test_grouped.X)), max(config.batch_size, 64))
            val_loss.append(val)
        seconds = time.perf_counter() - t0
        if debug_log is not None:
            debug_log.epoch(
                epoch + 1, loss, float(np.exp(model.physics.log_intensity_scale.numpy())), config.learning_rate,
                val_loss=val, steps=steps,
            )
        if progress is not None:
            progress(epoch + 1, config.nepochs, loss, val, seconds)
        log.info("epoch %d/%d: loss %.5f (%.1f s)", epoch + 1, config.nepochs, loss, seconds)
    timings["training"] = time.perf_counter() - start

    history = {"train_loss": train_loss, "val_loss": val_loss if test_grouped is not None else None}
    start = time.perf_counter()
    facts = {"epochs": config.nepochs, "global_step": steps, "seed": seed}
    params.set("intensity_scale", intensity_scale_of(model))
    model_manager.remember(model, _configs_of(config), facts)
    archive = save_trained_model(model, config, facts) if save else None
    timings["checkpoint"] = time.perf_counter() - start
    if debug_log is not None:
        debug_log.close(global_step=steps, checkpoint=archive, **{f"{k}_s": v for k, v in timings.items()})
    return {
        "history": history,
        "models": {"diffraction_to_obj": model, "autoencoder": model},
        "checkpoint_path": archive,
        "global_step": steps,
        "epochs": config.nepochs,
        "config": config,
        "train_container": train_grouped,
        "test_container": test_grouped,
        "train_data": train_raw,
        "test_data": test_raw,
        "timings": timings,
    }


def run_cdi_example(
    train_data: RawData | Path | str,
    test_data: RawData | Path | str | None,
    config: TrainingConfig,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int | None = None,
    do_stitching: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train, then (with ``do_stitching`` and test data) reconstruct: ``(amplitude, phase, results)``.

    The model is saved to ``{output_dir}/wts.h5.zip``, except when ``output_dir`` is ``Path()``
    (ptychodus's "not used"): then nothing is written to the working directory, and
    :func:`ptycho.tf_backend.model_manager.save` writes the trained model where the caller wants it.

    ``results`` holds ``history``, ``models``, ``checkpoint_path`` and, with stitching,
    ``obj_tensor_full``, ``recon_amp``, ``recon_phase``, ``global_offsets``, ``poisson_deviance``
    and ``reconstruction``. ``amplitude`` and ``phase`` are None without stitching.
    """
    # TensorFlow's own device placement and thread pools, as a library call should leave them.
    options = TrainingOptions(
        accelerator="auto", num_threads=0, progress=False, save=config.output_dir != UNSET_OUTPUT_DIR
    )
    return train_and_reconstruct(
        BACKEND, train_data, test_data, config, options, do_stitching=do_stitching, flip_x=flip_x, flip_y=flip_y,
        transpose=transpose, M=M,
    )


def _configs_of(config: TrainingConfig) -> dict[str, Any]:
    inference = InferenceConfig(
        model=config.model, model_path=config.output_dir, test_data_file=config.test_data_file,
        n_groups=config.n_groups, neighbor_count=config.neighbor_count, backend="tensorflow",
    )
    return {"model": config.model, "training": config, "inference": inference}


def save_trained_model(model: PtychoPINN, config: TrainingConfig, extra: dict[str, Any] | None = None) -> Path:
    """Write ``{config.output_dir}/wts.h5.zip`` (Keras weights + manifest naming the backend and
    the model, training and inference configs).

    The manifest's legacy record (``params``) is ``params.cfg`` overlaid with ``config``: the
    training read N, gridsize and the neighbour count from ``config``, whatever the caller left in
    the legacy dict."""
    record = {k: v for k, v in params.cfg.items() if getattr(v, "ndim", 0) == 0}  # not the probe array
    record.update(legacy_items(config))
    return save_model(model, config.output_dir, _configs_of(config), {**(extra or {}), "params": record})


def load_inference_bundle(bundle_dir: Path | str) -> tuple[PtychoPINN, dict[str, Any]]:
    """Load ``wts.h5.zip`` from ``bundle_dir`` (or the archive itself) -> ``(model, params)``:
    the legacy parameters saved with the model, plus ``model_config`` and ``manifest``.

    ``bundle_dir`` may also hold the archive's unpacked members. The model becomes this process's
    current model, and ``params.cfg['intensity_scale']`` its intensity scale (the factor the legacy
    ``model.predict([X * intensity_scale, local_offsets])`` expects).
    """
    model, manifest = load_model(bundle_dir)
    saved = dict(manifest.get("params", {}))
    saved["model_config"] = model.cfg
    saved["manifest"] = manifest
    params.set("intensity_scale", intensity_scale_of(model))
    configs = dict(manifest.get("configs") or {})
    configs["model"] = model.cfg
    extra = {k: manifest[k] for k in ("epochs", "global_step", "seed") if k in manifest}
    model_manager.remember(model, configs, extra)
    return model, saved


def initial_model(model: PtychoPINN, manifest: dict[str, Any]) -> PtychoPINN:
    """The model as its training began: same architecture, probe and seed (saved in the manifest),
    hence the same initial weights, since training seeds Keras and then builds the model. The
    reference for "did training do anything"."""
    seed = int(manifest.get("seed", DEFAULT_SEED))
    probe = model.physics.probe.numpy()
    keras.utils.set_random_seed(seed)
    return build_model(model.cfg, probe)



# --------------------------------------------------------------------------- the Backend adapter


def tensorflow_device(accelerator: str) -> str:
    """The TensorFlow device for ``accelerator``; asking for a GPU that is not visible is an error
    (a UsageError naming the flag), never a silent fallback."""
    from ptycho.cli_arguments import UsageError

    if accelerator not in ("cpu", "cuda", "gpu", "auto"):
        raise UsageError(f"--accelerator: invalid value {accelerator!r}; expected cpu, cuda, gpu or auto")
    if accelerator == "cpu":
        return "/CPU:0"
    if tf.config.list_physical_devices("GPU"):
        return "/GPU:0"
    if accelerator == "auto":
        return "/CPU:0"
    raise UsageError(
        f"--accelerator: {accelerator!r} requested but TensorFlow sees no GPU "
        f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')!r})"
    )


def set_cpu_threads(count: int) -> None:
    """TensorFlow's intra- and inter-op pools (0 keeps TensorFlow's default of every core). They
    can only be set before its runtime starts; later (a CLI's main used as a library in a process
    that already ran TensorFlow) the pools are fixed and this says so rather than fail."""
    if not count or tf.config.threading.get_intra_op_parallelism_threads() == count:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(count)
        tf.config.threading.set_inter_op_parallelism_threads(count)
    except RuntimeError:
        print(f"note: TensorFlow already initialised; --num_threads {count} not applied", file=sys.stderr)


def _print_epoch(epoch: int, total: int, loss: float, val: float | None, seconds: float) -> None:
    extra = f", val_loss {val:.5g}" if val is not None else ""
    print(f"epoch {epoch}/{total}: train_loss {loss:.5g}{extra} ({seconds:.1f} s)", file=sys.stderr, flush=True)


def _write_csv_log(output_dir: Path, train_loss: list[float], val_loss: list[float] | None) -> Path:
    """``{output_dir}/logs/metrics.csv``: the per-epoch losses (what Lightning's CSVLogger writes
    for the torch backend)."""
    path = output_dir / "logs" / "metrics.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["epoch,train_loss,val_loss"]
    for i, loss in enumerate(train_loss):
        val = "" if not val_loss else repr(val_loss[i])
        rows.append(f"{i},{loss!r},{val}")
    path.write_text("\n".join(rows) + "\n")
    return path


class TensorFlowBackend:
    """:class:`ptycho.backend_interface.Backend` for the Keras model: train with
    :func:`train_cdi_model`, load with :func:`load_inference_bundle`, reconstruct with
    :func:`reconstruct`, each on the device ``accelerator`` names."""

    name = "tensorflow"
    training_imports: tuple[str, ...] = ()

    def train(self, train_data: RawData, test_data: RawData | None, config: TrainingConfig,
              options: TrainingOptions) -> dict[str, Any]:
        if options.devices != 1 or options.strategy != "auto":
            raise ValueError(
                f"devices={options.devices}, strategy={options.strategy!r}: the tensorflow backend trains on one "
                f"device (devices=1, strategy='auto')"
            )
        set_cpu_threads(options.num_threads)
        device = tensorflow_device(options.accelerator)
        with tf.device(device):
            results = train_cdi_model(
                train_data, test_data, config, seed=options.seed,
                val_images=options.val_images if test_data is not None else 0,
                progress=_print_epoch if options.show_progress() else None, debug=options.debug, save=options.save,
            )
        if options.csv_logger:
            history = results["history"]
            _write_csv_log(Path(config.output_dir), history["train_loss"], history["val_loss"])
        results.update(
            model=results["models"]["diffraction_to_obj"], device=device,
            accelerator="gpu" if "GPU" in device else "cpu", devices=1, strategy="auto", is_global_zero=True,
        )
        return results

    def load(self, model_path: Path, accelerator: str = "cpu", num_threads: int = 1) -> LoadedModel:
        set_cpu_threads(num_threads)
        device = tensorflow_device(accelerator)
        with tf.device(device):
            model, saved = load_inference_bundle(model_path)
        # The neighbour count training grouped with: the saved inference config (older archives: the
        # legacy snapshot).
        inference = (saved["manifest"].get("configs") or {}).get("inference") or {}
        config = InferenceConfig(
            model=model.cfg, model_path=Path(model_path), backend=self.name,
            neighbor_count=inference.get("neighbor_count") or saved.get("neighbor_count"),
        )
        return LoadedModel(
            model=model, config=config, checkpoint=Path(saved["manifest"].get("weights") or model_path),
            manifest=saved["manifest"], device=device, device_label="gpu" if "GPU" in device else "cpu", saved=saved,
        )

    def reconstruct(self, model: PtychoPINN, raw: RawData, *, neighbor_count: int, device: Any = None,
                    **request: Any) -> tuple[Reconstruction, GroupedData]:
        with tf.device(device) if device else contextlib.nullcontext():  # None: TensorFlow's placement
            return reconstruct(model, raw, neighbor_count=neighbor_count, **request)


BACKEND = TensorFlowBackend()



# --------------------------------------------------------------------------- legacy (ptychodus) edge

# ``output_dir=Path()``: ptychodus's "not used" (it saves with model_manager.save itself).
UNSET_OUTPUT_DIR = Path()


def save_outputs(
    amplitude: np.ndarray | None,
    phase: np.ndarray | None,
    results: dict[str, Any],
    output_prefix: Path | str,
) -> list[Path]:
    """Write what a training run produced into ``output_prefix`` (ptychodus calls it after
    ``run_cdi_example``): ``history.json`` (per-epoch losses) and, when a reconstruction was made,
    ``reconstructed_amplitude.npy``, ``reconstructed_phase.npy`` and their PNGs. Returns the paths."""
    out = Path(output_prefix)
    if (amplitude is None) != (phase is None):
        raise ValueError("save_outputs: amplitude and phase must both be given or both be None")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    history = results.get("history")
    if history is not None:
        path = out / "history.json"
        path.write_text(json.dumps(history, indent=2))
        written.append(path)
    if amplitude is not None and phase is not None:
        from matplotlib.image import imsave  # no pyplot: leaves the caller's GUI backend alone

        for name, image, cmap in (("amplitude", amplitude, "gray"), ("phase", phase, "twilight")):
            array = np.asarray(image)
            np.save(out / f"reconstructed_{name}.npy", array)
            imsave(out / f"reconstructed_{name}.png", array, cmap=cmap)
            written += [out / f"reconstructed_{name}.npy", out / f"reconstructed_{name}.png"]
    return written
