"""Reconstruction quality against a ground truth: MAE, PSNR, SSIM and FRC-0.5.

A ptychographic reconstruction is defined up to an amplitude scale and a global phase (and, with
gridsize 1, nearly a phase ramp), so both are aligned before any metric is taken. Phase SSIM uses
the true phase range as its data range: with a fixed range of 1 even a flat phase scores high.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = [
    "Region",
    "scanned_region",
    "align_amplitude",
    "align_phase",
    "ssim",
    "psnr",
    "mae",
    "frc_curve",
    "frc50",
    "QualityFigures",
    "evaluate_reconstruction",
]

Region = tuple[slice, slice]


def scanned_region(positions: np.ndarray, shape: tuple[int, int], margin: float = 0.0) -> Region:
    """Rows and columns between the outermost scan positions (shrunk by ``margin`` pixels): the area
    every pixel of which was illuminated by several overlapping probes."""
    positions = np.asarray(positions, dtype=np.float64)
    x0, y0 = positions.min(axis=0) + margin
    x1, y1 = positions.max(axis=0) - margin
    rows = slice(max(int(np.ceil(y0)), 0), min(int(np.floor(y1)) + 1, shape[0]))
    cols = slice(max(int(np.ceil(x0)), 0), min(int(np.floor(x1)) + 1, shape[1]))
    if rows.stop - rows.start < 8 or cols.stop - cols.start < 8:
        raise ValueError(f"scanned region: {rows}, {cols} is too small to evaluate (need at least 8 x 8 pixels)")
    return rows, cols


def align_amplitude(recon: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Rescale ``recon`` by the ratio of means so that only the shape of the amplitude is scored."""
    mean = float(np.mean(recon))
    if mean == 0:
        return np.asarray(recon, dtype=np.float64)
    return np.asarray(recon, dtype=np.float64) * (float(np.mean(truth)) / mean)


def _wrap(phase: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * phase))


def align_phase(recon: np.ndarray, truth: np.ndarray, plane: bool = False) -> np.ndarray:
    """Remove the global phase offset (circular mean of the difference) and optionally the best
    fitting phase plane, returning ``recon`` expressed next to ``truth``."""
    recon = np.asarray(recon, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    offset = float(np.angle(np.mean(np.exp(1j * (recon - truth)))))
    aligned = truth + _wrap(recon - truth - offset)
    if plane:
        rows, cols = np.indices(recon.shape)
        design = np.stack([rows.ravel(), cols.ravel(), np.ones(recon.size)], axis=1)
        coef, *_ = np.linalg.lstsq(design, (aligned - truth).ravel(), rcond=None)
        aligned = aligned - (design @ coef).reshape(recon.shape)
    return aligned


def ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    return float(structural_similarity(np.asarray(a, np.float64), np.asarray(b, np.float64), data_range=data_range))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if np.array_equal(a, b):
        return float("inf")
    return float(peak_signal_noise_ratio(b, a, data_range=data_range))


def mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def frc_curve(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fourier ring correlation of two images: ``(frequency in cycles/pixel, correlation)``."""
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    rows, cols = a.shape
    window = np.outer(np.hanning(rows), np.hanning(cols))
    fa = np.fft.fftshift(np.fft.fft2(a * window))
    fb = np.fft.fftshift(np.fft.fft2(b * window))
    fy = np.fft.fftshift(np.fft.fftfreq(rows))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(cols))[None, :]
    radius = np.hypot(fy, fx)
    n_rings = min(rows, cols) // 2
    ring = np.minimum((radius / 0.5 * n_rings).astype(int), n_rings)
    num = np.bincount(ring.ravel(), (fa * np.conj(fb)).real.ravel(), minlength=n_rings + 1)
    den_a = np.bincount(ring.ravel(), (np.abs(fa) ** 2).ravel(), minlength=n_rings + 1)
    den_b = np.bincount(ring.ravel(), (np.abs(fb) ** 2).ravel(), minlength=n_rings + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = num / np.sqrt(den_a * den_b)
    freq = (np.arange(n_rings + 1) + 0.5) / n_rings * 0.5
    return freq[1:n_rings], np.nan_to_num(corr[1:n_rings], nan=0.0)


def frc50(a: np.ndarray, b: np.ndarray) -> float:
    """Highest resolved frequency as a fraction of Nyquist: where the FRC first drops below 0.5
    (1.0 if it never does). Higher is better."""
    freq, corr = frc_curve(a, b)
    below = np.nonzero(corr < 0.5)[0]
    if below.size == 0:
        return 1.0
    return float(freq[below[0]] / 0.5)


@dataclass(frozen=True)
class QualityFigures:
    amplitude_ssim: float
    phase_ssim: float
    amplitude_psnr: float
    phase_psnr: float
    amplitude_mae: float
    phase_mae: float
    amplitude_frc50: float
    phase_frc50: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def evaluate_reconstruction(
    recon: np.ndarray, truth: np.ndarray, region: Region | None = None, phase_plane: bool = False
) -> QualityFigures:
    """All figures of a complex reconstruction against the complex truth inside ``region``.

    Amplitude: aligned by the ratio of means, data range of the true amplitude. Phase: offset
    (and optionally plane) removed, data range the true phase range.
    """
    recon = np.asarray(recon)
    truth = np.asarray(truth)
    if recon.shape != truth.shape:
        raise ValueError(f"reconstruction shape {recon.shape} differs from the ground truth's {truth.shape}")
    if region is not None:
        recon, truth = recon[region], truth[region]
    amp_t = np.abs(truth).astype(np.float64)
    amp_r = align_amplitude(np.abs(recon), amp_t)
    ph_t = np.angle(truth).astype(np.float64)
    ph_t = ph_t - float(np.angle(np.mean(np.exp(1j * ph_t))))
    ph_t = _wrap(ph_t)
    ph_r = align_phase(np.angle(recon), ph_t, plane=phase_plane)
    amp_range = float(amp_t.max() - amp_t.min()) or 1.0
    ph_range = float(ph_t.max() - ph_t.min()) or 1.0
    return QualityFigures(
        amplitude_ssim=ssim(amp_r, amp_t, amp_range),
        phase_ssim=ssim(ph_r, ph_t, ph_range),
        amplitude_psnr=psnr(amp_r, amp_t, amp_range),
        phase_psnr=psnr(ph_r, ph_t, ph_range),
        amplitude_mae=mae(amp_r, amp_t),
        phase_mae=mae(ph_r, ph_t),
        amplitude_frc50=frc50(amp_r, amp_t),
        phase_frc50=frc50(ph_r, ph_t),
    )
