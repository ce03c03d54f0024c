"""The real client: ptychodus 1.7.0's PtychoPINN (TensorFlow) reconstructor, unmodified, trains,
saves, reopens and reconstructs with this library (docs/ptychodus.md).

ptychodus is installed from PyPI without its application dependencies (``pip install --no-deps
--target``, cached in the virtualenv), and only ``ptychodus.api`` and ``ptychodus.model.ptychopinn``
(with the ``processing`` subprocess machinery they use) are loaded; ``ptychodus/model/__init__.py``
would build the whole application. The driver runs in a child process, and ptychodus spawns its own
children for ``run_train`` and ``run_reconstruct``, as it does in the GUI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

PTYCHODUS = "ptychodus==1.7.0"
DRIVER = Path(__file__).with_name("ptychodus_client_driver.py")
# pip's words for "the registry could not be reached" (not for "the package is broken").
UNREACHABLE = (
    "NewConnectionError", "Failed to establish a new connection", "Temporary failure in name resolution",
    "Name or service not known", "Network is unreachable", "ConnectTimeout", "ReadTimeout", "ProxyError",
    "Max retries exceeded",
)


def _cache_root(config: pytest.Config) -> Path:
    """The virtualenv (survives ``pytest --cache-clear`` and fresh temp dirs), else pytest's cache."""
    if sys.prefix != sys.base_prefix and os.access(sys.prefix, os.W_OK):
        return Path(sys.prefix) / "test-downloads"
    return Path(config.cache.mkdir("test-downloads"))


@pytest.fixture(scope="session")
def ptychodus_site(request: pytest.FixtureRequest) -> Path:
    """A directory holding ptychodus 1.7.0 (``pip install --no-deps --target``), installed once."""
    site = _cache_root(request.config) / PTYCHODUS.replace("==", "-")
    if (site / "ptychodus" / "model" / "ptychopinn" / "_subprocess.py").is_file():
        return site
    site.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ptychodus-", dir=site.parent))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "--disable-pip-version-check",
             "--quiet", "--target", str(staging), PTYCHODUS],
            capture_output=True, text=True, timeout=300,
        )
        if proc.returncode != 0:
            output = proc.stdout + proc.stderr
            if any(marker in output for marker in UNREACHABLE):
                pytest.skip(f"PyPI is unreachable, cannot install {PTYCHODUS}: {output.strip().splitlines()[-1]}")
            pytest.fail(f"pip install --no-deps {PTYCHODUS} failed (exit {proc.returncode}):\n{output[-3000:]}")
        try:
            staging.rename(site)  # atomic: a concurrent session either sees all of it or none
        except OSError:
            if not (site / "ptychodus").is_dir():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return site


@pytest.mark.slow
def test_ptychodus_reconstructor_trains_saves_reopens_and_reconstructs(ptychodus_site, canonical_dataset, tmp_path):
    if importlib.util.find_spec("tensorflow") is None:
        pytest.skip("POLICY-001: tensorflow is not importable; ptychodus's PtychoPINN reconstructor is the TensorFlow backend")
    from ptycho.evaluation import score_reconstruction
    from ptycho.raw_data import RawData

    work, result_path = tmp_path / "work", tmp_path / "result.json"
    work.mkdir()
    env = {**os.environ, "PTYCHODUS_SITE": str(ptychodus_site), "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(DRIVER), str(canonical_dataset), str(work), str(result_path)],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, f"ptychodus driver failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-6000:]}"
    result = json.loads(result_path.read_text())

    # ptychodus found the library and its version by the distribution name it looks up.
    import ptycho

    assert f"ptychodus.model.ptychopinn.core: PtychoPINN {ptycho.__version__}" in result["logs"], result["logs"]
    # Training went through run_train: its epochs logged, the model and history where ptychodus
    # asked, and nothing in the working directory (ptychodus passes output_dir=Path()).
    assert [line for line in result["logs"] if "epoch " in line and "/3:" in line], result["logs"]
    assert {"wts.h5.zip", "history.json"} <= set(result["model_dir"])
    assert result["cwd"] == []
    # The Supervised reconstructor's model_type is refused by name, not trained as a PINN.
    assert result["supervised_error"].startswith("UnsupportedSettingError: model_type: 'supervised'")

    # Reconstructed after "Save Model" -> "Open Model": better than a flat image, scored the
    # project's way, in the object's pixel frame (the canvas starts at object pixel (0, 0)).
    raw = RawData.from_file(canonical_dataset)
    obj = np.load(work / "reconstruction.npy")
    assert obj.ndim == 3 and obj.shape[0] == 1 and np.iscomplexobj(obj)
    height, width = obj.shape[1:]
    assert height <= raw.objectGuess.shape[0] and width <= raw.objectGuess.shape[1]
    canvas = np.zeros_like(raw.objectGuess)
    canvas[:height, :width] = obj[0]
    report = score_reconstruction(canvas, raw.objectGuess, raw.probeGuess, raw.positions)
    assert max(abs(s) for s in report.shift) < 2, report.shift  # same frame, no hidden offset
    assert report.figures.amplitude_ssim > report.flat.amplitude_ssim + 0.05, report.summary()
    assert report.figures.phase_ssim > report.flat.phase_ssim + 0.1, report.summary()
