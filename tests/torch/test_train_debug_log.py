"""--debug writes {output_dir}/train_debug.log (brief §3.1); without it there is none."""

from __future__ import annotations

import json

import pytest

from ptycho.debug_log import DEBUG_LOG_NAME
from ptycho_torch.train import main


def _read(path):
    lines = path.read_text().splitlines()
    config = json.loads(next(l for l in lines if l.startswith("# configuration ")).split(" ", 2)[2])
    events = [l.split(" ")[1] for l in lines if not l.startswith("#")]
    return lines, config, events


@pytest.mark.parametrize("debug", [True, False])
def test_debug_log_only_with_flag(canonical_dataset, tmp_path, debug):
    out = tmp_path / "model"
    argv = ["--train_data_file", str(canonical_dataset), "--output_dir", str(out), "--max_epochs", "2",
            "--n_images", "32", "--gridsize", "2", "--progress", "off"]
    assert main(argv + (["--debug"] if debug else [])) == 0
    log = out / DEBUG_LOG_NAME
    assert log.exists() is debug
    if not debug:
        return
    lines, config, events = _read(log)
    assert events == ["start", "data", "epoch", "epoch", "end"]
    assert config["gridsize"] == 2 and config["backend"] == "pytorch" and config["execution"]["debug"] is True
    data = next(l for l in lines if " data " in l)
    assert "train_X=32x4x64x64" in data
    epochs = [l for l in lines if " epoch " in l]
    for line in epochs:
        fields = dict(f.split("=", 1) for f in line.split(" ")[2:])
        assert float(fields["intensity_scale"]) > 0 and float(fields["learning_rate"]) == pytest.approx(1e-3)
        assert float(fields["epoch_s"]) > 0 and "train_loss" in fields
