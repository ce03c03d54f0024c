"""--debug on the TensorFlow training CLI writes the same train_debug.log as the torch one."""

from __future__ import annotations

import json

import pytest

from ptycho.cli import train_main
from ptycho.debug_log import DEBUG_LOG_NAME


@pytest.mark.parametrize("debug", [True, False])
def test_tf_debug_log_only_with_flag(canonical_dataset, tmp_path, debug):
    out = tmp_path / "model"
    argv = ["--backend", "tensorflow", "--train_data_file", str(canonical_dataset), "--output_dir", str(out),
            "--max_epochs", "2", "--n_images", "32", "--progress", "off"]
    assert train_main(argv + (["--debug"] if debug else [])) == 0
    log = out / DEBUG_LOG_NAME
    assert log.exists() is debug
    if not debug:
        return
    lines = log.read_text().splitlines()
    config = json.loads(next(l for l in lines if l.startswith("# configuration ")).split(" ", 2)[2])
    assert config["backend"] == "tensorflow" and config["nepochs"] == 2
    events = [l.split(" ")[1] for l in lines if not l.startswith("#")]
    assert events == ["start", "data", "epoch", "epoch", "end"]
    assert all("intensity_scale=" in l and "learning_rate=" in l for l in lines if " epoch " in l)
