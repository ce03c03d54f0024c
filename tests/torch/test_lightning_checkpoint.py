"""Checkpoint contract (brief §3.1, ARTIF-001, FAIL-003): hyperparameters as plain dicts, weights-only
loading, kwargs-free reload with bit-identical predictions, and the bundle's guards."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from ptycho.model_manifest import BackendMismatchError, ModelArtifactError, make_manifest, write_manifest
from ptycho_torch.config_bridge import GROUPS, to_hyperparameters
from ptycho_torch.model_manager import load_torch_bundle


@pytest.fixture(scope="module")
def ckpt(tiny_trained):
    results, config, _ = tiny_trained
    return results["checkpoint_path"]


def _batch(config, n=8, seed=0):
    rng = np.random.default_rng(seed)
    c, size = config.model.channels, config.model.N
    x = torch.from_numpy(rng.uniform(0, 3, (n, c, size, size)).astype(np.float32))
    offsets = torch.from_numpy(rng.uniform(-4, 4, (n, c, 2)))
    return x, offsets


def test_checkpoint_is_written_at_the_contract_path(tiny_trained, ckpt):
    results, config, _ = tiny_trained
    assert ckpt == config.output_dir / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and ckpt.stat().st_size > 10_000
    manifest = json.loads((config.output_dir / "manifest.json").read_text())
    assert manifest["backend"] == "pytorch" and manifest["checkpoint"] == "checkpoints/last.ckpt"


def test_hyper_parameters_hold_the_four_configs_as_plain_dicts(tiny_trained, ckpt):
    _, config, execution = tiny_trained
    checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True)
    hp = checkpoint["hyper_parameters"]
    assert hp is not None and set(hp) == set(GROUPS)
    assert all(type(hp[g]) is dict for g in GROUPS)
    assert json.loads(json.dumps(hp)) == hp  # JSON-able throughout
    assert hp == to_hyperparameters(config, seed=execution.seed)


def test_brief_validation_command_works(ckpt):
    # brief §3.1: torch.load with the default arguments (weights_only by default in torch >= 2.6)
    checkpoint = torch.load(ckpt)
    assert "hyper_parameters" in checkpoint and checkpoint["hyper_parameters"] is not None


def test_load_from_checkpoint_without_kwargs_reproduces_predictions_bit_for_bit(tiny_trained, ckpt):
    from ptycho_torch.model import PtychoPINN_Lightning

    results, config, _ = tiny_trained
    trained = results["models"]["diffraction_to_obj"].cpu().eval()
    loaded = PtychoPINN_Lightning.load_from_checkpoint(ckpt).eval()
    x, offsets = _batch(config)
    with torch.no_grad():
        a, b = trained(x, offsets), loaded(x, offsets)
    assert torch.equal(a.amplitude, b.amplitude)
    assert torch.equal(a.object_amplitude, b.object_amplitude) and torch.equal(a.object_phase, b.object_phase)
    assert torch.equal(loaded.network.physics.probe, trained.network.physics.probe)


def test_plain_torch_bundle_loader_reproduces_predictions_bit_for_bit(tiny_trained):
    results, config, _ = tiny_trained
    trained = results["models"]["diffraction_to_obj"].cpu().eval()
    bundle = load_torch_bundle(config.output_dir)
    assert bundle.model_config == config.model and bundle.training_config == config
    x, offsets = _batch(config, seed=1)
    with torch.no_grad():
        assert torch.equal(trained(x, offsets).amplitude, bundle.network(x, offsets).amplitude)


def test_training_changed_the_weights(tiny_trained):  # noqa: D103
    from ptycho_torch.model import PtychoPINN_Lightning

    results, config, execution = tiny_trained
    torch.manual_seed(execution.seed)
    fresh = PtychoPINN_Lightning(**results["hyper_parameters"], probe=results["train_data"].probeGuess)
    trained = results["models"]["diffraction_to_obj"]
    assert not torch.equal(fresh.network.encoder.blocks[0][0].weight, trained.network.encoder.blocks[0][0].weight.cpu())


def test_tensorflow_model_is_refused_naming_both_backends(tmp_path):
    write_manifest(tmp_path, make_manifest("tensorflow", {}))
    with pytest.raises(BackendMismatchError) as info:
        load_torch_bundle(tmp_path)
    assert "tensorflow" in str(info.value) and "pytorch" in str(info.value)


def test_modified_checkpoint_is_refused(tiny_trained, tmp_path):
    _, config, _ = tiny_trained
    copy = tmp_path / "model"
    shutil.copytree(config.output_dir, copy)
    with open(copy / "checkpoints" / "last.ckpt", "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(ModelArtifactError, match="checksum differs"):
        load_torch_bundle(copy)


def test_checkpoint_without_hyper_parameters_is_artif_001(tiny_trained, tmp_path):
    _, config, _ = tiny_trained
    checkpoint = torch.load(config.output_dir / "checkpoints" / "last.ckpt", weights_only=True)
    del checkpoint["hyper_parameters"]
    bare = tmp_path / "bare.ckpt"
    torch.save(checkpoint, bare)
    with pytest.raises(ModelArtifactError, match=r"lacks 'hyper_parameters' \(ARTIF-001\)"):
        load_torch_bundle(bare)


class _Arbitrary:
    def __reduce__(self):  # what a malicious pickle would run on load
        return (print, ("unpickled!",))


def test_pickled_objects_are_not_executed(tmp_path, capsys):
    bad = tmp_path / "evil.ckpt"
    torch.save({"hyper_parameters": _Arbitrary(), "state_dict": {}}, bad)
    with pytest.raises(ModelArtifactError, match="not a readable torch checkpoint"):
        load_torch_bundle(bad)
    assert "unpickled!" not in capsys.readouterr().out


def test_initial_network_reproduces_the_weights_training_started_from(tiny_trained):
    """``initial_network`` (plain torch) equals the module Lightning built before fitting."""
    import lightning.pytorch as L

    from ptycho_torch.model import PtychoPINN_Lightning
    from ptycho_torch.model_manager import initial_network

    results, config, execution = tiny_trained
    L.seed_everything(execution.seed, verbose=False)
    started = PtychoPINN_Lightning(**results["hyper_parameters"], probe=results["train_data"].probeGuess).network
    rebuilt = initial_network(load_torch_bundle(config.output_dir))
    a, b = started.state_dict(), rebuilt.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
