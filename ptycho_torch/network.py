"""The PtychoPINN network in plain torch (no Lightning): encoder-decoder, object head, and the
physics layer that turns predicted object patches into predicted diffraction amplitudes.

docs/architecture.md is the layer-by-layer specification (the Keras backend mirrors it with copied
weights); change both together. Kept free of Lightning so inference loads in a fraction of the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

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
from ptycho_torch.physics import extract_patches, illuminate, intensity, propagate
from ptycho_torch.reassembly import reassemble_patches

__all__ = [
    "BASE_WIDTHS",
    "encoder_widths",
    "decoder_widths",
    "ConvBlock",
    "Encoder",
    "DecoderTrunk",
    "DecoderLast",
    "PhysicsLayer",
    "PtychoPINN",
    "NetworkOutput",
    "head_bias_for",
]

_ACTIVATIONS = {"sigmoid": torch.sigmoid, "softplus": nn.functional.softplus, "relu": torch.relu, "swish": nn.functional.silu}


def _conv3x3(c_in: int, c_out: int) -> nn.Conv2d:
    """3 x 3 convolution, stride 1, zero padding 1 (Keras ``padding='same'``), He-initialised."""
    conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=True)
    nn.init.kaiming_normal_(conv.weight, mode="fan_in", nonlinearity="relu")
    nn.init.zeros_(conv.bias)
    return conv


class ConvBlock(nn.Sequential):
    """conv3x3 -> ReLU -> conv3x3 -> ReLU."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__(_conv3x3(c_in, c_out), nn.ReLU(), _conv3x3(c_out, c_out), nn.ReLU())


