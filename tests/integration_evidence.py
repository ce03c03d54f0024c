"""The evidence both integration selectors (tests/torch/test_integration_workflow_torch.py and
tests/tf/test_integration_workflow_tf.py) demand of a train -> save -> load -> infer run: the same
training settings, the same artifact checks, the same "did training do something real" checks and
the same ``record_property`` names, so the harness reads both backends' figures alike.

Backend-free: each test passes its backend's deviance function and models.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ptycho import params
from ptycho.config.config import update_legacy_dict
from ptycho.evaluation import QualityFigures, evaluate_reconstruction, scanned_region
from ptycho.raw_data import GroupedData, RawData, generate_grouped_data

# The short training of the selector: enough to beat a flat image clearly, small enough for the
# brief's runtime budget (two CLI processes, one of them importing Lightning).
TRAIN_IMAGES = 512
TRAIN_EPOCHS = 3
# The checks: SSIM above the flat image's by these margins; deviance below this fraction of the
# untrained model's (the deviance is zero for a perfect model).
SSIM_MARGIN = 0.05
DEVIANCE_RATIO = 0.9
# Groups the deviances are compared on (a fixed, seeded subset: same groups for both models).
DEVIANCE_GROUPS = 256
# The figures recorded for the harness (QUAL rules read them by these names).
FIGURE_NAMES = ("amplitude_ssim", "phase_ssim", "amplitude_psnr", "phase_psnr", "amplitude_frc50", "phase_frc50")

RecordProperty = Callable[[str, Any], None]


@dataclass(frozen=True)
class TrainingEvidence:
    figures: QualityFigures
    flat: QualityFigures
    deviance_trained: float
    deviance_untrained: float


def quality_of(recon: np.ndarray, raw: RawData) -> tuple[QualityFigures, QualityFigures]:
    """Figures of ``recon`` (the object, H x W complex) and of a flat image against the ground
    truth, inside the scanned area."""
    region = scanned_region(raw.positions, raw.objectGuess.shape)
    flat = np.ones_like(raw.objectGuess)
    return evaluate_reconstruction(recon, raw.objectGuess, region), evaluate_reconstruction(flat, raw.objectGuess, region)


def failed_checks(e: TrainingEvidence) -> list[str]:
    """What says the model did not learn; empty when training did something real."""
    failures = []
    if not e.figures.amplitude_ssim > e.flat.amplitude_ssim + SSIM_MARGIN:
        failures.append(f"amplitude SSIM {e.figures.amplitude_ssim:.3f} not above flat {e.flat.amplitude_ssim:.3f} + {SSIM_MARGIN}")
    if not e.figures.phase_ssim > e.flat.phase_ssim + SSIM_MARGIN:
        failures.append(f"phase SSIM {e.figures.phase_ssim:.3f} not above flat {e.flat.phase_ssim:.3f} + {SSIM_MARGIN}")
    if not e.deviance_trained < DEVIANCE_RATIO * e.deviance_untrained:
        failures.append(f"deviance {e.deviance_trained:.4g} not below {DEVIANCE_RATIO} x untrained {e.deviance_untrained:.4g}")
    return failures


def deviance_pair(deviance_on: Callable[[Any, GroupedData], float], trained: Any, untrained: Any, raw: RawData,
                  model_config: Any) -> tuple[float, float]:
    """The Poisson deviance of both models on the same seeded groups (``deviance_on``: the
    backend's ``poisson_deviance_on``)."""
    update_legacy_dict(params.cfg, model_config)  # CONFIG-001 before grouping
    grouped = generate_grouped_data(raw, n_groups=DEVIANCE_GROUPS, seed=0)
    return deviance_on(trained, grouped), deviance_on(untrained, grouped)


def checked_reconstruction(infer_dir: Path, raw: RawData, record_property: RecordProperty) -> np.ndarray:
    """The inference outputs' artifact checks (ARTIF-002: two PNGs of the object's shape over 1 KB
    that PIL reads; ``reconstruction.npz`` of that shape); records their paths and the expected
    shape; returns the reconstruction (H x W complex)."""
    expected_shape = list(raw.objectGuess.shape)
    amp_png = infer_dir / "reconstruction_amplitude.png"
    phase_png = infer_dir / "reconstruction_phase.png"
    record_property("amplitude_png", str(amp_png))
    record_property("phase_png", str(phase_png))
    record_property("expected_png_shape", json.dumps(expected_shape))
    with np.load(infer_dir / "reconstruction.npz", allow_pickle=False) as npz:
        recon = npz["reconstruction"]
    assert list(recon.shape) == expected_shape
    for png in (amp_png, phase_png):
        assert png.is_file() and png.stat().st_size > 1024, f"{png}: missing or under 1 KB (ARTIF-002)"
        with Image.open(png) as im:
            im.verify()
        with Image.open(png) as im:
            assert im.format == "PNG" and [im.size[1], im.size[0]] == expected_shape
    return recon


def record_evidence(evidence: TrainingEvidence, record_property: RecordProperty) -> None:
    """The quality figures, the flat-image floor beside them and both deviances, for the harness."""
    for name in FIGURE_NAMES:
        record_property(name, round(float(getattr(evidence.figures, name)), 5))
    record_property("flat_amplitude_ssim", round(evidence.flat.amplitude_ssim, 5))
    record_property("flat_phase_ssim", round(evidence.flat.phase_ssim, 5))
    record_property("deviance_trained", round(evidence.deviance_trained, 4))
    record_property("deviance_untrained", round(evidence.deviance_untrained, 4))
