"""Prediction and reconstruction with a Keras PtychoPINN: the twin of :mod:`ptycho_torch.inference`.

Object patches and predicted diffraction come from traced functions (``tf.function``, one per model
and purpose, reused across calls); :func:`reconstruct` groups a scan, predicts and stitches it with
:func:`ptycho.tf_backend.reassembly.reassemble_position`. :func:`predict_legacy` is the Keras
``model.predict([X * intensity_scale, local_offsets])`` form ptychodus calls.
"""

from __future__ import annotations

import time
import weakref
from typing import Any, Callable

import numpy as np
from ptycho.tf_backend.runtime import tf  # first: sets TensorFlow's runtime options before keras loads it

from ptycho.physics import poisson_deviance
from ptycho.raw_data import GroupedData, RawData, generate_grouped_data
from ptycho.tf_backend.network import PtychoPINN, predicted_size
from ptycho.tf_backend.reassembly import reassemble_position
from ptycho.workflows.reconstruction import (
    Reconstruction,
    canvas_shape_of,
    reconstruction_metadata,
    stitch_positions,
)

__all__ = [
    "PREDICT_BATCH",
    "input_signature",
    "predict_object_patches",
    "predict_diffraction",
    "poisson_deviance_on",
    "reconstruct",
    "intensity_scale_of",
    "predict_legacy",
]

PREDICT_BATCH = 256


def input_signature(model: PtychoPINN) -> tuple[tf.TensorSpec, tf.TensorSpec]:
    """The model's inputs for ``tf.function``: diffraction (B, C, N, N) float32 and offsets (B, C, 2) float64."""
    cfg = model.cfg
    return (
        tf.TensorSpec((None, cfg.channels, cfg.N, cfg.N), tf.float32),
        tf.TensorSpec((None, cfg.channels, 2), tf.float64),  # float64: sub-pixel tap arithmetic
    )


_COMPILED: "weakref.WeakKeyDictionary[PtychoPINN, dict[str, Callable]]" = weakref.WeakKeyDictionary()


def _compiled(model: PtychoPINN, name: str, build: Callable[[], Callable]) -> Callable:
    """One traced function per model and purpose, reused across calls (tracing costs seconds)."""
    functions = _COMPILED.setdefault(model, {})
    if name not in functions:
        functions[name] = build()
    return functions[name]


