"""Model manager cross-backend tests (brief §2.1.4): a model saved by one backend and loaded with the
other fails with an error naming both backends and the path, through the backend's own loader, the
dispatcher and the command line; damaged artifacts give a clear error too."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from ptycho import params
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig, update_legacy_dict
from ptycho.model_manifest import TF_ARCHIVE_NAME, BackendMismatchError, ModelArtifactError
from ptycho.workflows.backend_selector import load_inference_bundle_with_backend
from ptycho_torch.model_manager import load_torch_bundle

HAS_TF = importlib.util.find_spec("tensorflow") is not None
# Keras' Variable.numpy() trips numpy 2's __array__ copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")


@pytest.fixture(scope="module")
def tf_model_dir(tmp_path_factory) -> Path:
    """A TensorFlow model directory holding ``wts.h5.zip``: a real Keras save when TensorFlow is
    installed; in a torch-only environment the same archive layout with a placeholder weights
    member (the torch loader decides on the manifest alone)."""
    out = tmp_path_factory.mktemp("tf_model")
    config = TrainingConfig(model=ModelConfig(N=32, gridsize=2), output_dir=out, backend="tensorflow")
    saved = dict(params.cfg)
    try:
        update_legacy_dict(params.cfg, config)
        if HAS_TF:
            from ptycho.tf_backend.network import build_model
            from ptycho.tf_backend.workflows.components import save_trained_model

            save_trained_model(build_model(config.model, np.ones((32, 32), np.complex64)), config)
        else:
            from ptycho.tf_backend.model_manager import WEIGHTS_NAME, config_to_dict, write_archive
            from ptycho.model_manifest import make_manifest

            weights = out / WEIGHTS_NAME
            weights.write_bytes(b"\x89HDF\r\n\x1a\n")
            manifest = make_manifest("tensorflow", {"model": config_to_dict(config.model)}, {"params": dict(params.cfg)})
            write_archive(out / TF_ARCHIVE_NAME, manifest, weights)
            weights.unlink()
    finally:
        params.cfg.clear()
        params.cfg.update(saved)
    return out


def _names_both(exc: BaseException, path: Path) -> None:
    message = str(exc)
    assert "tensorflow" in message and "pytorch" in message, message
    assert str(path) in message, message


def test_load_tensorflow_checkpoint_with_pytorch_backend(tf_model_dir):
    archive = tf_model_dir / TF_ARCHIVE_NAME
    for path in (tf_model_dir, archive):
        with pytest.raises(BackendMismatchError) as info:
            load_torch_bundle(path)
        _names_both(info.value, path)
        assert info.value.found == "tensorflow" and info.value.requested == "pytorch"
    with pytest.raises(BackendMismatchError) as info:
        load_inference_bundle_with_backend(tf_model_dir, InferenceConfig(model=ModelConfig(N=32, gridsize=2), backend="pytorch"))
    _names_both(info.value, tf_model_dir)


@pytest.mark.skipif(not HAS_TF, reason="the TensorFlow loader needs TensorFlow")
def test_load_pytorch_checkpoint_with_tensorflow_backend(tiny_trained):
    from ptycho.tf_backend.model_manager import load_model

    _, config, _ = tiny_trained
    model_dir = Path(config.output_dir)
    for path in (model_dir, model_dir / "checkpoints" / "last.ckpt"):
        with pytest.raises(BackendMismatchError) as info:
            load_model(path)
        _names_both(info.value, path)
        assert info.value.found == "pytorch" and info.value.requested == "tensorflow"
    with pytest.raises(BackendMismatchError) as info:
        load_inference_bundle_with_backend(model_dir, InferenceConfig(model=config.model, backend="tensorflow"))
    _names_both(info.value, model_dir)


def test_command_line_refuses_the_other_backends_model(tiny_trained, tf_model_dir, tiny_npz, tmp_path, capsys):
    """Exit code 2 and one line naming both backends, either way round; nothing written."""
    from ptycho.cli import infer_main

    _, config, _ = tiny_trained
    cases = [("tensorflow", Path(config.output_dir)), ("pytorch", tf_model_dir)]
    for backend, model_path in cases:
        out = tmp_path / f"out_{backend}"
        code = infer_main([
            "--backend", backend, "--model_path", str(model_path), "--test_data", str(tiny_npz), "--output_dir", str(out),
        ])
        err = capsys.readouterr().err.strip()
        assert code == 2, err
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        assert "tensorflow" in err and "pytorch" in err and str(model_path) in err
        assert not out.exists()


def test_truncated_archives_are_clear_errors_for_both_loaders(tf_model_dir, tiny_trained, tmp_path):
    """A truncated TF archive: 'corrupted or truncated' naming the file, whichever backend asks.
    A truncated torch checkpoint: refused by its checksum, naming the file."""
    truncated = tmp_path / "tf" / TF_ARCHIVE_NAME
    truncated.parent.mkdir()
    data = (tf_model_dir / TF_ARCHIVE_NAME).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelArtifactError, match="corrupted or truncated") as info:
        load_torch_bundle(truncated)
    assert str(truncated) in str(info.value)
    if HAS_TF:
        from ptycho.tf_backend.model_manager import load_model

        with pytest.raises(ModelArtifactError, match="corrupted or truncated"):
            load_model(truncated)

    _, config, _ = tiny_trained
    copy = tmp_path / "torch"
    shutil.copytree(config.output_dir, copy)
    ckpt = copy / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(ModelArtifactError) as info:
        load_torch_bundle(copy)
    assert str(ckpt) in str(info.value)
    with pytest.raises(ModelArtifactError) as info:
        load_torch_bundle(ckpt)  # a bare checkpoint path: no manifest checksum to fall back on
    assert str(ckpt) in str(info.value)
