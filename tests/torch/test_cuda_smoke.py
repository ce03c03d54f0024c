"""CUDA smoke (brief §5.1): a short train and inference on a CUDA device, within 30 s.

Skipped, with the reason, where no CUDA device is visible (CPU-only CI sets CUDA_VISIBLE_DEVICES="").
Run on a GPU machine with: pytest tests/torch/test_cuda_smoke.py -m cuda -v
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.raw_data import RawData


def _require_cuda() -> None:
    if not torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")
        pytest.skip(f"no CUDA device visible (CUDA_VISIBLE_DEVICES={visible!r}, torch {torch.__version__}); CUDA smoke runs on GPU workers only")


@pytest.mark.cuda
@pytest.mark.timeout(30)
def test_cuda_train_and_infer_smoke(tiny_npz, tmp_path, record_property):
    _require_cuda()
    import time

    from ptycho_torch.inference import reconstruct
    from ptycho_torch.model_manager import load_torch_bundle
    from ptycho_torch.workflows.components import TorchExecution, train_cdi_model_torch

    start = time.perf_counter()
    config = TrainingConfig(model=ModelConfig(N=32, gridsize=2), train_data_file=tiny_npz, nepochs=2, n_groups=64,
                            output_dir=tmp_path, backend="pytorch")
    results = train_cdi_model_torch(tiny_npz, None, config, TorchExecution(accelerator="gpu", progress_bar=False))
    train_s = time.perf_counter() - start
    module = results["lightning_module"]
    assert type(results["trainer"].accelerator).__name__ == "CUDAAccelerator"
    assert np.isfinite(results["history"]["train_loss"]).all() and len(results["history"]["train_loss"]) == 2

    bundle = load_torch_bundle(tmp_path, map_location="cuda")
    raw = RawData.from_file(tiny_npz)
    start = time.perf_counter()
    recon, grouped = reconstruct(bundle.network, raw, device=torch.device("cuda"))
    infer_s = time.perf_counter() - start
    assert next(bundle.network.parameters()).device.type == "cuda"
    assert recon.obj.shape == raw.objectGuess.shape and np.isfinite(recon.obj).all()

    # the same weights on the CPU give the same object patches (float32 tolerance)
    x = torch.from_numpy(grouped.X[:16])
    with torch.no_grad():
        gpu = bundle.network.to("cuda").predict_object(x.cuda())[0].cpu()
        cpu = module.network.to("cpu").predict_object(x)[0]
    assert torch.allclose(gpu, cpu, atol=1e-4, rtol=1e-4)
    record_property("cuda_device", torch.cuda.get_device_name(0))
    record_property("cuda_train_seconds", round(train_s, 2))
    record_property("cuda_infer_seconds", round(infer_s, 2))
