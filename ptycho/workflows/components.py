"""TensorFlow training and inference workflow: data -> grouped patterns -> Keras PtychoPINN ->
object patches -> stitched object; the twin of ``ptycho_torch.workflows.components``.

Callers go through :mod:`ptycho.workflows.backend_selector` (which syncs ``params.cfg`` first,
CONFIG-001); every entry point here also syncs its own config, so it is safe on its own.
Training runs compiled steps (``tf.function``) with Adam on the Poisson NLL of the normalised
amplitudes, exactly the loss of the torch backend.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import tensorflow as tf
import keras

from ptycho import params
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig, update_legacy_dict
from ptycho.evaluation import evaluate_reconstruction, scanned_region
from ptycho.model import PtychoPINN, build_model, predicted_size, training_loss
from ptycho.model_manager import load_model, save_model
from ptycho.raw_data import GroupedData, RawData, generate_grouped_data
from ptycho.stitching import canvas_shape_for, patch_weights
from ptycho import tf_helper

__all__ = [
    "DEFAULT_SEED",
    "TrainingHistory",
    "load_data",
    "create_grouped_data",
    "train_cdi_model",
    "reconstruct_patches",
    "reassemble_cdi_image",
    "evaluate_against_truth",
    "run_cdi_example",
    "save_trained_model",
    "load_inference_bundle",
]

log = logging.getLogger(__name__)

# Seed of weight initialisation and batch order (the torch backend's default seed as well).
DEFAULT_SEED = 42
PREDICT_BATCH = 64


@dataclass
class TrainingHistory:
    """Mean training loss per epoch, seconds per epoch, and steps run."""

    train_loss: list[float]
    epoch_seconds: list[float]
    steps: int

    def as_dict(self) -> dict[str, Any]:
        return {"train_loss": self.train_loss, "epoch_seconds": self.epoch_seconds, "steps": self.steps}


def load_data(path: Path | str) -> RawData:
    """Read and validate an NPZ in the data contract (errors name file and key)."""
    return RawData.from_file(path)


def _as_raw(data: RawData | Path | str) -> RawData:
    return data if isinstance(data, RawData) else load_data(data)


def create_grouped_data(
    raw: RawData, config: TrainingConfig | InferenceConfig, seed: int | None = None
) -> GroupedData:
    """Group ``raw`` for ``config`` (CONFIG-001: the legacy dict is synced first)."""
    update_legacy_dict(params.cfg, config)
    return generate_grouped_data(raw, n_groups=config.n_groups, neighbor_count=config.neighbor_count, seed=seed)


def _offsets32(grouped: GroupedData) -> np.ndarray:
    return grouped.offsets.astype(np.float32)


def _make_train_step(model: PtychoPINN, optimizer: keras.optimizers.Optimizer, config: TrainingConfig) -> Callable:
    cfg = config.model
    spec = (
        tf.TensorSpec((None, cfg.channels, cfg.N, cfg.N), tf.float32),
        tf.TensorSpec((None, cfg.channels, 2), tf.float32),
    )
    nll, mae = float(config.nll_weight), float(config.mae_weight)

    @tf.function(input_signature=spec, reduce_retracing=True)
    def step(x: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = training_loss(model(x, offsets, training=True).amplitude, x, nll, mae)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    return step


def train_cdi_model(
    train_data: RawData | Path | str,
    config: TrainingConfig,
    seed: int = DEFAULT_SEED,
    progress: Callable[[int, float, float], None] | None = None,
) -> dict[str, Any]:
    """Train a Keras PtychoPINN on ``train_data``; returns ``{'model', 'history', 'grouped',
    'training_seconds'}``. ``progress(epoch, loss, seconds)`` is called after every epoch."""
    update_legacy_dict(params.cfg, config)
    raw = _as_raw(train_data)
    grouped = create_grouped_data(raw, config, seed=config.subsample_seed)
    keras.utils.set_random_seed(seed)
    model = build_model(config.model, raw.probeGuess)
    optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
    step = _make_train_step(model, optimizer, config)
    x_all = grouped.X
    off_all = _offsets32(grouped)
    n = x_all.shape[0]
    rng = np.random.default_rng(seed)
    history = TrainingHistory([], [], 0)
    start = time.perf_counter()
    for epoch in range(config.nepochs):
        t0 = time.perf_counter()
        order = rng.permutation(n)
        total, count = 0.0, 0
        for lo in range(0, n, config.batch_size):
            idx = order[lo : lo + config.batch_size]
            loss = step(tf.constant(x_all[idx]), tf.constant(off_all[idx]))
            total += float(loss) * len(idx)
            count += len(idx)
            history.steps += 1
        mean = total / count
        if not math.isfinite(mean):
            raise FloatingPointError(f"training diverged at epoch {epoch + 1}: loss {mean}")
        seconds = time.perf_counter() - t0
        history.train_loss.append(mean)
        history.epoch_seconds.append(seconds)
        if progress is not None:
            progress(epoch + 1, mean, seconds)
        log.info("epoch %d/%d: loss %.5f (%.1f s)", epoch + 1, config.nepochs, mean, seconds)
    return {
        "model": model,
        "history": history.as_dict(),
        "grouped": grouped,
        "training_seconds": time.perf_counter() - start,
    }


def reconstruct_patches(model: PtychoPINN, grouped: GroupedData, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Predicted complex object patches (B, C, N, N) for every group."""
    predict = tf.function(
        lambda x: model.predict_object(x),
        input_signature=[tf.TensorSpec((None, grouped.X.shape[1], grouped.N, grouped.N), tf.float32)],
    )
    out = []
    for lo in range(0, grouped.X.shape[0], batch_size):
        amplitude, phase = predict(tf.constant(grouped.X[lo : lo + batch_size]))
        out.append(amplitude.numpy() * np.exp(1j * phase.numpy()))
    return np.concatenate(out).astype(np.complex64)


