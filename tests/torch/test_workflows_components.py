"""Workflow components of the PyTorch backend (brief §2.1.3): Lightning orchestration, native
reassembly (ReassembleCdiImageTorch), decoder shape parity, multi-process training."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
import torch

from ptycho import params
from ptycho import physics as oracle
from ptycho import stitching
from ptycho.config.config import InferenceConfig, ModelConfig, TrainingConfig
from ptycho.evaluation import evaluate_reconstruction, scanned_region
from ptycho.raw_data import RawData
from ptycho.simulate import make_probe
from ptycho_torch.config_bridge import GROUPS, to_hyperparameters
from ptycho.workflows.reconstruction import stitch_positions as transform_positions
from ptycho_torch.inference import stitch_reconstruction
from ptycho_torch.network import DecoderLast, PtychoPINN
from ptycho_torch.reassembly import reassemble_patches
from ptycho_torch.workflows import components


# --------------------------------------------------------------------------- Lightning orchestration


class TestTrainWithLightningRed:
    """The orchestration contract, against the real Trainer on the tiny scan."""

    def test_module_is_built_with_all_four_configs(self, tiny_trained):
        from ptycho_torch.model import PtychoPINN_Lightning

        results, config, execution = tiny_trained
        module = results["models"]["diffraction_to_obj"]
        assert isinstance(module, PtychoPINN_Lightning)
        assert set(module.hparams) == set(GROUPS)
        assert {k: dict(v) for k, v in module.hparams.items()} == to_hyperparameters(config, seed=execution.seed)
        assert module.train_cfg == config

    def test_fit_ran_to_completion(self, tiny_trained):
        results, config, _ = tiny_trained
        trainer = results["trainer"]
        assert trainer.state.finished and trainer.state.fn == "fit"
        steps_per_epoch = math.ceil(len(results["train_container"].X) / config.batch_size)
        assert trainer.current_epoch == config.nepochs
        assert trainer.global_step == config.nepochs * steps_per_epoch
        assert len(results["history"]["train_loss"]) == config.nepochs
        assert all(np.isfinite(results["history"]["train_loss"]))
        assert results["history"]["val_loss"] is None  # no test data given

    def test_results_contain_the_model_and_the_saved_bundle(self, tiny_trained):
        results, config, _ = tiny_trained
        assert results["models"]["diffraction_to_obj"] is results["lightning_module"]
        assert results["checkpoint_path"].is_file()
        assert json.loads((config.output_dir / "manifest.json").read_text())["backend"] == "pytorch"
        assert results["train_container"].X.shape == (48, 4, 32, 32)

    def test_trains_on_the_cpu_with_a_quiet_trainer(self, tiny_trained):
        from lightning.pytorch.accelerators import CPUAccelerator

        trainer = tiny_trained[0]["trainer"]
        assert isinstance(trainer.accelerator, CPUAccelerator)
        assert next(tiny_trained[0]["lightning_module"].parameters()).device.type == "cpu"
        assert trainer.logger is None and not trainer.progress_bar_callback

    def test_same_seed_gives_identical_weights(self, tiny_trained, tiny_npz, tmp_path):
        results, config, execution = tiny_trained
        again = components.train_cdi_model_torch(
            tiny_npz, None, TrainingConfig(**{**config.__dict__, "output_dir": tmp_path}), execution
        )
        a = results["lightning_module"].state_dict()
        b = again["lightning_module"].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)

    def test_validation_loop_runs_on_test_data(self, tiny_npz, tmp_path):
        config = TrainingConfig(model=ModelConfig(N=32), train_data_file=tiny_npz, nepochs=1, n_groups=16,
                                output_dir=tmp_path, backend="pytorch")
        results = components.train_cdi_model_torch(
            tiny_npz, tiny_npz, config, components.TorchExecution(val_images=8, progress_bar=False)
        )
        assert len(results["history"]["val_loss"]) == 1 and np.isfinite(results["history"]["val_loss"][0])

    def test_gpu_request_without_a_visible_gpu_is_an_error_not_a_fallback(self):
        assert components.TorchExecution().resolved_accelerator() == "cpu"
        assert components.TorchExecution(accelerator="auto").resolved_accelerator() == "cpu"  # CUDA_VISIBLE_DEVICES=""
        with pytest.raises(ValueError, match="no CUDA device is visible"):
            components.TorchExecution(accelerator="gpu").resolved_accelerator()

    @pytest.mark.parametrize("field, value", [("accelerator", "tpu"), ("devices", 0), ("strategy", "fsdp"), ("seed", -1)])
    def test_execution_settings_are_validated(self, field, value):
        with pytest.raises(ValueError, match=field):
            components.TorchExecution(**{field: value})


def test_run_cdi_example_torch_returns_amplitude_phase_results(tiny_npz, tmp_path, monkeypatch):
    config = TrainingConfig(model=ModelConfig(N=32), train_data_file=tiny_npz, nepochs=1, n_groups=32,
                            output_dir=tmp_path, backend="pytorch")
    # Stale legacy values: the workflow groups with the config's N and gridsize, not params.cfg's.
    monkeypatch.setitem(params.cfg, "N", 64)
    monkeypatch.setitem(params.cfg, "gridsize", 2)
    amp, phase, results = components.run_cdi_example_torch(
        tiny_npz, tiny_npz, config, do_stitching=True, execution=components.TorchExecution(val_images=0, progress_bar=False)
    )
    truth = RawData.from_file(tiny_npz).objectGuess
    assert amp.shape == phase.shape == truth.shape
    assert results["backend"] == "pytorch"
    assert results["obj_tensor_full"].shape == truth.shape and np.iscomplexobj(results["obj_tensor_full"])
    assert results["global_offsets"].shape == (64, 2)  # the whole test scan is reconstructed
    assert {"history", "models", "checkpoint_path"} <= set(results)
    assert results["train_container"].X.shape[1:] == (1, 32, 32)
    assert params.cfg["N"] == 64  # the library leaves the legacy dict to the dispatcher and the legacy edge
    amp2, phase2, results2 = components.run_cdi_example_torch(
        tiny_npz, None, config, do_stitching=False, execution=components.TorchExecution(progress_bar=False)
    )
    assert amp2 is None and phase2 is None and "obj_tensor_full" not in results2


def test_n_zero_takes_the_pattern_size_from_the_training_data(tiny_npz, tmp_path):
    """ptychodus builds its configs with N = 0 ("not known yet"): the torch backend takes N from
    the data, saves it with the model, and an explicit N that disagrees is refused, naming the file."""
    from ptycho_torch.model_manager import load_torch_bundle

    execution = components.TorchExecution(val_images=0, progress_bar=False)
    config = TrainingConfig(model=ModelConfig(N=0), train_data_file=tiny_npz, nepochs=1, n_groups=16,
                            output_dir=tmp_path / "model", backend="pytorch")
    results = components.train_cdi_model_torch(tiny_npz, None, config, execution)
    assert results["config"].model.N == 32 and results["train_container"].X.shape[-1] == 32
    assert load_torch_bundle(tmp_path / "model").inference_config.model.N == 32
    wrong = TrainingConfig(model=ModelConfig(N=64), train_data_file=tiny_npz, nepochs=1, output_dir=tmp_path / "wrong")
    with pytest.raises(components.GroupingError, match=r"tiny_n32\.npz: patterns are 32 x 32 but ModelConfig\.N is 64"):
        components.train_cdi_model_torch(tiny_npz, None, wrong, execution)
    assert not (tmp_path / "wrong").exists()


# --------------------------------------------------------------------------- reassembly


@pytest.fixture(scope="module")
def truth_patches(tiny_npz):
    """True object patches of the tiny scan's object at its positions."""
    raw = RawData.from_file(tiny_npz)
    patches = oracle.extract_patches(raw.objectGuess, raw.positions, raw.N)
    return raw, patches


