"""Config bridge parity (brief §2.1.3): canonical dataclasses <-> the four hyperparameter dicts."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ptycho import params
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig, update_legacy_dict
from ptycho_torch import config_bridge as bridge


def _training(**model_kw) -> TrainingConfig:
    model = ModelConfig(
        N=32, gridsize=2, n_filters_scale=3, amp_activation="swish", object_big=False, probe_big=True,
        probe_mask=True, pad_object=False, probe_scale=2.5, intensity_scale_trainable=False, **model_kw,
    )
    return TrainingConfig(
        model=model, train_data_file=Path("/data/train.npz"), test_data_file=Path("/data/test.npz"),
        batch_size=8, nepochs=7, nll_weight=0.5, mae_weight=0.25, nphotons=1e5, n_groups=123,
        neighbor_count=6, subsample_seed=9, learning_rate=3e-4, output_dir=Path("/tmp/out"), backend="pytorch",
    )


def test_parity_every_model_field_is_mapped():
    cfg = _training()
    h = bridge.to_hyperparameters(cfg)
    assert set(h) == set(bridge.GROUPS)
    assert set(h["model_config"]) == {f.name for f in dataclasses.fields(ModelConfig)}
    for f in dataclasses.fields(ModelConfig):
        assert h["model_config"][f.name] == getattr(cfg.model, f.name), f.name


def test_parity_every_training_field_is_mapped():
    cfg = _training()
    h = bridge.to_hyperparameters(cfg)
    mapped = {**h["data_config"], **h["training_config"]}
    for f in dataclasses.fields(TrainingConfig):
        if f.name == "model":
            continue
        value = getattr(cfg, f.name)
        assert mapped[f.name] == (str(value) if isinstance(value, Path) else value), f.name
    # derived keys agree with the model
    assert (h["data_config"]["N"], h["data_config"]["gridsize"], h["data_config"]["channels"]) == (32, 2, 4)


def test_parity_every_inference_field_is_mapped():
    train = _training()
    infer = InferenceConfig(
        model=train.model, model_path=Path("/models/m"), test_data_file=Path("/data/t.npz"), n_groups=11,
        neighbor_count=5, output_dir=Path("/tmp/inf"), backend="pytorch", debug=True,
    )
    h = bridge.to_hyperparameters(train, infer)
    for f in dataclasses.fields(InferenceConfig):
        if f.name == "model":
            continue
        value = getattr(infer, f.name)
        assert h["inference_config"][f.name] == (str(value) if isinstance(value, Path) else value), f.name
    assert bridge.inference_config_from(h) == infer


def test_parity_roundtrip_is_lossless_and_json_able():
    for cfg in (_training(), TrainingConfig(backend="pytorch"), TrainingConfig()):
        h = bridge.to_hyperparameters(cfg, seed=7)
        again = json.loads(json.dumps(h))  # JSON-able: survives a JSON round trip unchanged
        assert again == h
        assert bridge.training_config_from(again) == cfg
        assert bridge.seed_from(again) == 7
        for group in h.values():
            for value in group.values():
                assert value is None or isinstance(value, (str, int, float, bool))


def test_parity_default_inference_follows_training():
    cfg = _training()
    infer = bridge.inference_config_from(bridge.to_hyperparameters(cfg))
    assert infer.model == cfg.model
    assert infer.model_path == cfg.output_dir
    assert infer.test_data_file == cfg.test_data_file
    assert (infer.n_groups, infer.neighbor_count, infer.backend) == (cfg.n_groups, cfg.neighbor_count, cfg.backend)


def test_parity_legacy_params_after_update_legacy_dict():
    """The configs rebuilt from a checkpoint's dicts set params.cfg exactly as the originals do."""
    cfg = _training()
    update_legacy_dict(params.cfg, cfg)
    expected = dict(params.cfg)
    params.reset()
    update_legacy_dict(params.cfg, bridge.training_config_from(bridge.to_hyperparameters(cfg)))
    assert dict(params.cfg) == expected
    assert params.cfg["N"] == 32 and params.cfg["gridsize"] == 2
    assert params.cfg["object.big"] is False and params.cfg["probe.big"] is True
    assert params.cfg["probe.mask"] is True and params.cfg["intensity_scale.trainable"] is False
    assert params.cfg["nepochs"] == 7 and params.cfg["output_prefix"] == "/tmp/out"
    assert params.cfg["train_data_file_path"] == "/data/train.npz"
    assert params.cfg["backend"] == "pytorch" and params.get_padded_size() == 32 + params.cfg["offset"]


@pytest.mark.parametrize(
    "group, key, value, message",
    [
        ("model_config", "N", 48, "N: invalid value 48"),
        ("model_config", "amp_activation", "tanh", "amp_activation: invalid value 'tanh'"),
        ("model_config", "gridsize", 0, "gridsize: invalid value 0"),
        ("training_config", "backend", "torch", "backend: invalid value 'torch'"),
        ("training_config", "batch_size", 12, "batch_size: invalid value 12"),
        ("data_config", "neighbor_count", 2, "neighbor_count: invalid value 2"),
        ("training_config", "seed", -1, "training_config.seed: invalid value -1"),
        ("inference_config", "debug", "yes", "debug: invalid value 'yes'"),
    ],
)
def test_parity_unsupported_values_raise_naming_the_field(group, key, value, message):
    h = bridge.to_hyperparameters(_training())
    h[group][key] = value
    with pytest.raises(bridge.HyperparameterError) as info:
        bridge.validate_hyperparameters(h)
    assert message in str(info.value)


def test_parity_missing_unknown_and_inconsistent_fields_raise():
    h = bridge.to_hyperparameters(_training())
    del h["model_config"]["gridsize"]
    with pytest.raises(bridge.HyperparameterError, match=r"model_config: missing field\(s\) gridsize"):
        bridge.model_config_from(h)
    h = bridge.to_hyperparameters(_training())
    h["training_config"]["momentum"] = 0.9
    with pytest.raises(bridge.HyperparameterError, match=r"training_config: unknown field\(s\) momentum"):
        bridge.training_config_from(h)
    h = bridge.to_hyperparameters(_training())
    h["data_config"]["gridsize"] = 3
    with pytest.raises(bridge.HyperparameterError, match="data_config.gridsize: 3 disagrees with model_config"):
        bridge.model_config_from(h)
    with pytest.raises(bridge.HyperparameterError, match="missing group 'inference_config'"):
        bridge.inference_config_from({"model_config": h["model_config"]})
    with pytest.raises(bridge.HyperparameterError, match="not JSON-able"):
        bridge._plain("x", object())


def test_parity_inference_model_must_match_training_model():
    train = _training()
    other = dataclasses.replace(train.model, gridsize=1)
    with pytest.raises(bridge.HyperparameterError, match="inference.model"):
        bridge.to_hyperparameters(train, InferenceConfig(model=other, backend="pytorch"))