def stitching_weights(model_config: ModelConfig, probe: np.ndarray) -> np.ndarray:
    """Per-pixel weight of a patch when stitching: probe intensity (trust where the light was) on
    the predicted window only."""
    return patch_weights(model_config.N, probe, crop=predicted_size(model_config))


def reassemble_cdi_image(
    patches: np.ndarray,
    grouped: GroupedData,
    raw: RawData,
    model_config: ModelConfig,
    canvas_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """Stitch the predicted patches at their scan positions into one complex object
    (:func:`ptycho.tf_helper.reassemble_position`). The canvas is the ground truth's shape when the
    data carries one, else the smallest canvas holding every patch."""
    positions = raw.positions[grouped.indices.reshape(-1)]
    flat = patches.reshape(-1, patches.shape[-2], patches.shape[-1])
    if canvas_shape is None:
        canvas_shape = raw.objectGuess.shape if raw.objectGuess is not None else canvas_shape_for(raw.positions, grouped.N)
    weights = stitching_weights(model_config, raw.probeGuess)
    return tf_helper.reassemble_position(flat, positions, canvas_shape, weights).numpy()


def evaluate_against_truth(obj: np.ndarray, raw: RawData) -> dict[str, float] | None:
    """Quality figures inside the scanned area, when the data carries a ground truth."""
    if raw.objectGuess is None or raw.objectGuess.shape != obj.shape:
        return None
    region = scanned_region(raw.positions, obj.shape)
    return evaluate_reconstruction(obj, raw.objectGuess, region).as_dict()


def run_cdi_example(
    train_data: RawData | Path | str,
    test_data: RawData | Path | str | None,
    config: TrainingConfig,
    do_stitching: bool = False,
) -> tuple[np.ndarray | None, np.ndarray | None, dict[str, Any]]:
    """Train on ``train_data``; with ``do_stitching`` reconstruct ``test_data`` (or the training
    data when None) into one object.

    Returns ``(amplitude, phase, results)``: the stitched object's amplitude and phase (None
    without stitching) and ``results`` with ``model``, ``history``, ``training_seconds``, and when
    stitched ``obj`` (complex), ``patches`` and ``metrics`` (None without ground truth).
    """
    update_legacy_dict(params.cfg, config)
    train_raw = _as_raw(train_data)
    results = train_cdi_model(train_raw, config)
    amplitude = phase = None
    if do_stitching:
        test_raw = train_raw if test_data is None else _as_raw(test_data)
        inference = InferenceConfig(model=config.model, n_groups=None, neighbor_count=config.neighbor_count)
        grouped = create_grouped_data(test_raw, inference)
        update_legacy_dict(params.cfg, config)
        t0 = time.perf_counter()
        patches = reconstruct_patches(results["model"], grouped)
        obj = reassemble_cdi_image(patches, grouped, test_raw, config.model)
        results.update(
            obj=obj,
            patches=patches,
            test_grouped=grouped,
            inference_seconds=time.perf_counter() - t0,
            metrics=evaluate_against_truth(obj, test_raw),
        )
        amplitude, phase = np.abs(obj), np.angle(obj)
    results["backend"] = "tensorflow"
    return amplitude, phase, results


def save_trained_model(model: PtychoPINN, config: TrainingConfig, history: dict[str, Any] | None = None) -> Path:
    """Write ``{config.output_dir}/wts.h5.zip`` (Keras weights + manifest naming the backend)."""
    inference = InferenceConfig(
        model=config.model, model_path=config.output_dir, test_data_file=config.test_data_file,
        n_groups=config.n_groups, neighbor_count=config.neighbor_count, backend="tensorflow",
    )
    extra = {"history": history} if history else None
    return save_model(model, config.output_dir, {"model": config.model, "training": config, "inference": inference}, extra)


def load_inference_bundle(bundle_dir: Path | str) -> tuple[PtychoPINN, dict[str, Any]]:
    """Load ``wts.h5.zip`` from ``bundle_dir`` (or the archive itself) -> ``(model, params)`` where
    ``params`` is the legacy parameter snapshot saved with it plus ``model_config`` (a
    :class:`ModelConfig`) and ``manifest``."""
    model, manifest = load_model(bundle_dir)
    saved = dict(manifest.get("params", {}))
    saved["model_config"] = model.cfg
    saved["manifest"] = manifest
    return model, saved