class TestReassembleCdiImageTorch:
    def test_native_reassembly_matches_numpy_to_1e5(self, truth_patches):
        raw, patches = truth_patches
        w = stitching.patch_weights(raw.N, raw.probeGuess, crop=raw.N // 2)
        ref = stitching.reassemble_patches(patches, raw.positions, raw.objectGuess.shape, w)
        ours = reassemble_patches(torch.from_numpy(patches), torch.from_numpy(raw.positions), raw.objectGuess.shape, torch.from_numpy(w)).numpy()
        assert np.max(np.abs(ours - ref)) <= 1e-5 * np.max(np.abs(ref))

    def test_stitching_true_patches_recovers_the_object(self, truth_patches):
        raw, patches = truth_patches
        synced = stitch_reconstruction(patches, raw.positions, raw.probeGuess, raw.objectGuess.shape, crop=raw.N // 2)
        region = scanned_region(raw.positions, synced.shape)
        q = evaluate_reconstruction(synced, raw.objectGuess, region)
        assert q.amplitude_ssim > 0.95 and q.phase_ssim > 0.95
        # the arithmetic below: the stitching alone, without the phase synchronisation
        recon = stitch_reconstruction(patches, raw.positions, raw.probeGuess, raw.objectGuess.shape, crop=raw.N // 2,
                                      synchronise_phases=False)
        # and the cropped fast path equals the full-patch weighted average
        w = stitching.patch_weights(raw.N, raw.probeGuess, crop=raw.N // 2)
        full = stitching.reassemble_patches(patches, raw.positions, raw.objectGuess.shape, w)
        assert np.max(np.abs(recon - full)) <= 1e-5 * np.max(np.abs(full))

    def test_flips_mirror_positions_and_transpose_transposes_patches(self, truth_patches):
        raw, patches = truth_patches
        shape, w = raw.objectGuess.shape, stitching.patch_weights(raw.N, raw.probeGuess)
        for flip_x, flip_y in ((True, False), (False, True), (True, True)):
            ours = stitch_reconstruction(patches, raw.positions, raw.probeGuess, shape, None, flip_x=flip_x, flip_y=flip_y,
                                         synchronise_phases=False)
            mirrored = transform_positions(raw.positions, flip_x, flip_y)
            assert not np.allclose(mirrored, raw.positions)
            ref = stitching.reassemble_patches(patches, mirrored, shape, w)
            assert np.max(np.abs(ours - ref)) <= 1e-5 * np.max(np.abs(ref))
        ours = stitch_reconstruction(patches, raw.positions, raw.probeGuess, shape, None, transpose=True, synchronise_phases=False)
        ref = stitching.reassemble_patches(np.swapaxes(patches, -1, -2), raw.positions, shape, w)
        assert np.max(np.abs(ours - ref)) <= 1e-5 * np.max(np.abs(ref))
        twice = transform_positions(transform_positions(raw.positions, True, True), True, True)
        np.testing.assert_allclose(twice, raw.positions, atol=1e-9)

    def test_return_contract_with_a_trained_model(self, tiny_trained, tiny_npz):
        results, config, _ = tiny_trained
        amp, phase, out = components._reassemble_cdi_image_torch(
            tiny_npz, config, flip_x=False, flip_y=False, transpose=False, M=None, train_results=results
        )
        raw = RawData.from_file(tiny_npz)
        assert amp.dtype == phase.dtype == np.float32
        assert amp.shape == phase.shape == raw.objectGuess.shape
        assert {"obj_tensor_full", "global_offsets", "recon_amp", "recon_phase", "poisson_deviance"} <= set(out)
        np.testing.assert_array_equal(np.abs(out["obj_tensor_full"]).astype(np.float32), amp)
        # gridsize 2: every pattern of every group is stitched at its own global position
        assert out["global_offsets"].shape == (64 * 4, 2)
        np.testing.assert_allclose(out["global_offsets"], raw.positions[out["reconstruction"].indices], atol=1e-9)
        # the M override sets the canvas
        amp_m, _, _ = components._reassemble_cdi_image_torch(tiny_npz, config, M=90, train_results=results)
        assert amp_m.shape == (90, 90)

    def test_inference_config_subset(self, tiny_trained, tiny_npz):
        results, config, _ = tiny_trained
        infer = InferenceConfig(model=config.model, n_groups=10, backend="pytorch")
        _, _, out = components._reassemble_cdi_image_torch(tiny_npz, infer, network=results["lightning_module"])
        assert out["global_offsets"].shape == (10 * 4, 2)


# --------------------------------------------------------------------------- decoder shape parity


class TestDecoderLastShapeParity:
    @pytest.mark.parametrize("n", [32, 64, 128])
    @pytest.mark.parametrize("probe_big", [False, True])
    @pytest.mark.parametrize("gridsize", [1, 2])
    def test_decoder_last_outputs_the_configured_patch(self, n, probe_big, gridsize):
        torch.manual_seed(0)
        cfg = ModelConfig(N=n, gridsize=gridsize, probe_big=probe_big)
        net = PtychoPINN(cfg, torch.from_numpy(make_probe(n, sigma=n / 8, aperture=n / 4)))
        assert isinstance(net.decoder_last, DecoderLast)
        assert dict(net.named_children())["decoder_last"] is net.decoder_last
        seen = {}
        net.decoder_last.register_forward_hook(lambda m, i, o: seen.update(out=o, inp=i))
        x = torch.rand(2, cfg.channels, n, n)
        with torch.no_grad():
            out = net(x, torch.zeros(2, cfg.channels, 2, dtype=torch.float64))
        amp, phase = seen["out"]
        assert amp.shape == phase.shape == (2, cfg.channels, n, n)
        # the heads work on the predicted window: n/2 unless probe_big
        assert seen["inp"][0].shape[-1] == (n if probe_big else n // 2)
        assert out.amplitude.shape == (2, cfg.channels, n, n)


# --------------------------------------------------------------------------- multi-device training


@pytest.mark.slow
def test_ddp_training_with_two_cpu_processes(tiny_npz, tmp_path, cli_env, python_exe):
    """Lightning's own DDP strategy, 2 CPU processes: the data are split between them, so each
    epoch takes half the optimiser steps of one process, and one bundle is written."""
    out = tmp_path / "ddp"
    cmd = [python_exe, "-m", "ptycho_torch.train", "--train_data_file", str(tiny_npz), "--output_dir", str(out),
           "--max_epochs", "2", "--n_images", "64", "--batch_size", "16", "--accelerator", "cpu",
           "--devices", "2", "--strategy", "ddp", "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=cli_env(), timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["devices"] == 2 and summary["strategy"] == "ddp"
    assert summary["global_step"] == 2 * math.ceil(64 / 2 / 16)  # 4, where one process would take 8
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["devices"] == 2 and manifest["global_step"] == 4
    from ptycho_torch.model_manager import load_torch_bundle

    bundle = load_torch_bundle(out)
    assert bundle.model_config.N == 32
