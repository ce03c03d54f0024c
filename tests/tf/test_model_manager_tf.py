"""The TensorFlow model archive ``wts.h5.zip``: round trip, manifest, and clear errors for damaged
or foreign archives (the cross-backend cases live in tests/torch/test_model_manager.py)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("ptycho.tf_backend.runtime", reason="TensorFlow is not installed").tf

from ptycho import __version__, params  # noqa: E402
from ptycho.config.config import ModelConfig, TrainingConfig, update_legacy_dict  # noqa: E402
from ptycho.tf_backend.network import build_model  # noqa: E402
from ptycho.tf_backend.model_manager import WEIGHTS_NAME, load_model, save_model, write_archive  # noqa: E402
from ptycho.model_manifest import MANIFEST_NAME, TF_ARCHIVE_NAME, BackendMismatchError, ModelArtifactError  # noqa: E402
from ptycho.tf_backend.workflows.components import load_inference_bundle, save_trained_model  # noqa: E402

CFG = ModelConfig(N=32, gridsize=2)
# Keras' Variable.numpy() trips numpy 2's __array__ copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


@pytest.fixture(scope="module")
def trained_like(tmp_path_factory):
    """A model with non-default weights (heads perturbed, a real-looking probe), saved once."""
    rng = np.random.default_rng(0)
    probe = (rng.random((32, 32)) * np.exp(1j * rng.random((32, 32)))).astype(np.complex64)
    model = build_model(CFG, probe)
    for layer in (model.amp_head, model.phase_head):
        layer.kernel.assign(rng.normal(0, 0.3, layer.kernel.shape).astype(np.float32))
    model.physics.log_intensity_scale.assign(1.234)
    out_dir = tmp_path_factory.mktemp("tf_model")
    config = TrainingConfig(model=CFG, output_dir=out_dir, nepochs=2)
    update_legacy_dict(params.cfg, config)
    archive = save_trained_model(model, config, {"history": {"train_loss": [1.0, 0.5]}})
    x = rng.random((3, 4, 32, 32)).astype(np.float32)
    offsets = rng.uniform(-3, 3, (3, 4, 2)).astype(np.float32)
    return model, archive, x, offsets


def test_archive_holds_manifest_and_keras_weights_only(trained_like):
    _model, archive, _x, _o = trained_like
    assert archive.name == TF_ARCHIVE_NAME and archive.is_file()
    assert not list(archive.parent.glob("*.partial"))
    with zipfile.ZipFile(archive) as zf:
        assert sorted(zf.namelist()) == sorted([MANIFEST_NAME, WEIGHTS_NAME])
        manifest = json.loads(zf.read(MANIFEST_NAME))
        assert zf.read(WEIGHTS_NAME)[:8] == b"\x89HDF\r\n\x1a\n"  # HDF5, not a pickle
    assert manifest["backend"] == "tensorflow"
    assert manifest["ptycho_version"] == __version__
    assert manifest["configs"]["model"]["gridsize"] == 2 and manifest["configs"]["model"]["N"] == 32
    assert manifest["configs"]["training"]["nepochs"] == 2
    assert manifest["params"]["gridsize"] == 2 and manifest["params"]["N"] == 32
    assert manifest["history"] == {"train_loss": [1.0, 0.5]}


def test_round_trip_restores_weights_probe_and_forward(trained_like):
    model, archive, x, offsets = trained_like
    for path in (archive, archive.parent):  # the archive or the directory holding it
        loaded, manifest = load_model(path)
        assert loaded.cfg == CFG and manifest["backend"] == "tensorflow"
        for a, b in zip(model.weights, loaded.weights):
            assert a.path == b.path
            np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(
            loaded(tf.constant(x), tf.constant(offsets)).amplitude.numpy(),
            model(tf.constant(x), tf.constant(offsets)).amplitude.numpy(),
        )
    bundle_model, saved = load_inference_bundle(archive.parent)
    assert saved["gridsize"] == 2 and saved["model_config"] == CFG
    assert float(bundle_model.physics.log_intensity_scale.numpy()) == pytest.approx(1.234)


def _copy(archive: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "model" / TF_ARCHIVE_NAME
    dst.parent.mkdir()
    dst.write_bytes(archive.read_bytes())
    return dst


def test_truncated_archive_is_a_clear_error(trained_like, tmp_path):
    dst = _copy(trained_like[1], tmp_path)
    dst.write_bytes(dst.read_bytes()[: dst.stat().st_size // 2])
    with pytest.raises(ModelArtifactError, match="corrupted or truncated") as excinfo:
        load_model(dst)
    assert str(dst) in str(excinfo.value)


def test_corrupted_weights_member_is_a_clear_error(trained_like, tmp_path):
    dst = _copy(trained_like[1], tmp_path)
    data = bytearray(dst.read_bytes())
    with zipfile.ZipFile(dst) as zf:
        info = zf.getinfo(WEIGHTS_NAME)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    for i in range(start + 100, start + 200):
        data[i] ^= 0xFF
    dst.write_bytes(bytes(data))
    with pytest.raises(ModelArtifactError, match="corrupted or truncated") as excinfo:
        load_model(dst)
    assert str(dst) in str(excinfo.value)


def test_not_a_zip_and_missing_path_are_clear_errors(tmp_path):
    bogus = tmp_path / TF_ARCHIVE_NAME
    bogus.write_bytes(b"this is not a zip archive")
    with pytest.raises(ModelArtifactError, match="corrupted or truncated"):
        load_model(bogus)
    with pytest.raises(ModelArtifactError, match="no such model"):
        load_model(tmp_path / "missing" / TF_ARCHIVE_NAME)


def test_weights_that_do_not_fit_the_manifest_are_refused(trained_like, tmp_path):
    _model, archive, _x, _o = trained_like
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read(MANIFEST_NAME))
        weights = tmp_path / WEIGHTS_NAME
        weights.write_bytes(zf.read(WEIGHTS_NAME))
    manifest["configs"]["model"]["n_filters_scale"] = 2
    bad = write_archive(tmp_path / "bad" / TF_ARCHIVE_NAME, manifest, weights)
    with pytest.raises(ModelArtifactError, match="does not fit the model") as excinfo:
        load_model(bad)
    assert str(bad) in str(excinfo.value)


def test_archive_written_by_pytorch_is_refused_naming_both_backends(trained_like, tmp_path):
    _model, archive, _x, _o = trained_like
    with zipfile.ZipFile(archive) as zf:
        manifest = json.loads(zf.read(MANIFEST_NAME))
        weights = tmp_path / WEIGHTS_NAME
        weights.write_bytes(zf.read(WEIGHTS_NAME))
    manifest["backend"] = "pytorch"
    foreign = write_archive(tmp_path / "foreign" / TF_ARCHIVE_NAME, manifest, weights)
    with pytest.raises(BackendMismatchError) as excinfo:
        load_model(foreign)
    message = str(excinfo.value)
    assert "pytorch" in message and "tensorflow" in message and str(foreign) in message


def test_save_requires_the_model_config(tmp_path):
    with pytest.raises(ValueError, match="configs\\['model'\\]"):
        save_model(build_model(ModelConfig(N=32)), tmp_path, {})
