"""The TensorFlow workflow takes N, gridsize and the neighbour count from its config, not from the
legacy ``params.cfg``: called without any ``update_legacy_dict`` (the legacy dict holding other
values), it groups, trains, saves and reloads the model it was configured for, and leaves the
legacy dict alone apart from the legacy edge's ``intensity_scale``."""

from __future__ import annotations

import pytest

pytest.importorskip("tensorflow")

from ptycho import params  # noqa: E402
from ptycho.config.config import ModelConfig, TrainingConfig  # noqa: E402
from ptycho.simulate import CanonicalSpec, simulate_spec  # noqa: E402
from ptycho.tf_backend.workflows import components  # noqa: E402

# Keras' Variable.numpy() trips numpy 2's __array__ copy-keyword deprecation; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

TINY = CanonicalSpec(seed=5, n=32, grid=8, count=64, step=4.0, jitter=0.3, nphotons=1e6, object_kind="mixed")


@pytest.fixture
def stale_legacy_dict():
    saved = dict(params.cfg)
    params.cfg.update(N=64, gridsize=1, neighbor_count=4)
    yield
    params.cfg.clear()
    params.cfg.update(saved)


def test_run_cdi_example_groups_with_its_config_not_the_legacy_dict(stale_legacy_dict, tmp_path):
    raw = simulate_spec(TINY)
    config = TrainingConfig(
        model=ModelConfig(N=32, gridsize=2), nepochs=1, batch_size=16, n_groups=16, neighbor_count=6, output_dir=tmp_path,
    )
    amplitude, phase, results = components.run_cdi_example(raw, raw, config, do_stitching=True)
    assert results["backend"] == "tensorflow"
    assert results["train_container"].X.shape == (16, 4, 32, 32)
    assert results["test_container"].X.shape[1:] == (4, 32, 32)  # the whole test scan, stitched
    assert amplitude.shape == raw.objectGuess.shape and results["reconstruction"].metadata["gridsize"] == 2
    assert (params.cfg["N"], params.cfg["gridsize"], params.cfg["neighbor_count"]) == (64, 1, 4)

    # The archive records what training used, and loading it gives the grouping back.
    _model, saved = components.load_inference_bundle(tmp_path)
    assert (saved["N"], saved["gridsize"], saved["neighbor_count"]) == (32, 2, 6)
    loaded = components.BACKEND.load(tmp_path)
    assert loaded.config.model.gridsize == 2 and loaded.config.neighbor_count == 6
    recon, grouped = components.BACKEND.reconstruct(
        loaded.model, raw, neighbor_count=loaded.config.neighbor_count, n_images=5, with_deviance=False, device=loaded.device,
    )
    assert grouped.X.shape == (5, 4, 32, 32) and recon.metadata["n_groups"] == 5
