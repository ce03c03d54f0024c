"""The PtychoPINN network in Keras: the TensorFlow twin of :mod:`ptycho_torch.network`.

Layer for layer the same architecture (docs/architecture.md), so weights copy both ways
(:mod:`ptycho.tf_backend.parity`) and the two forwards agree to float32 tolerance:

- input: normalised diffraction amplitudes ``(B, C, N, N)`` (channels first, as in torch; the convs
  run channels-last inside because TensorFlow's CPU convolutions want NHWC) and group offsets
  ``(B, C, 2)``;
- encoder: three blocks ``conv3x3-ReLU-conv3x3-ReLU`` + 2x2 max pooling, widths
  ``(8, 16, 32) * n_filters_scale`` -> ``(B, N/8, N/8, e3)``;
- two decoder trunks (amplitude, phase): per level nearest 2x upsampling + a conv block, widths
  ``(e2, e1, e1)[:levels]`` up to the predicted size (N/2 when only the centre is predicted);
- heads: conv3x3 -> ``C`` channels; amplitude ``act(.)`` (starts at 0.5), phase ``pi * tanh(.)``;
  zero-padded from the predicted size to N;
- physics: ``O = A exp(i phi)``; with C > 1 and ``object_big`` the overlap constraint (merge the
  group's patches on an ``N + 2 (N/4)`` canvas at their offsets, re-extract); then
  ``sigma * |propagate(illuminate(P, O))|`` with ``sigma = exp(log_intensity_scale)``.

Keras layer names are the torch parameter paths with dots as underscores
(``encoder.blocks.0.0`` -> ``encoder_blocks_0_0``), which is what the weight copy relies on.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from ptycho.tf_backend.runtime import tf  # first: sets TensorFlow's runtime options before keras loads it
import keras

from ptycho.config.config import ModelConfig
from ptycho.architecture import (  # the sizes both backends share
    AMPLITUDE_START,
    BASE_WIDTHS,
    HEAD_WEIGHT_STD,
    decoder_widths,
    encoder_widths,
    head_bias_for,
    predicted_size,
)
from ptycho.tf_backend.physics import extract_patches, illuminate, intensity, poisson_nll, propagate
from ptycho.tf_backend.reassembly import reassemble_patches

__all__ = [
    "BASE_WIDTHS",
    "AMPLITUDE_START",
    "HEAD_WEIGHT_STD",
    "encoder_widths",
    "predicted_size",
    "decoder_widths",
    "head_bias_for",
    "predicted_mask",
    "initial_log_intensity_scale",
    "PhysicsLayer",
    "PtychoPINN",
    "NetworkOutput",
    "build_model",
    "training_loss",
]

_ACTIVATIONS = {"sigmoid": tf.sigmoid, "softplus": tf.nn.softplus, "relu": tf.nn.relu, "swish": tf.nn.silu}


def predicted_mask(n: int, predicted: int) -> np.ndarray:
    """(N, N) float32 mask: 1 on the central predicted window, 0 on the zero padding."""
    mask = np.zeros((n, n), np.float32)
    lo = (n - predicted) // 2
    mask[lo : lo + predicted, lo : lo + predicted] = 1.0
    return mask


def masked_probe(cfg: ModelConfig, probe: np.ndarray) -> np.ndarray:
    """The probe as used by the physics: complex64, cut to the inscribed disc with ``probe_mask``."""
    n = cfg.N
    probe = np.asarray(probe).astype(np.complex64)
    if probe.shape != (n, n):
        raise ValueError(f"probe: expected shape ({n}, {n}) for N={n}, got {probe.shape}")
    if cfg.probe_mask:
        rows, cols = np.meshgrid(np.arange(n) - n / 2, np.arange(n) - n / 2, indexing="ij")
        probe = probe * ((rows**2 + cols**2) <= (n / 2) ** 2)
    return probe


def initial_log_intensity_scale(cfg: ModelConfig, probe: np.ndarray) -> float:
    """``log sigma0``: the starting prediction (|O| = 0.5 on the window) carries the normalised mean
    energy (N/2)^2, i.e. ``sigma0^2 * 0.25 * sum(|P|^2 * mask) = (N/2)^2``."""
    n = cfg.N
    energy = float(np.sum(np.abs(probe.astype(np.complex64)) ** 2 * predicted_mask(n, predicted_size(cfg))))
    if not energy > 0:
        raise ValueError("probe: zero intensity inside the predicted window; cannot set the intensity scale")
    return math.log((n / 2) / math.sqrt(AMPLITUDE_START**2 * energy))


_TORCH_MODULES = ("encoder_blocks_", "decoder_amp_levels_", "decoder_phase_levels_", "decoder_last_")


def torch_path(keras_name: str) -> str:
    """The torch module path of a Keras layer name: ``decoder_amp_levels_1_0`` ->
    ``decoder_amp.levels.1.0``, ``decoder_last_amp_head`` -> ``decoder_last.amp_head``."""
    for prefix in _TORCH_MODULES:
        if keras_name.startswith(prefix):
            module, _, attr = prefix[:-1].rpartition("_") if prefix != "decoder_last_" else ("decoder_last", "", "")
            rest = keras_name[len(prefix) :]
            if prefix == "decoder_last_":
                return f"decoder_last.{rest}"
            return f"{module}.{attr}." + rest.replace("_", ".")
    raise ValueError(f"{keras_name!r} is not a PtychoPINN convolution")


def _conv3x3(filters: int, name: str) -> keras.layers.Conv2D:
    """3 x 3 convolution, stride 1, 'same' padding, He (Kaiming normal, fan-in) initialised."""
    return keras.layers.Conv2D(
        filters,
        3,
        padding="same",
        kernel_initializer=keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal"),
        bias_initializer="zeros",
        name=name,
    )


def _conv(layer: keras.layers.Conv2D, x: tf.Tensor) -> tf.Tensor:
    """The layer's 3 x 3 'same' convolution as ``conv2d + bias_add`` on its own weights: the form
    TensorFlow's graph optimiser fuses with the following ReLU (measured ~15% faster per training
    step than calling the Keras layer, which adds its bias separately)."""
    return tf.nn.bias_add(tf.nn.conv2d(x, layer.kernel, 1, "SAME"), layer.bias)


def _max_pool2(x: tf.Tensor) -> tf.Tensor:
    """2 x 2 max pooling, stride 2, 'valid' (torch ``MaxPool2d(2)``, Keras ``MaxPooling2D(2)``)."""
    return tf.nn.max_pool2d(x, 2, 2, "VALID")


def _upsample2(x: tf.Tensor) -> tf.Tensor:
    """Nearest-neighbour 2x upsampling of NHWC maps (torch ``Upsample(scale_factor=2)``)."""
    return tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)


class NetworkOutput(NamedTuple):
    """Predicted diffraction amplitudes and the object patches behind them, all (B, C, N, N)."""

    amplitude: tf.Tensor
    object_amplitude: tf.Tensor
    object_phase: tf.Tensor


class PhysicsLayer(keras.layers.Layer):
    """Object patches -> predicted diffraction amplitudes; holds the probe and ``sigma``.

    The probe is stored as two non-trainable float weights (real, imaginary) so it travels in the
    Keras weights file; ``log_intensity_scale`` is trainable per ``intensity_scale_trainable``.
    """

    def __init__(self, cfg: ModelConfig, probe: np.ndarray, **kwargs):
        super().__init__(name="physics", **kwargs)
        self.cfg = cfg
        n = cfg.N
        probe = masked_probe(cfg, probe)
        self.n = n
        self.overlap = cfg.channels > 1 and cfg.object_big
        self.canvas = n + 2 * (n // 4)
        self.merge_weights = tf.constant(predicted_mask(n, predicted_size(cfg)))
        self.probe_real = self.add_weight(
            name="probe_real", shape=(n, n), initializer=keras.initializers.Constant(probe.real), trainable=False
        )
        self.probe_imag = self.add_weight(
            name="probe_imag", shape=(n, n), initializer=keras.initializers.Constant(probe.imag), trainable=False
        )
        self.log_intensity_scale = self.add_weight(
            name="log_intensity_scale",
            shape=(),
            initializer=keras.initializers.Constant(initial_log_intensity_scale(cfg, probe)),
            trainable=cfg.intensity_scale_trainable,
        )

    @property
    def probe(self) -> tf.Tensor:
        return tf.complex(tf.convert_to_tensor(self.probe_real), tf.convert_to_tensor(self.probe_imag))

    def set_probe(self, probe: np.ndarray) -> None:
        probe = masked_probe(self.cfg, probe)
        self.probe_real.assign(probe.real.astype(np.float32))
        self.probe_imag.assign(probe.imag.astype(np.float32))

    @staticmethod
    def object_patches(amplitude: tf.Tensor, phase: tf.Tensor) -> tf.Tensor:
        return tf.complex(amplitude * tf.cos(phase), amplitude * tf.sin(phase))

    def overlap_constraint(self, patches: tf.Tensor, offsets: tf.Tensor) -> tf.Tensor:
        """Merge the C patches of each group at their offsets and re-extract them: (B, C, N, N)."""
        positions = tf.cast(offsets, tf.float64) + float(self.canvas // 2)
        merged = reassemble_patches(patches, positions, (self.canvas, self.canvas), self.merge_weights)
        return extract_patches(merged, positions, self.n)

    def call(self, amplitude: tf.Tensor, phase: tf.Tensor, offsets: tf.Tensor | None = None) -> tf.Tensor:
        patches = self.object_patches(amplitude, phase)
        if self.overlap:
            if offsets is None:
                raise ValueError("offsets: required for gridsize > 1 with object_big (the overlap constraint)")
            patches = self.overlap_constraint(patches, offsets)
        far_field = propagate(illuminate(self.probe, patches))
        sigma = tf.exp(tf.convert_to_tensor(self.log_intensity_scale))
        return sigma * tf.sqrt(intensity(far_field) + 1e-12)


class PtychoPINN(keras.Model):
    """Diffraction amplitudes (B, C, N, N) + group offsets (B, C, 2) -> :class:`NetworkOutput`."""

    def __init__(self, cfg: ModelConfig, probe: np.ndarray, **kwargs):
        super().__init__(name="ptycho_pinn", **kwargs)
        self.cfg = cfg
        e = encoder_widths(cfg)
        d = decoder_widths(cfg)
        # encoder.blocks = [ConvBlock, MaxPool] * 3 -> conv blocks at torch indices 0, 2, 4.
        self.encoder_convs = []
        for i, w in enumerate(e):
            for j in (0, 2):
                self.encoder_convs.append(_conv3x3(w, f"encoder_blocks_{2 * i}_{j}"))
        # decoder_*.levels = [Upsample, ConvBlock] * L -> conv blocks at torch indices 1, 3, 5.
        self.decoder_amp_convs = []
        self.decoder_phase_convs = []
        for i, w in enumerate(d):
            for j in (0, 2):
                self.decoder_amp_convs.append(_conv3x3(w, f"decoder_amp_levels_{2 * i + 1}_{j}"))
                self.decoder_phase_convs.append(_conv3x3(w, f"decoder_phase_levels_{2 * i + 1}_{j}"))
        c = cfg.channels
        head_init = keras.initializers.RandomNormal(0.0, HEAD_WEIGHT_STD)
        self.amp_head = keras.layers.Conv2D(
            c, 3, padding="same", kernel_initializer=head_init,
            bias_initializer=keras.initializers.Constant(head_bias_for(cfg.amp_activation)),
            name="decoder_last_amp_head",
        )
        self.phase_head = keras.layers.Conv2D(
            c, 3, padding="same", kernel_initializer=head_init, bias_initializer="zeros",
            name="decoder_last_phase_head",
        )
        self.physics = PhysicsLayer(cfg, probe)
        self.pad = (cfg.N - predicted_size(cfg)) // 2
        self._activation = _ACTIVATIONS[cfg.amp_activation]
        # Create every kernel now (input widths are known), in torch's order: the forward below
        # uses the Keras layers as weight holders only (see _conv).
        c_in = c
        for layer in self.encoder_convs:
            layer.build((None, None, None, c_in))
            c_in = layer.filters
        for convs in (self.decoder_amp_convs, self.decoder_phase_convs):
            c_in = e[-1]
            for layer in convs:
                layer.build((None, None, None, c_in))
                c_in = layer.filters
        self.amp_head.build((None, None, None, d[-1]))
        self.phase_head.build((None, None, None, d[-1]))

    # -------------------------------------------------------------- layer map for the weight copy

    def conv_layers(self) -> dict[str, keras.layers.Conv2D]:
        """Every convolution by its torch parameter path (``encoder.blocks.0.0``, ...)."""
        layers = [*self.encoder_convs, *self.decoder_amp_convs, *self.decoder_phase_convs, self.amp_head, self.phase_head]
        return {torch_path(layer.name): layer for layer in layers}

    # -------------------------------------------------------------- forward

    @staticmethod
    def _block(x: tf.Tensor, convs: list, i: int) -> tf.Tensor:
        return tf.nn.relu(_conv(convs[2 * i + 1], tf.nn.relu(_conv(convs[2 * i], x))))

    def predict_object(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The network proper: (amplitude, phase) object patches, each (B, C, N, N)."""
        cfg = self.cfg
        if x.shape.rank != 4 or x.shape[1] != cfg.channels or x.shape[2] != cfg.N or x.shape[3] != cfg.N:
            raise ValueError(
                f"diffraction input: expected shape (B, {cfg.channels}, {cfg.N}, {cfg.N}) "
                f"for gridsize {cfg.gridsize}, N {cfg.N}; got {tuple(x.shape)}"
            )
        z = tf.transpose(x, [0, 2, 3, 1])
        for i in range(len(self.encoder_convs) // 2):
            z = _max_pool2(self._block(z, self.encoder_convs, i))
        f_amp, f_phase = z, z
        for i in range(len(self.decoder_amp_convs) // 2):
            f_amp = self._block(_upsample2(f_amp), self.decoder_amp_convs, i)
            f_phase = self._block(_upsample2(f_phase), self.decoder_phase_convs, i)
        amplitude = tf.transpose(self._activation(_conv(self.amp_head, f_amp)), [0, 3, 1, 2])
        phase = tf.transpose(math.pi * tf.tanh(_conv(self.phase_head, f_phase)), [0, 3, 1, 2])
        if self.pad:
            p = [[0, 0], [0, 0], [self.pad, self.pad], [self.pad, self.pad]]
            amplitude = tf.pad(amplitude, p)
            phase = tf.pad(phase, p)
        return amplitude, phase

    def call(self, x: tf.Tensor, offsets: tf.Tensor | None = None, training: bool | None = None) -> NetworkOutput:
        amplitude, phase = self.predict_object(x)
        return NetworkOutput(self.physics(amplitude, phase, offsets), amplitude, phase)

    def predict(self, x, batch_size=None, verbose="auto", steps=None, callbacks=None):  # noqa: ARG002
        """The legacy Keras form ``predict([X * intensity_scale, local_offsets])`` -> complex object
        patches (B, N, N, C), as ptychodus calls it (:func:`ptycho.tf_backend.inference.predict_legacy`)."""
        from ptycho.tf_backend.inference import PREDICT_BATCH, predict_legacy

        return predict_legacy(self, x, batch_size or PREDICT_BATCH)


def training_loss(predicted: tf.Tensor, measured: tf.Tensor, nll_weight: float, mae_weight: float) -> tf.Tensor:
    """``nll_weight * PoissonNLL(A_hat^2; A^2) + mae_weight * mean|A_hat - A|`` on normalised
    amplitudes, as in :func:`ptycho_torch.model.training_loss` (the NLL's minimiser does not depend
    on the normalisation: ``NLL(s lam, s k) = s NLL(lam, k) + const``)."""
    measured = tf.cast(measured, predicted.dtype)
    loss = tf.zeros((), predicted.dtype)
    if nll_weight:
        loss += nll_weight * poisson_nll(tf.square(predicted), tf.square(measured))
    if mae_weight:
        loss += mae_weight * tf.reduce_mean(tf.abs(predicted - measured))
    return loss


def build_model(cfg: ModelConfig, probe: np.ndarray | None = None) -> PtychoPINN:
    """A built (weights created) :class:`PtychoPINN` for ``cfg``.

    Without ``probe`` the model gets a flat placeholder probe: the caller loads weights (which carry
    the real probe and ``sigma``) or sets one with ``model.physics.set_probe``.
    """
    cfg.require_resolved("build_model")  # N = 0 ("from the data") must be resolved by now
    if probe is None:
        probe = np.ones((cfg.N, cfg.N), np.complex64)
    model = PtychoPINN(cfg, probe)
    # Every weight already exists (the layers are built in __init__), so no dummy forward pass is
    # needed: that pass cost a second or two of eager execution per model on this machine.
    model.physics.built = True
    model.built = True
    return model
