"""Configuration contract (brief §1.1, §1.2, §4.3)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptycho import params
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig, update_legacy_dict


def test_backend_defaults_to_tensorflow():
    assert TrainingConfig().backend == "tensorflow"
    assert InferenceConfig().backend == "tensorflow"


@pytest.mark.parametrize("bad", ["torch", "tf", None, "PyTorch", "", 1])
@pytest.mark.parametrize("cls", [TrainingConfig, InferenceConfig])
def test_invalid_backend_names_field_value_and_both_literals(cls, bad):
    with pytest.raises(ValueError) as err:
        cls(backend=bad)
    msg = str(err.value)
    assert msg.startswith("backend:")
    assert repr(bad) in msg
    assert "'tensorflow'" in msg and "'pytorch'" in msg


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"N": 48}, "N"),
        ({"N": True}, "N"),
        ({"gridsize": 0}, "gridsize"),
        ({"gridsize": 1.5}, "gridsize"),
        ({"n_filters_scale": 0}, "n_filters_scale"),
        ({"model_type": "gan"}, "model_type"),
        ({"amp_activation": "tanh"}, "amp_activation"),
        ({"object_big": "yes"}, "object_big"),
        ({"probe_scale": -1.0}, "probe_scale"),
        ({"probe_scale": float("nan")}, "probe_scale"),
    ],
)
def test_model_config_rejects_with_field_name(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}: invalid value .*; expected "):
        ModelConfig(**kwargs)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"batch_size": 12}, "batch_size"),
        ({"batch_size": 0}, "batch_size"),
        ({"nepochs": 0}, "nepochs"),
        ({"nphotons": 0}, "nphotons"),
        ({"nphotons": float("inf")}, "nphotons"),
        ({"nll_weight": -1}, "nll_weight"),
        ({"nll_weight": 0, "mae_weight": 0}, "nll_weight"),
        ({"n_groups": 0}, "n_groups"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"model": ModelConfig(gridsize=2), "neighbor_count": 3}, "neighbor_count"),
        ({"output_dir": None}, "output_dir"),
        ({"train_data_file": 3}, "train_data_file"),
    ],
)
def test_training_config_rejects_with_field_name(kwargs, field):
    with pytest.raises(ValueError, match=rf"^{field}: invalid value"):
        TrainingConfig(**kwargs)


def test_model_config_is_frozen():
    with pytest.raises(Exception):
        ModelConfig().N = 32  # type: ignore[misc]


def test_paths_are_normalised_to_path():
    cfg = TrainingConfig(train_data_file="a.npz", output_dir="out")
    assert cfg.train_data_file == Path("a.npz") and cfg.output_dir == Path("out")


def test_update_legacy_dict_maps_flattens_and_skips_none():
    cfg: dict = {"test_data_file_path": "keep-me.npz"}
    config = TrainingConfig(
        model=ModelConfig(N=32, gridsize=2, object_big=False, probe_big=True, probe_mask=True,
                          intensity_scale_trainable=False),
        train_data_file=Path("/data/train.npz"),
        test_data_file=None,
        output_dir=Path("/tmp/out"),
        backend="pytorch",
        n_groups=None,
    )
    update_legacy_dict(cfg, config)
    assert cfg["N"] == 32 and cfg["gridsize"] == 2
    assert cfg["object.big"] is False and cfg["probe.big"] is True and cfg["probe.mask"] is True
    assert cfg["intensity_scale.trainable"] is False
    assert cfg["train_data_file_path"] == "/data/train.npz" and isinstance(cfg["train_data_file_path"], str)
    assert cfg["output_prefix"] == "/tmp/out"
    assert cfg["backend"] == "pytorch"
    assert cfg["test_data_file_path"] == "keep-me.npz"  # None never overwrites
    assert "n_groups" not in cfg
    assert None not in cfg.values()
    assert "model" not in cfg and "object_big" not in cfg


def test_update_legacy_dict_rejects_non_config():
    with pytest.raises(TypeError, match="update_legacy_dict"):
        update_legacy_dict({}, {"N": 64})  # type: ignore[arg-type]


def test_params_get_set_and_derived_padded_size():
    params.set("gridsize", 3)
    params.set("offset", 5)
    assert params.get("padded_size") == 64 + 2 * 5
    with pytest.raises(ValueError):
        params.set("N", None)
    with pytest.raises(KeyError, match="unknown key 'nope'"):
        params.get("nope")


def _scan(n=49, size=64):
    from ptycho.raw_data import RawData

    rng = np.random.default_rng(0)
    g = np.arange(7) * 5.0 + 40
    x, y = np.meshgrid(g, g)
    return RawData(
        diffraction=rng.random((n, size, size)).astype(np.float32),
        probeGuess=np.ones((size, size), np.complex64),
        xcoords=x.ravel(), ycoords=y.ravel(),
    )


def test_config001_grouping_without_sync_uses_stale_gridsize_and_sync_fixes_it():
    """The CONFIG-001 failure mode: gridsize=2 configured, but the legacy dict still says 1."""
    from ptycho.raw_data import generate_grouped_data

    config = TrainingConfig(model=ModelConfig(gridsize=2), neighbor_count=6)
    raw = _scan()
    stale = generate_grouped_data(raw, neighbor_count=config.neighbor_count, seed=0)
    assert stale.X.shape[1] == 1  # silently one channel: the bug the golden rule prevents

    update_legacy_dict(params.cfg, config)
    synced = generate_grouped_data(raw, neighbor_count=config.neighbor_count, seed=0)
    assert synced.X.shape[1] == 4
