"""Comparing a reconstruction with a reference reconstruction of the same scan, no ground truth.

On experimental data the field's yardstick is an iterative reconstruction of the same scan. Two
reconstructions of one scan agree only up to a small translation (a network or an updated probe
may shift the object), an amplitude scale and a global phase, so the candidate is registered to
the reference first: subpixel phase correlation inside the scanned area, then the complex factor
that best maps one onto the other. Both arrays index object pixels from the same origin (as the
stitched canvases and :mod:`ptycho.iterative` canvases do); they may differ in size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage
from skimage.registration import phase_cross_correlation

from ptycho.evaluation import QualityFigures, Region, evaluate_reconstruction, scanned_region
from ptycho.iterative.solver import ReconstructionResult

__all__ = ["Registration", "on_grid", "register_to_reference", "compare_to_reference"]

Feature = Literal["complex", "amplitude", "phase"]
REFINEMENTS = 3


@dataclass(frozen=True)
class Registration:
    """How a reconstruction was mapped onto the reference.

    ``shift`` (rows, cols) was applied to the reconstruction, then the complex ``scale``;
    ``aligned`` is the result on the reference's grid; ``region`` the part of the scanned area
    the shift left valid; ``error`` the registration's normalised RMS error (0 best, 1 worst).
    """

    shift: tuple[float, float]
    scale: complex
    error: float
    aligned: np.ndarray
    region: Region


def on_grid(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``image`` cropped or zero-padded at the bottom/right to ``shape`` (same origin)."""
    out = np.zeros(shape, dtype=np.result_type(image.dtype, np.complex64))
    rows, cols = min(shape[0], image.shape[0]), min(shape[1], image.shape[1])
    out[:rows, :cols] = image[:rows, :cols]
    return out


def _feature(image: np.ndarray, feature: Feature) -> np.ndarray:
    """The image correlation looks at: mean removed and Hann-windowed (the crop is not periodic)."""
    if feature == "complex":
        values = image.astype(np.complex128)
    elif feature == "amplitude":
        values = np.abs(image).astype(np.float64)
    elif feature == "phase":
        values = np.angle(image * np.conj(np.mean(image)))
    else:
        raise ValueError(f"feature: invalid value {feature!r}; expected complex, amplitude or phase")
    values = values - values.mean()
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    return values * window


def _shift_complex(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """Subpixel translation by cubic splines (local: junk outside the scanned area stays out)."""
    real = ndimage.shift(image.real.astype(np.float64), shift, order=3, mode="nearest")
    imag = ndimage.shift(image.imag.astype(np.float64), shift, order=3, mode="nearest")
    return real + 1j * imag


def _shrink(region: Region, by: int, shape: tuple[int, int]) -> Region:
    rows, cols = region
    out = (slice(rows.start + by, rows.stop - by), slice(cols.start + by, cols.stop - by))
    if out[0].stop - out[0].start < 8 or out[1].stop - out[1].start < 8:
        raise ValueError(f"registration: a shift of {by} px leaves less than 8 x 8 pixels of the scanned area {region}")
    return out


def register_to_reference(
    recon: np.ndarray,
    reference: np.ndarray,
    positions: np.ndarray,
    *,
    margin: float = 0.0,
    feature: Feature = "complex",
    upsample_factor: int = 20,
) -> Registration:
    """Register the complex ``recon`` to the complex ``reference`` inside the scanned area.

    ``positions`` (P, 2) as (x, y) on the reference's grid define the area (see
    :func:`ptycho.evaluation.scanned_region`, shrunk by ``margin`` px). The shift is found by
    phase correlation (skimage, to 1/``upsample_factor`` px) on the ``feature`` image, applied
    with cubic splines; then the complex scale ``c = <recon, ref> / <recon, recon>`` removes the
    amplitude scale and global phase.
    """
    recon = np.asarray(recon)
    reference = np.asarray(reference)
    if recon.ndim != 2 or reference.ndim != 2:
        raise ValueError(f"registration: expected 2-D images, got shapes {recon.shape} and {reference.shape}")
    shape = reference.shape
    moving = on_grid(recon, shape)
    region = scanned_region(positions, shape, margin)
    target = _feature(reference[region], feature)
    shift_rc = (0.0, 0.0)
    shifted = moving.astype(np.complex128)
    for _ in range(REFINEMENTS):
        # the window stays put while the content moves, which biases a single estimate towards
        # zero shift; re-registering the shifted image measures (and removes) what is left
        step, error, _ = phase_cross_correlation(
            target, _feature(shifted[region], feature), upsample_factor=upsample_factor, normalization=None
        )
        shift_rc = (shift_rc[0] + float(step[0]), shift_rc[1] + float(step[1]))
        shifted = _shift_complex(moving, shift_rc)
    valid = _shrink(region, int(np.ceil(max(abs(shift_rc[0]), abs(shift_rc[1])))) + 1, shape)
    a, b = shifted[valid], reference[valid].astype(np.complex128)
    power = float(np.sum(np.abs(a) ** 2))
    scale = complex(np.sum(np.conj(a) * b) / power) if power > 0 else 1.0 + 0j
    return Registration(
        shift=shift_rc, scale=scale, error=float(error),
        aligned=(scale * shifted).astype(np.complex64), region=valid,
    )


def compare_to_reference(
    recon: np.ndarray,
    reference: np.ndarray | ReconstructionResult,
    positions: np.ndarray,
    *,
    margin: float = 0.0,
    feature: Feature = "complex",
    phase_plane: bool = False,
) -> tuple[QualityFigures, Registration]:
    """Quality figures of ``recon`` against ``reference`` (used as the truth) after registration,
    inside the scanned area: the figure that exists for experimental data.

    ``reference`` may be a :class:`ReconstructionResult`; its object is then taken on ``recon``'s
    grid in the input positions' frame (its canvas offset undone). ``positions`` are the scan
    positions as the data give them.
    """
    if isinstance(reference, ReconstructionResult):
        from ptycho.iterative.reference import object_in_input_frame

        reference = object_in_input_frame(reference, np.shape(recon))
    registration = register_to_reference(recon, reference, positions, margin=margin, feature=feature)
    figures = evaluate_reconstruction(registration.aligned, reference, registration.region, phase_plane=phase_plane)
    return figures, registration
