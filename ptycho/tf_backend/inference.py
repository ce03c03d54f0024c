"""Prediction and reconstruction with a Keras PtychoPINN: the twin of :mod:`ptycho_torch.inference`.

Object patches and predicted diffraction come from traced functions (``tf.function``, one per model
and purpose, reused across calls); :func:`reconstruct` is the shared
:func:`ptycho.workflows.reconstruction.reconstruct_scan` over :class:`KerasPatchModel` (these
predictions and :func:`ptycho.tf_backend.reassembly.reassemble_position`). :func:`predict_legacy` is the Keras
``model.predict([X * intensity_scale, local_offsets])`` form ptychodus calls.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import numpy as np
from ptycho.tf_backend.runtime import tf  # first: sets TensorFlow's runtime options before keras loads it

from ptycho.raw_data import GroupedData, RawData
from ptycho.tf_backend.network import PtychoPINN
from ptycho.tf_backend.reassembly import reassemble_position
from ptycho.workflows.reconstruction import Reconstruction, deviance_of_prediction, reconstruct_scan

__all__ = [
    "PREDICT_BATCH",
    "input_signature",
    "predict_object_patches",
    "predict_forward",
    "predict_diffraction",
    "poisson_deviance_on",
    "KerasPatchModel",
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


def predict_forward(
    model: PtychoPINN, x: np.ndarray, offsets: np.ndarray, batch_size: int = PREDICT_BATCH
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object amplitude and phase patches and the predicted normalised diffraction amplitudes
    ``A_hat`` (each (B, C, N, N)) from one pass of the model (group ``offsets`` (B, C, 2))."""
    forward = _compiled(model, "forward", lambda: tf.function(
        lambda xb, ob: tuple(model(xb, ob)), input_signature=input_signature(model), autograph=False))
    amps, phases, diffraction = [], [], []
    for lo in range(0, len(x), batch_size):
        out = forward(tf.constant(x[lo : lo + batch_size]), tf.constant(offsets[lo : lo + batch_size], tf.float64))
        diffraction.append(out[0].numpy())
        amps.append(out[1].numpy())
        phases.append(out[2].numpy())
    return np.concatenate(amps), np.concatenate(phases), np.concatenate(diffraction)


def predict_diffraction(model: PtychoPINN, x: np.ndarray, offsets: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Predicted normalised diffraction amplitudes ``A_hat`` (B, C, N, N) through the physics layer."""
    return predict_forward(model, x, offsets, batch_size)[2]


def poisson_deviance_on(model: PtychoPINN, grouped: GroupedData, batch_size: int = PREDICT_BATCH) -> float:
    """:func:`ptycho.workflows.reconstruction.deviance_of_prediction` of ``model`` on every group of
    ``grouped`` (zero for a perfect model; the torch backend's figure, same definition)."""
    return deviance_of_prediction(predict_diffraction(model, grouped.X, grouped.offsets, batch_size), grouped)


class KerasPatchModel:
    """:class:`ptycho.workflows.reconstruction.PatchModel` of a Keras PtychoPINN: predictions in
    batches of ``batch_size`` groups, the reassembly with
    :func:`ptycho.tf_backend.reassembly.reassemble_position`, on the device of the caller's
    ``tf.device`` scope."""

    def __init__(self, model: PtychoPINN, batch_size: int = PREDICT_BATCH):
        self.model = model
        self.cfg = model.cfg
        self.batch_size = batch_size

    def predict(self, x: np.ndarray, offsets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if offsets is None:
            return (*predict_object_patches(self.model, x, self.batch_size), None)
        return predict_forward(self.model, x, offsets, self.batch_size)

    def reassemble(self, patches: np.ndarray, positions: np.ndarray, canvas_shape: tuple[int, int],
                   weights: np.ndarray) -> np.ndarray:
        return reassemble_position(patches, positions, canvas_shape, weights).numpy()


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
    (None: the legacy ``params.cfg['neighbor_count']``), predict, stitch
    (:func:`ptycho.workflows.reconstruction.reconstruct_scan`). Returns the reconstruction and the
    grouped data."""
    return reconstruct_scan(
        KerasPatchModel(model, batch_size), raw, neighbor_count=neighbor_count, n_images=n_images, seed=seed,
        flip_x=flip_x, flip_y=flip_y, transpose=transpose, M=M, timings=timings, with_deviance=with_deviance,
    )


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
