"""The ptychodus-facing edge without TensorFlow: config fields ptychodus sets, ``N = 0``, the legacy
RawData names, ``ptycho.loader`` and ``ptycho.probe`` (docs/ptychodus.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ptycho import params
from ptycho.config.config import (
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    UnsupportedSettingError,
    legacy_items,
    update_legacy_dict,
)
from ptycho.raw_data import DataContractError, RawData

N = 32


def ptychodus_model_config(**overrides) -> ModelConfig:
    """``reconstructor._build_model_config`` of ptychodus 1.7.0 with its default settings."""
    kwargs = dict(
        N=0, gridsize=1, n_filters_scale=2, model_type="pinn", amp_activation="sigmoid", object_big=True,
        probe_big=True, probe_mask=False, pad_object=True, probe_scale=4.0, gaussian_smoothing_sigma=0.0,
    )
    kwargs.update(overrides)
    return ModelConfig(**kwargs)


def ptychodus_training_config(model: ModelConfig | None = None, **overrides) -> TrainingConfig:
    """``reconstructor._build_training_config`` of ptychodus 1.7.0 with its default settings."""
    kwargs = dict(
        model=model or ptychodus_model_config(), train_data_file=Path(), test_data_file=None, batch_size=16,
        nepochs=50, mae_weight=0.0, nll_weight=1.0, realspace_mae_weight=0.0, realspace_weight=0.0, nphotons=1e6,
        positions_provided=True, probe_trainable=False, intensity_scale_trainable=True, output_dir=Path(),
    )
    kwargs.update(overrides)
    return TrainingConfig(**kwargs)


def test_ptychodus_configs_construct_and_n_is_assigned_once():
    training = ptychodus_training_config()
    inference = InferenceConfig(
        model=ptychodus_model_config(N=64), model_path=Path(), test_data_file=Path(), debug=False, output_dir=Path()
    )
    assert inference.model.N == 64
    assert not training.model.is_resolved
    training.model.N = N  # what ptychodus's child does
    assert training.model.N == N and training.model.is_resolved
    with pytest.raises(dataclasses.FrozenInstanceError):
        training.model.N = 64  # resolved: frozen again
    with pytest.raises(dataclasses.FrozenInstanceError):
        training.model.gridsize = 2


def test_assigning_n_is_validated():
    model = ModelConfig(N=0)
    with pytest.raises(ValueError, match=r"^N: invalid value 48; expected one of 32, 64, 128$"):
        model.N = 48
    with pytest.raises(ValueError, match=r"^N: invalid value 0"):
        model.N = 0
    assert model.N == 0


def test_unresolved_n_is_refused_where_used_and_resolved_from_data():
    model = ModelConfig(N=0)
    with pytest.raises(ValueError, match=r"^N: 0 \(take it from the data\) is not resolved at build_model"):
        model.require_resolved("build_model")
    assert model.resolved(64).N == 64 and model.N == 0
    with pytest.raises(ValueError, match="patterns are 32 x 32 but ModelConfig.N is 64"):
        ModelConfig(N=64).resolved(32)


def test_unresolved_n_leaves_the_legacy_n_alone():
    params.set("N", 128)
    update_legacy_dict(params.cfg, ptychodus_training_config())
    assert params.get("N") == 128
    assert "N" not in legacy_items(ModelConfig(N=0))


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"realspace_weight": 0.5}, "realspace_weight"),
        ({"realspace_mae_weight": 0.1}, "realspace_mae_weight"),
        ({"positions_provided": False}, "positions_provided"),
        ({"probe_trainable": True}, "probe_trainable"),
    ],
)
def test_unimplemented_training_values_are_refused_by_name(overrides, field):
    with pytest.raises(UnsupportedSettingError, match=rf"^{field}: .* is not implemented by ptycho"):
        ptychodus_training_config(**overrides)


@pytest.mark.parametrize(
    "overrides, field",
    [({"model_type": "supervised"}, "model_type"), ({"gaussian_smoothing_sigma": 1.5}, "gaussian_smoothing_sigma")],
)
def test_unimplemented_model_values_are_refused_by_name(overrides, field):
    with pytest.raises(UnsupportedSettingError, match=rf"^{field}: .* is not implemented by ptycho"):
        ptychodus_model_config(**overrides)


@pytest.mark.parametrize(
    "overrides, field",
    [({"realspace_weight": -1.0}, "realspace_weight"), ({"probe_trainable": "no"}, "probe_trainable"),
     ({"intensity_scale_trainable": 1}, "intensity_scale_trainable")],
)
def test_bad_client_values_are_invalid_not_unsupported(overrides, field):
    with pytest.raises(ValueError, match=rf"^{field}: invalid value"):
        ptychodus_training_config(**overrides)


def test_training_intensity_scale_trainable_overrides_the_model():
    training = ptychodus_training_config(intensity_scale_trainable=False)
    assert training.model.intensity_scale_trainable is False
    assert legacy_items(training)["intensity_scale.trainable"] is False
    assert ptychodus_training_config().model.intensity_scale_trainable is True
    assert TrainingConfig().model.intensity_scale_trainable is True  # None: the model's own value


# --------------------------------------------------------------------------- RawData legacy names


def scan(n: int = 12, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return dict(
        xcoords=rng.uniform(20, 40, n), ycoords=rng.uniform(20, 40, n),
        diff3d=rng.poisson(50.0, (n, N, N)).astype(np.uint32),
        probeGuess=(rng.random((1, N, N)) + 1j).astype(np.complex64),
        scan_index=np.zeros(n, dtype=int), objectGuess=np.ones((64, 64), np.complex64),
    )


def test_from_coords_without_pc_takes_ptychodus_intensities_and_a_one_mode_probe():
    s = scan()
    raw = RawData.from_coords_without_pc(**s)
    np.testing.assert_allclose(raw.diff3d, np.sqrt(s["diff3d"].astype(np.float64)), rtol=1e-6)
    assert raw.diff3d is raw.diffraction and raw.diffraction.dtype == np.float32
    assert raw.probeGuess.shape == (N, N)
    np.testing.assert_array_equal(raw.probeGuess, s["probeGuess"][0])


def test_from_coords_without_pc_refuses_several_modes_and_negative_intensities():
    s = scan()
    with pytest.raises(DataContractError, match=r"key 'probeGuess': expected one probe mode .* found 2 modes"):
        RawData.from_coords_without_pc(**{**s, "probeGuess": np.ones((2, N, N), np.complex64)})
    negative = s["diff3d"].astype(np.float32)
    negative[3, 5, 7] = -2.5  # background-subtracted data can dip below zero
    with pytest.raises(DataContractError, match=r"key 'diff3d': expected non-negative detector intensities, found minimum -2.5"):
        RawData.from_coords_without_pc(**{**s, "diff3d": negative})


def test_a_ptychodus_export_is_read_as_intensities_and_a_legacy_diff3d_as_amplitudes(tmp_path):
    s = scan()
    arrays = dict(xcoords=s["xcoords"], ycoords=s["ycoords"], diff3d=s["diff3d"], probeGuess=s["probeGuess"])
    # save_ptychopinn_training_data's layout: diff3d counts plus a bad_pixels mask.
    np.savez(tmp_path / "export.npz", bad_pixels=np.zeros((N, N), bool), **arrays)
    np.savez(tmp_path / "legacy.npz", **arrays)
    exported = RawData.from_file(tmp_path / "export.npz")
    legacy = RawData.from_file(tmp_path / "legacy.npz")
    np.testing.assert_allclose(exported.diffraction ** 2, s["diff3d"], rtol=1e-5)
    np.testing.assert_allclose(legacy.diffraction, s["diff3d"], rtol=1e-6)


def test_generate_grouped_data_method_groups_with_the_given_gridsize():
    raw = RawData.from_coords_without_pc(**scan(n=20))
    one = raw.generate_grouped_data(N, K=7, nsamples=3, gridsize=1)
    assert one.X.shape == (20, 1, N, N)  # gridsize 1: one group per position, nsamples unused
    np.testing.assert_array_equal(one.indices[:, 0], np.arange(20))
    two = raw.generate_grouped_data(0, K=6, nsamples=2, gridsize=2, seed=5)
    assert two.X.shape == (40, 4, N, N) and two.gridsize == 2  # nsamples groups per position
    assert not np.array_equal(two.indices[:20], two.indices[20:])
    assert params.get("gridsize") == 1  # the legacy dict is not touched
    with pytest.raises(ValueError, match="expected 64 x 64 patterns"):
        raw.generate_grouped_data(64)
    with pytest.raises(ValueError, match="^nsamples: invalid value 0"):
        raw.generate_grouped_data(N, nsamples=0)
    with pytest.raises(ValueError, match=r"^K: 7 nearest neighbours cannot form groups of gridsize\*\*2 = 9"):
        raw.generate_grouped_data(N, K=7, gridsize=3)


def test_gridsize_beyond_two_gets_enough_neighbours_by_default():
    # ptychodus's GridSize goes to 5 but it has no neighbour-count setting for training.
    assert ptychodus_training_config(model=ptychodus_model_config(gridsize=3)).neighbor_count == 9
    assert TrainingConfig().neighbor_count == 4
    with pytest.raises(ValueError, match=r"^neighbor_count: invalid value 4; expected at least gridsize\*\*2 = 9"):
        TrainingConfig(model=ModelConfig(gridsize=3), neighbor_count=4)


# --------------------------------------------------------------------------- loader and probe


def test_loader_container_is_the_grouped_data_in_the_legacy_layout():
    from ptycho.loader import load, model_inputs_from_legacy

    raw = RawData.from_coords_without_pc(**scan(n=20))
    grouped = raw.generate_grouped_data(N, K=6, nsamples=1, gridsize=2, seed=1)
    container = load(lambda: grouped, raw.probeGuess, which=None, create_split=False)
    assert container.X.shape == (20, N, N, 4) and len(container) == 20
    assert container.local_offsets.shape == container.global_offsets.shape == (20, 1, 2, 4)
    np.testing.assert_array_equal(container.X[..., 3], grouped.X[:, 3])
    # global offsets: every patch's own scan position (x, y)
    np.testing.assert_allclose(container.global_offsets[:, 0, 0, :], raw.xcoords[grouped.indices])
    np.testing.assert_allclose(container.global_offsets[:, 0, 1, :], raw.ycoords[grouped.indices])
    x, offsets = model_inputs_from_legacy([container.X, container.local_offsets])
    np.testing.assert_array_equal(x, grouped.X)
    np.testing.assert_allclose(offsets, grouped.offsets)


def test_loader_refuses_what_it_does_not_implement():
    from ptycho.loader import load, model_inputs_from_legacy

    raw = RawData.from_coords_without_pc(**scan())
    grouped = raw.generate_grouped_data(N)
    with pytest.raises(ValueError, match="create_split=True .* is not implemented"):
        load(lambda: grouped, raw.probeGuess, which="train", create_split=True)
    with pytest.raises(ValueError, match="which='test' applies only with create_split=True"):
        load(lambda: grouped, raw.probeGuess, which="test")
    with pytest.raises(ValueError, match=r"probeGuess: shape \(64, 64\) does not match the 32 x 32 patterns"):
        load(lambda: grouped, np.ones((64, 64), np.complex64))
    with pytest.raises(TypeError, match="must return RawData.generate_grouped_data"):
        load(lambda: {"X": grouped.X}, raw.probeGuess)
    with pytest.raises(ValueError, match="expected the legacy input"):
        model_inputs_from_legacy(grouped.X)


def test_set_probe_guess_records_a_validated_probe():
    from ptycho.probe import get_probe, set_probe_guess

    with pytest.raises(KeyError, match="no probe recorded"):
        get_probe()
    update_legacy_dict(params.cfg, ModelConfig(N=N))
    probe = set_probe_guess(None, np.ones((1, N, N), np.complex128))
    assert probe.shape == (N, N) and probe.dtype == np.complex64 and get_probe() is params.get("probe")
    with pytest.raises(ValueError, match=r"shape \(64, 64\) does not match params.cfg\['N'\] = 32"):
        set_probe_guess(None, np.ones((64, 64), np.complex64))
    with pytest.raises(ValueError, match="probe_guess is required"):
        set_probe_guess(np.ones((4, N, N, 1)))


def test_model_manager_save_needs_a_model(monkeypatch, tmp_path):
    from ptycho.tf_backend import model_manager

    monkeypatch.setattr(model_manager, "_current", None)
    with pytest.raises(RuntimeError, match="no model trained or loaded in this process"):
        model_manager.save(tmp_path)
    assert not any(tmp_path.iterdir())


def test_torch_hyperparameters_carry_the_client_fields_and_older_checkpoints_still_load():
    pytest.importorskip("torch", reason="POLICY-001: torch is not installed")
    from ptycho_torch import config_bridge as bridge

    training = ptychodus_training_config(model=ptychodus_model_config(N=64), intensity_scale_trainable=False)
    h = bridge.to_hyperparameters(training)
    assert h["training_config"]["realspace_weight"] == 0.0 and h["model_config"]["gaussian_smoothing_sigma"] == 0.0
    assert bridge.training_config_from(h) == training
    for group, key in (("model_config", "gaussian_smoothing_sigma"), ("training_config", "probe_trainable")):
        del h[group][key]  # a checkpoint written before the field existed
    assert bridge.training_config_from(h) == training
    del h["model_config"]["gridsize"]
    with pytest.raises(bridge.HyperparameterError, match="model_config: missing field.s. gridsize"):
        bridge.training_config_from(h)
