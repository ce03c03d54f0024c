"""Reconstruction quality against a ground truth: MAE, PSNR, SSIM and FRC-0.5, scored honestly.

A ptychographic reconstruction is defined up to a small translation, an amplitude scale and a
global phase (and, with gridsize 1, nearly a phase ramp), so all are aligned before any metric is
taken. Only the well-illuminated region is scored (:func:`illuminated_region`: summed probe
intensity over every scan position at least half its maximum, eroded by a few pixels), because
the edge of a scan is seen too rarely for any method to reconstruct it, and a figure that mixes
it in says more about the scan than about the method. Phase SSIM uses the true phase range as its
data range ("strict phase"): with a fixed range of 1 even a flat phase scores high. Every figure
goes out with the flat-image floor beside it (:func:`score_reconstruction`), since a raw SSIM
means little without what a constant image scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = [
    "Region",
    "scanned_region",
    "ILLUMINATION_FRACTION",
    "ILLUMINATION_EROSION",
    "illuminated_region",
    "register_translation",
    "QualityReport",
    "score_reconstruction",
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
"""Rows and columns of a rectangle; every function that takes a region also takes a boolean mask."""

ILLUMINATION_FRACTION = 0.5
"""Scored pixels: summed probe intensity at least this fraction of its maximum."""
ILLUMINATION_EROSION = 3
"""Pixels the illuminated mask is eroded by, so the SSIM window (7 x 7) of a scored pixel sees
little of the poorly lit edge."""


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


def illuminated_region(
    probe: np.ndarray,
    positions: np.ndarray,
    shape: tuple[int, int],
    fraction: float = ILLUMINATION_FRACTION,
    erosion: int = ILLUMINATION_EROSION,
) -> np.ndarray:
    """Boolean (H, W) mask of the well-illuminated object pixels.

    The summed probe intensity over every scan position (``positions`` (P, 2) as (x, y), the same
    bilinear placement as the stitching) at least ``fraction`` of its maximum, eroded by
    ``erosion`` pixels. Raises ValueError when fewer than 8 x 8 pixels remain.
    """
    from ptycho.stitching import summed_illumination

    if not 0 < fraction <= 1:
        raise ValueError(f"fraction: expected 0 < fraction <= 1, got {fraction!r}")
    total = summed_illumination(probe, positions, tuple(shape))
    peak = float(total.max())
    if not peak > 0:
        raise ValueError("illuminated region: the probe has no intensity on the object")
    mask = total >= fraction * peak
    if erosion:
        mask = ndimage.binary_erosion(mask, iterations=int(erosion), border_value=0)
    if int(mask.sum()) < 64:
        raise ValueError(
            f"illuminated region: only {int(mask.sum())} pixels of {shape} are lit to {fraction:g} of the maximum "
            f"after eroding {erosion} px; need at least 64 to evaluate"
        )
    return mask


def _as_mask(region: Region | np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    if region is None:
        return np.ones(shape, dtype=bool)
    if isinstance(region, np.ndarray):
        if region.shape != tuple(shape) or region.dtype != bool:
            raise ValueError(f"region: expected a boolean mask of shape {tuple(shape)}, got {region.dtype} {region.shape}")
        return region
    mask = np.zeros(shape, dtype=bool)
    mask[region] = True
    return mask


def _bounding_box(mask: np.ndarray) -> Region:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def register_translation(
    recon: np.ndarray, truth: np.ndarray, mask: np.ndarray, upsample_factor: int = 10, max_shift: float = 8.0
) -> tuple[np.ndarray, tuple[float, float]]:
    """Shift the complex ``recon`` onto ``truth`` by cross-correlation inside ``mask``'s bounding box.

    Returns the shifted reconstruction (cubic splines, complex) and the shift (rows, cols) applied.
    A correlation peak beyond ``max_shift`` px is no registration: a poor reconstruction's spurious
    peak, or one in another frame. Then nothing is shifted (the shift reported is (0, 0)) and the
    reconstruction is scored as it stands, so it scores low rather than being flattered or crashing
    a benchmark.
    """
    from skimage.registration import phase_cross_correlation

    box = _bounding_box(mask)
    window = np.outer(np.hanning(box[0].stop - box[0].start), np.hanning(box[1].stop - box[1].start))

    def feature(image: np.ndarray) -> np.ndarray:
        values = np.asarray(image[box], dtype=np.complex128)
        return (values - values.mean()) * window

    recon = np.asarray(recon)
    target = feature(truth)
    if not np.any(np.abs(feature(recon)) > 0):  # a constant image has nothing to register by
        return recon, (0.0, 0.0)
    shift_rc = (0.0, 0.0)
    shifted = recon
    for _ in range(3):
        # the window stays put while the content moves, which biases one estimate towards zero
        # shift; re-registering the shifted image measures (and removes) what is left
        step, _error, _ = phase_cross_correlation(target, feature(shifted), upsample_factor=upsample_factor, normalization=None)
        if not np.any(step):
            break
        shift_rc = (shift_rc[0] + float(step[0]), shift_rc[1] + float(step[1]))
        if max(abs(shift_rc[0]), abs(shift_rc[1])) > max_shift:
            return recon, (0.0, 0.0)
        real = ndimage.shift(recon.real.astype(np.float64), shift_rc, order=3, mode="nearest")
        imag = ndimage.shift(recon.imag.astype(np.float64), shift_rc, order=3, mode="nearest")
        shifted = real + 1j * imag
    return shifted, shift_rc


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


def _masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray, data_range: float) -> float:
    """Mean of the SSIM map over ``mask`` (the map is taken on the whole image, so a scored pixel's
    window sees its true neighbourhood)."""
    _, smap = structural_similarity(
        np.asarray(a, np.float64), np.asarray(b, np.float64), data_range=data_range, full=True
    )
    return float(np.mean(smap[mask]))


def _masked_frc50(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """FRC-0.5 on ``mask``'s bounding box with the pixels outside the mask set to the mask's mean
    (so after mean removal they contribute nothing)."""
    box = _bounding_box(mask)
    inside = mask[box]
    a, b = np.array(a[box], np.float64), np.array(b[box], np.float64)
    a[~inside] = a[inside].mean()
    b[~inside] = b[inside].mean()
    return frc50(a, b)


def evaluate_reconstruction(
    recon: np.ndarray, truth: np.ndarray, region: Region | np.ndarray | None = None, phase_plane: bool = False
) -> QualityFigures:
    """All figures of a complex reconstruction against the complex truth (same pixel frame).

    ``region``: a rectangle (two slices) or a boolean mask of scored pixels (default: all).
    Amplitude: aligned by the ratio of means over the region, data range the true amplitude's
    range there. Phase: offset (and optionally plane) removed over the region, data range the true
    phase range there. SSIM is the SSIM map averaged over the region; FRC on its bounding box.
    """
    recon = np.asarray(recon)
    truth = np.asarray(truth)
    if recon.shape != truth.shape:
        raise ValueError(f"reconstruction shape {recon.shape} differs from the ground truth's {truth.shape}")
    mask = _as_mask(region, truth.shape)
    if not mask.any():
        raise ValueError("region: no pixel to evaluate")
    # Work on the bounding box (plus the SSIM window) only: cheaper, and the same figures.
    box = _bounding_box(mask)
    pad = 4
    box = (slice(max(box[0].start - pad, 0), box[0].stop + pad), slice(max(box[1].start - pad, 0), box[1].stop + pad))
    recon, truth, mask = recon[box], truth[box], mask[box]

    amp_t = np.abs(truth).astype(np.float64)
    amp_r = np.abs(recon).astype(np.float64)
    mean_r = float(amp_r[mask].mean())
    amp_r = amp_r * (float(amp_t[mask].mean()) / mean_r) if mean_r else amp_r
    ph_t = np.angle(truth).astype(np.float64)
    ph_t = _wrap(ph_t - float(np.angle(np.mean(np.exp(1j * ph_t[mask])))))
    ph_r = np.angle(recon).astype(np.float64)
    offset = float(np.angle(np.mean(np.exp(1j * (ph_r[mask] - ph_t[mask])))))
    ph_r = ph_t + _wrap(ph_r - ph_t - offset)
    if phase_plane:
        rows, cols = np.indices(ph_r.shape)
        design = np.stack([rows[mask], cols[mask], np.ones(int(mask.sum()))], axis=1)
        coef, *_ = np.linalg.lstsq(design, (ph_r - ph_t)[mask], rcond=None)
        ph_r = ph_r - (coef[0] * rows + coef[1] * cols + coef[2])
    amp_range = float(amp_t[mask].max() - amp_t[mask].min()) or 1.0
    ph_range = float(ph_t[mask].max() - ph_t[mask].min()) or 1.0
    return QualityFigures(
        amplitude_ssim=_masked_ssim(amp_r, amp_t, mask, amp_range),
        phase_ssim=_masked_ssim(ph_r, ph_t, mask, ph_range),
        amplitude_psnr=psnr(amp_r[mask], amp_t[mask], amp_range),
        phase_psnr=psnr(ph_r[mask], ph_t[mask], ph_range),
        amplitude_mae=mae(amp_r[mask], amp_t[mask]),
        phase_mae=mae(ph_r[mask], ph_t[mask]),
        amplitude_frc50=_masked_frc50(amp_r, amp_t, mask),
        phase_frc50=_masked_frc50(ph_r, ph_t, mask),
    )


@dataclass(frozen=True)
class QualityReport:
    """A reconstruction's figures, the flat image's figures on the same pixels (the floor), the
    registration shift (rows, cols) applied, and how many pixels were scored."""

    figures: QualityFigures
    flat: QualityFigures
    shift: tuple[float, float]
    pixels: int

    def as_dict(self) -> dict[str, float]:
        """Figures by name, the floors as ``flat_<name>``, plus ``registration_shift_px`` and
        ``scored_pixels``."""
        out: dict = dict(self.figures.as_dict())
        out.update({f"flat_{k}": v for k, v in self.flat.as_dict().items()})
        out["registration_shift_px"] = [round(v, 3) for v in self.shift]
        out["scored_pixels"] = self.pixels
        return out

    def summary(self) -> str:
        """One line: amplitude and strict phase SSIM with their floors."""
        f, z = self.figures, self.flat
        return (
            f"amplitude SSIM {f.amplitude_ssim:.3f} (flat {z.amplitude_ssim:.3f}), "
            f"strict phase SSIM {f.phase_ssim:.3f} (flat {z.phase_ssim:.3f}) over {self.pixels} well-lit px"
        )


def score_reconstruction(
    recon: np.ndarray,
    truth: np.ndarray,
    probe: np.ndarray,
    positions: np.ndarray,
    *,
    register: bool = True,
    phase_plane: bool = False,
    fraction: float = ILLUMINATION_FRACTION,
    erosion: int = ILLUMINATION_EROSION,
    region: np.ndarray | None = None,
) -> QualityReport:
    """The project's honest score of a complex reconstruction (H, W) in the truth's pixel frame.

    Region: :func:`illuminated_region` of ``probe`` over ``positions`` (P, 2) as (x, y). With
    ``register``, the reconstruction is first shifted onto the truth by cross-correlation
    (sub-pixel, at most a few px). Amplitude mean-matched, global phase removed, strict phase SSIM;
    the flat image (amplitude 1, phase 0) is scored on the same pixels as the floor. ``region``:
    that mask computed beforehand (to score many estimates of one scan).
    """
    recon = np.asarray(recon)
    truth = np.asarray(truth)
    if recon.shape != truth.shape:
        raise ValueError(f"reconstruction shape {recon.shape} differs from the ground truth's {truth.shape}")
    mask = illuminated_region(probe, positions, truth.shape, fraction, erosion) if region is None else _as_mask(region, truth.shape)
    shift = (0.0, 0.0)
    if register:
        recon, shift = register_translation(recon, truth, mask)
    figures = evaluate_reconstruction(recon, truth, mask, phase_plane=phase_plane)
    flat = evaluate_reconstruction(np.ones_like(truth), truth, mask, phase_plane=phase_plane)
    return QualityReport(figures=figures, flat=flat, shift=shift, pixels=int(mask.sum()))
