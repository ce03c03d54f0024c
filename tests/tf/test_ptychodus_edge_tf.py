"""The ptychodus-facing edge on the TensorFlow side: the legacy ``predict`` and ``reassemble_position``
forms, loading an unpacked bundle, ``params['intensity_scale']``, ``model_manager.save`` and
``output_dir=Path()`` (docs/ptychodus.md). The end-to-end run is tests/ptycho/test_ptychodus_client.py."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("ptycho.tf_backend.runtime", reason="TensorFlow is not installed").tf

from ptycho import params  # noqa: E402
from ptycho.config.config import ModelConfig, TrainingConfig, update_legacy_dict  # noqa: E402
from ptycho.loader import load  # noqa: E402
from ptycho.tf_backend import inference, model_manager  # noqa: E402
from ptycho.tf_backend.network import build_model  # noqa: E402
from ptycho.tf_backend.reassembly import reassemble_position  # noqa: E402
from ptycho.model_manifest import TF_ARCHIVE_NAME  # noqa: E402
from ptycho.simulate import make_object, make_probe, make_scan, simulate  # noqa: E402
from ptycho.stitching import canvas_shape_for, patch_weights, reassemble_patches  # noqa: E402
from ptycho.tf_backend.workflows import components  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
N = 32


@pytest.fixture(scope="module")
def small_scan():
    rng = np.random.default_rng(3)
    x, y, _, _ = make_scan(5, 5, 4.0, 20.0, 0.3, rng)
    return simulate(make_object("grf", 80, rng), make_probe(N, sigma=4.0, aperture=8.0), x, y, 1e6, rng)


def test_legacy_reassemble_position_is_the_flat_form_with_a_central_crop():
    rng = np.random.default_rng(0)
    b, c = 6, 4
    patches = (rng.random((b, N, N, c)) * np.exp(1j * rng.random((b, N, N, c)))).astype(np.complex64)
    positions = rng.uniform(20, 40, (b, 1, 2, c))
    legacy = reassemble_position(patches, positions, M=12).numpy()
    flat_patches = np.transpose(patches, (0, 3, 1, 2)).reshape(-1, N, N)
    flat_positions = np.transpose(positions[:, 0], (0, 2, 1)).reshape(-1, 2)
    shape = canvas_shape_for(flat_positions, N)
    expected = reassemble_patches(flat_patches, flat_positions, shape, patch_weights(N, crop=12))
    assert legacy.shape == shape
    np.testing.assert_allclose(legacy, expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"legacy positions must be \(B, 1, 2, C\)"):
        reassemble_position(patches, positions[:, :, :, :2], M=12)


def test_unpacked_bundle_loads_and_predicts_in_the_legacy_form(tmp_path, small_scan):
    config = ModelConfig(N=N, gridsize=1)
    update_legacy_dict(params.cfg, config)
    model = build_model(config, small_scan.probeGuess)
    model.physics.log_intensity_scale.assign(0.7)
    model.amp_head.kernel.assign(np.random.default_rng(1).normal(0, 0.3, model.amp_head.kernel.shape).astype(np.float32))
    archive = model_manager.save_model(model, tmp_path / "saved", {"model": config})
    unpacked = tmp_path / "opened"
    with zipfile.ZipFile(archive) as zf:  # what ptychodus's "Open Model" does with a saved .zip
        zf.extractall(unpacked)
    params.cfg.pop("intensity_scale", None)
    loaded, saved = components.load_inference_bundle(unpacked)
    assert saved["model_config"] == config
    scale = params.get("intensity_scale")
    assert scale == pytest.approx(np.exp(0.7), rel=1e-6)

    grouped = small_scan.generate_grouped_data(N, K=7, nsamples=1, gridsize=1)
    container = load(lambda: grouped, small_scan.probeGuess, which=None, create_split=False)
    patches = loaded.predict([container.X * scale, container.local_offsets])
    amplitude, phase = inference.predict_object_patches(model, grouped.X)
    assert patches.shape == (len(grouped.X), N, N, 1) and patches.dtype == np.complex64
    np.testing.assert_allclose(patches[..., 0], (amplitude * np.exp(1j * phase))[:, 0], atol=1e-5)
    with pytest.raises(ValueError, match="trained with gridsize 1 .1 patches. of 32 x 32"):
        loaded.predict([np.repeat(container.X, 4, axis=-1), np.repeat(container.local_offsets, 4, axis=-1)])
    # The loaded model is the process's current one: model_manager.save writes it again.
    again = model_manager.save(tmp_path / "again")
    assert again == tmp_path / "again" / TF_ARCHIVE_NAME and again.is_file()


def test_training_with_output_dir_unset_writes_nothing_until_saved(tmp_path, small_scan, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    config = TrainingConfig(model=ModelConfig(N=0), train_data_file=Path(), nepochs=1, batch_size=8, output_dir=Path())
    amplitude, phase, results = components.run_cdi_example(small_scan, small_scan, config)
    assert amplitude is None and phase is None and results["checkpoint_path"] is None
    assert list(cwd.iterdir()) == []
    assert results["config"].model.N == N  # N taken from the data
    assert params.get("intensity_scale") == pytest.approx(inference.intensity_scale_of(results["models"]["diffraction_to_obj"]))
    archive = model_manager.save(tmp_path / "out")
    written = components.save_outputs(amplitude, phase, results, tmp_path / "out")
    assert archive.is_file() and [p.name for p in written] == ["history.json"]
    assert model_manager.load_model(archive)[0].cfg.N == N
    assert os.listdir(cwd) == []


def test_save_outputs_writes_the_reconstruction_and_refuses_half_of_it(tmp_path):
    amplitude, phase = np.linspace(0, 1, 64).reshape(8, 8), np.zeros((8, 8))
    written = components.save_outputs(amplitude, phase, {"history": {"train_loss": [1.0]}}, tmp_path / "o")
    assert sorted(p.name for p in written) == [
        "history.json", "reconstructed_amplitude.npy", "reconstructed_amplitude.png",
        "reconstructed_phase.npy", "reconstructed_phase.png",
    ]
    np.testing.assert_array_equal(np.load(tmp_path / "o" / "reconstructed_amplitude.npy"), amplitude)
    with pytest.raises(ValueError, match="amplitude and phase must both be given"):
        components.save_outputs(amplitude, None, {}, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_a_model_of_unresolved_size_is_not_built():
    with pytest.raises(ValueError, match=r"^N: 0 \(take it from the data\) is not resolved at build_model"):
        build_model(ModelConfig(N=0))


def test_the_legacy_paths_ptychodus_imports_are_the_backend_itself():
    """ptychodus 1.7.0 imports these names from the paths the TensorFlow backend had before it moved
    into ptycho.tf_backend; each must be the backend's own object, and nothing else is kept there."""
    import ptycho.model_manager
    import ptycho.tf_helper
    import ptycho.workflows.components

    assert ptycho.tf_helper.reassemble_position is reassemble_position
    assert ptycho.model_manager.save is model_manager.save
    for name in ("run_cdi_example", "save_outputs", "load_inference_bundle", "BACKEND"):
        assert getattr(ptycho.workflows.components, name) is getattr(components, name), name
    assert ptycho.tf_helper.__all__ == ["reassemble_position"] and ptycho.model_manager.__all__ == ["save"]