def predict_object_patches(model: PtychoPINN, x: np.ndarray, batch_size: int = PREDICT_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Object amplitude and phase patches (B, C, N, N) for normalised diffraction ``x`` (B, C, N, N)."""
    predict = _compiled(model, "predict_object", lambda: tf.function(
        model.predict_object, input_signature=[input_signature(model)[0]], autograph=False))
    amps, phases = [], []
    for lo in range(0, len(x), batch_size):
        a, p = predict(tf.constant(x[lo : lo + batch_size]))
        amps.append(a.numpy())
        phases.append(p.numpy())
    return np.concatenate(amps), np.concatenate(phases)


def predict_diffraction(model: PtychoPINN, x: np.ndarray, offsets: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Predicted normalised diffraction amplitudes ``A_hat`` (B, C, N, N) through the physics layer."""
    forward = _compiled(model, "predict_diffraction", lambda: tf.function(
        lambda xb, ob: model(xb, ob).amplitude, input_signature=input_signature(model), autograph=False))
    out = []
    for lo in range(0, len(x), batch_size):
        out.append(forward(tf.constant(x[lo : lo + batch_size]), tf.constant(offsets[lo : lo + batch_size], tf.float64)).numpy())
    return np.concatenate(out)


def poisson_deviance_on(model: PtychoPINN, grouped: GroupedData, batch_size: int = PREDICT_BATCH) -> float:
    """Mean Poisson deviance of the predicted counts ``(A_hat / scale)^2`` against the measured
    counts: zero for a perfect model (the torch backend's figure, same definition)."""
    predicted = predict_diffraction(model, grouped.X, grouped.offsets, batch_size).astype(np.float64)
    lam = (predicted / grouped.scale) ** 2
    counts = grouped.counts_amplitude.astype(np.float64) ** 2
    return poisson_deviance(lam, counts)


def reconstruct(
    model: PtychoPINN,
    raw: RawData,
    n_images: int | None = None,
    seed: int = 0,
    batch_size: int = PREDICT_BATCH,
    flip_x: bool = False,
    flip_y: bool = False,
    transpose: bool = False,
    M: int | None = None,
    timings: dict[str, float] | None = None,
    with_deviance: bool = True,
    neighbor_count: int | None = None,
) -> tuple[Reconstruction, GroupedData]:
    """Group ``raw`` with the model's N and gridsize from ``neighbor_count`` nearest neighbours
    (None: the legacy ``params.cfg['neighbor_count']``), predict, and stitch with
    :func:`ptycho.tf_backend.reassembly.reassemble_position` (probe intensity weights on the predicted window,
    patch phase offsets synchronised first; docs/architecture.md §10)."""
    from ptycho.stitching import patch_weights, synchronise_patch_phases

    timings = timings if timings is not None else {}
    cfg = model.cfg
    t = time.perf_counter()
    grouped = generate_grouped_data(
        raw, n_groups=n_images, neighbor_count=neighbor_count, seed=seed, N=cfg.N, gridsize=cfg.gridsize
    )
    timings["grouping"] = time.perf_counter() - t
    t = time.perf_counter()
    amp, phase = predict_object_patches(model, grouped.X, batch_size)
    timings["inference"] = time.perf_counter() - t
    t = time.perf_counter()
    patches = (amp * np.exp(1j * phase)).reshape(-1, cfg.N, cfg.N)
    if transpose:
        patches = np.swapaxes(patches, -1, -2)
    positions = grouped.centers[:, None, :] + grouped.offsets
    flat_positions = stitch_positions(positions.reshape(-1, 2), flip_x, flip_y)
    canvas = canvas_shape_of(raw, cfg.N, M)
    weights = patch_weights(cfg.N, raw.probeGuess, crop=predicted_size(cfg))
    patches = synchronise_patch_phases(patches, flat_positions, weights)  # each patch's own phase offset
    obj = reassemble_position(patches, flat_positions, canvas, weights).numpy()
    timings["stitching"] = time.perf_counter() - t
    meta = reconstruction_metadata(grouped, cfg, canvas, flip_x=flip_x, flip_y=flip_y, transpose=transpose)
    if with_deviance:
        t = time.perf_counter()
        meta["poisson_deviance"] = poisson_deviance_on(model, grouped, batch_size)
        timings["deviance"] = time.perf_counter() - t
    return Reconstruction(obj, positions.reshape(-1, 2), grouped.indices.reshape(-1), meta), grouped


def intensity_scale_of(model: PtychoPINN) -> float:
    """The model's intensity scale ``sigma = exp(log_intensity_scale)`` (learned or fixed)."""
    return float(np.exp(model.physics.log_intensity_scale.numpy()))


def predict_legacy(model: PtychoPINN, inputs: Any, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """The legacy Keras call ``model.predict([X * intensity_scale, local_offsets])`` -> complex64
    object patches (B, N, N, C) (:mod:`ptycho.loader` layout).

    The input is divided by the model's intensity scale, as the legacy model's first layer did, so
    ``X`` must be multiplied by ``params.get('intensity_scale')`` (set when the model was trained
    or loaded). The offsets are checked but do not change the object patches.
    """
    from ptycho.loader import legacy_patches, model_inputs_from_legacy

    x, _offsets = model_inputs_from_legacy(inputs)
    cfg = model.cfg
    if x.shape[1:] != (cfg.channels, cfg.N, cfg.N):
        raise ValueError(
            f"predict: X holds {x.shape[1]} patches of {x.shape[2]} x {x.shape[3]} per group, but the model was "
            f"trained with gridsize {cfg.gridsize} ({cfg.channels} patches) of {cfg.N} x {cfg.N}; "
            f"group the data with the model's N and gridsize"
        )
    amplitude, phase = predict_object_patches(model, x / np.float32(intensity_scale_of(model)), batch_size)
    return legacy_patches(amplitude, phase)