class Encoder(nn.Module):
    """Three ConvBlocks, each followed by 2 x 2 max pooling: (B, C, N, N) -> (B, e3, N/8, N/8)."""

    def __init__(self, c_in: int, widths: tuple[int, int, int]):
        super().__init__()
        blocks, c = [], c_in
        for w in widths:
            blocks += [ConvBlock(c, w), nn.MaxPool2d(2)]
            c = w
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class DecoderTrunk(nn.Module):
    """Per level: nearest-neighbour 2x upsampling, then a ConvBlock."""

    def __init__(self, c_in: int, widths: tuple[int, ...]):
        super().__init__()
        levels, c = [], c_in
        for w in widths:
            levels += [nn.Upsample(scale_factor=2, mode="nearest"), ConvBlock(c, w)]
            c = w
        self.levels = nn.Sequential(*levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.levels(x)


class DecoderLast(nn.Module):
    """The decoder's last stage: one conv3x3 head per quantity, the output activations, and the
    zero padding of a central prediction to the full patch.

    Amplitude ``act(conv(f_amp))`` starts at 0.5, phase ``pi * tanh(conv(f_phase))`` at 0; both
    (B, C, N, N), zero outside the predicted central ``n' x n'`` window.
    """

    def __init__(self, c_amp: int, c_phase: int, channels: int, n: int, predicted: int, amp_activation: str):
        super().__init__()
        self.amp_head = nn.Conv2d(c_amp, channels, kernel_size=3, stride=1, padding=1, bias=True)
        self.phase_head = nn.Conv2d(c_phase, channels, kernel_size=3, stride=1, padding=1, bias=True)
        for head, bias in ((self.amp_head, head_bias_for(amp_activation)), (self.phase_head, 0.0)):
            nn.init.normal_(head.weight, mean=0.0, std=HEAD_WEIGHT_STD)
            nn.init.constant_(head.bias, bias)
        self.amp_activation = amp_activation
        self.pad = (n - predicted) // 2

    def forward(self, f_amp: torch.Tensor, f_phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        amplitude = _ACTIVATIONS[self.amp_activation](self.amp_head(f_amp))
        phase = math.pi * torch.tanh(self.phase_head(f_phase))
        if self.pad:
            p = (self.pad, self.pad, self.pad, self.pad)
            amplitude = nn.functional.pad(amplitude, p)
            phase = nn.functional.pad(phase, p)
        return amplitude, phase


def predicted_mask(n: int, predicted: int) -> torch.Tensor:
    """(N, N) float mask: 1 on the central predicted window, 0 on the zero padding."""
    mask = torch.zeros((n, n))
    lo = (n - predicted) // 2
    mask[lo : lo + predicted, lo : lo + predicted] = 1.0
    return mask


class PhysicsLayer(nn.Module):
    """Object patches -> predicted diffraction amplitudes (DESIGN "The physics").

    ``O = A exp(i phi)``; with C > 1 and ``object_big`` the C patches of a group are merged on a
    shared (N + 2 * N/4)^2 canvas at their offsets (weighted average over the predicted windows) and
    re-extracted (the overlap constraint); then ``sigma * |propagate(illuminate(P, O))|`` with the
    learnable positive ``sigma = exp(log_intensity_scale)``.
    """

    def __init__(self, cfg: ModelConfig, probe: torch.Tensor):
        super().__init__()
        n = cfg.N
        if tuple(probe.shape) != (n, n):
            raise ValueError(f"probe: expected shape ({n}, {n}) for N={n}, got {tuple(probe.shape)}")
        probe = probe.to(torch.complex64)
        if cfg.probe_mask:
            rows, cols = torch.meshgrid(torch.arange(n) - n / 2, torch.arange(n) - n / 2, indexing="ij")
            probe = probe * ((rows**2 + cols**2) <= (n / 2) ** 2)
        self.n = n
        self.channels = cfg.channels
        self.overlap = cfg.channels > 1 and cfg.object_big
        self.canvas = n + 2 * (n // 4)
        self.register_buffer("probe", probe)
        mask = predicted_mask(n, predicted_size(cfg))
        self.register_buffer("merge_weights", mask)
        # sigma0 makes the starting prediction (|O| = 0.5 on the window) carry the normalised mean
        # energy (N/2)^2: sigma0^2 * 0.25 * sum(|P|^2 * mask) = (N/2)^2.
        energy = float(torch.sum(intensity(probe) * mask))
        if not energy > 0:
            raise ValueError("probe: zero intensity inside the predicted window; cannot set the intensity scale")
        sigma0 = (n / 2) / math.sqrt(AMPLITUDE_START**2 * energy)
        self.log_intensity_scale = nn.Parameter(torch.tensor(math.log(sigma0)), requires_grad=cfg.intensity_scale_trainable)

    def object_patches(self, amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        return torch.polar(amplitude, phase)

    def overlap_constraint(self, patches: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Merge the C patches of each group at their offsets and re-extract them: (B, C, N, N)."""
        centre = self.canvas // 2
        positions = offsets.to(torch.float64) + centre
        merged = reassemble_patches(patches, positions, (self.canvas, self.canvas), self.merge_weights)
        return extract_patches(merged, positions, self.n)

    def forward(self, amplitude: torch.Tensor, phase: torch.Tensor, offsets: torch.Tensor | None) -> torch.Tensor:
        patches = self.object_patches(amplitude, phase)
        if self.overlap:
            if offsets is None:
                raise ValueError("offsets: required for gridsize > 1 with object_big (the overlap constraint)")
            patches = self.overlap_constraint(patches, offsets)
        far_field = propagate(illuminate(self.probe, patches))
        return torch.exp(self.log_intensity_scale) * torch.sqrt(intensity(far_field) + 1e-12)


@dataclass
class NetworkOutput:
    """Predicted diffraction amplitudes and the object patches behind them, all (B, C, N, N)."""

    amplitude: torch.Tensor
    object_amplitude: torch.Tensor
    object_phase: torch.Tensor


class PtychoPINN(nn.Module):
    """Diffraction amplitudes (B, C, N, N) + group offsets (B, C, 2) -> :class:`NetworkOutput`."""

    def __init__(self, cfg: ModelConfig, probe: torch.Tensor):
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        e = encoder_widths(cfg)
        d = decoder_widths(cfg)
        self.encoder = Encoder(c, e)
        self.decoder_amp = DecoderTrunk(e[-1], d)
        self.decoder_phase = DecoderTrunk(e[-1], d)
        self.decoder_last = DecoderLast(d[-1], d[-1], c, cfg.N, predicted_size(cfg), cfg.amp_activation)
        self.physics = PhysicsLayer(cfg, probe)

    def predict_object(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network proper: (amplitude, phase) object patches, each (B, C, N, N)."""
        if x.dim() != 4 or x.shape[1] != self.cfg.channels or x.shape[-1] != self.cfg.N or x.shape[-2] != self.cfg.N:
            raise ValueError(
                f"diffraction input: expected shape (B, {self.cfg.channels}, {self.cfg.N}, {self.cfg.N}) "
                f"for gridsize {self.cfg.gridsize}, N {self.cfg.N}; got {tuple(x.shape)}"
            )
        z = self.encoder(x)
        return self.decoder_last(self.decoder_amp(z), self.decoder_phase(z))

    def forward(self, x: torch.Tensor, offsets: torch.Tensor | None = None) -> NetworkOutput:
        amplitude, phase = self.predict_object(x)
        return NetworkOutput(self.physics(amplitude, phase, offsets), amplitude, phase)
