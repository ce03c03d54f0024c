"""The brief's trigger table, fired by real failing tests (repository rules, sample project).

One harness run: an ``integration`` selector whose tests fail with each message the ordered
chain classifies, checks its recorded artifacts and quality figure; a ``backend_selection``
suite; another selector; a ``tests/torch/`` module without torch; and a tiny cadence budget.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path

import pytest
from sample_projects import SampleProject, checkpoint_bytes, png_bytes

GOOD_CKPT = pickle.dumps({"state_dict": OrderedDict(), "hyper_parameters": {
    "model_config": {"N": 64, "gridsize": 1}, "training_config": {}, "data_config": {}, "inference_config": {}}}, protocol=2)
NO_HPARAMS_CKPT = pickle.dumps({"state_dict": OrderedDict(), "epoch": 1}, protocol=2)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch EVIL_RAN",))


EVIL_CKPT = pickle.dumps({"hyper_parameters": _Evil()}, protocol=2)

INTEGRATION = '''
import pathlib, pytest
from dataloader import load_npz

DATA = pathlib.Path(__file__).parent / "data"

def test_generic_failure():
    assert 0.12 > 0.5, "reconstruction diverged"

def test_checkpoint_typeerror():
    raise TypeError("PtychoPINN_Lightning.load_from_checkpoint: __init__() missing 1 required positional argument: 'model_config' (output shape unknown)")

def test_decoder_shape():
    raise RuntimeError("The size of tensor a (64) must match the size of tensor b (32) at non-singleton dimension 3")

def test_gridsize_sync():
    raise ValueError("channel shape mismatch: gridsize=2 expects 4 channels but params.cfg says 1")

def test_npz_layout():
    load_npz(DATA / "legacy.npz")

def test_run_pytorch_train_save_load_infer(record_property, tmp_path):
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes((DATA / "good.ckpt").read_bytes())
    for name in ("amplitude", "phase"):
        (tmp_path / f"reconstruction_{name}.png").write_bytes((DATA / "good.png").read_bytes())
    record_property("checkpoint_path", str(ckpt))
    record_property("amplitude_png", str(tmp_path / "reconstruction_amplitude.png"))
    record_property("phase_png", str(tmp_path / "reconstruction_phase.png"))
    record_property("expected_png_shape", "[48, 40]")
    record_property("amplitude_ssim", 0.52)
    record_property("phase_ssim", 0.91)
'''

DATALOADER = '''
import numpy as np

def _get_diffraction_stack(npz):
    diffraction = npz["diffraction"]
    n = diffraction.shape[2]
    return diffraction[:, :, n]  # the legacy (H, W, n) layout indexed past its end

def load_npz(path):
    with np.load(path) as npz:
        return _get_diffraction_stack(npz)
'''

BAD_ARTIFACTS = '''
import pathlib
DATA = pathlib.Path(__file__).parent / "data"

def test_bad_checkpoint_and_pngs(record_property):
    record_property("checkpoint_path", str(DATA / "no_hparams.ckpt"))
    record_property("amplitude_png", str(DATA / "tiny.png"))
    record_property("phase_png", str(DATA / "wrong_size.png"))
    record_property("expected_png_shape", "[48, 40]")

def test_hostile_checkpoint(record_property):
    record_property("checkpoint_path", str(DATA / "evil.ckpt"))
    record_property("amplitude_png", str(DATA / "missing.png"))
    record_property("phase_png", "tests/data/good.png")  # relative: resolved against the catalog root
'''


@pytest.fixture(scope="module")
def fired(tmp_path_factory):
    project = SampleProject(tmp_path_factory.mktemp("triggers"))
    project.write("tests/dataloader.py", DATALOADER)
    project.write("tests/test_integration.py", INTEGRATION)
    project.write("tests/test_artifacts.py", BAD_ARTIFACTS)
    project.write("tests/test_backend.py", """
        def test_default_backend_is_tensorflow():
            backend = "pytorch"
            assert backend == "tensorflow"
        def test_invalid_backend_raises(): pass
    """)
    project.write("tests/test_other.py", """
        def test_reassembly_matches():
            assert [1, 2] == [1, 3]
    """)
    project.write("tests/torch/test_needs_torch.py", """
        import sys
        sys.modules["torch"] = None  # torch "not installed"
        import torch
        def test_never_runs(): pass
    """)
    data = project.root / "tests" / "data"
    data.mkdir()
    (data / "good.ckpt").write_bytes(checkpoint_bytes(GOOD_CKPT))
    (data / "no_hparams.ckpt").write_bytes(checkpoint_bytes(NO_HPARAMS_CKPT))
    (data / "evil.ckpt").write_bytes(checkpoint_bytes(EVIL_CKPT))
    (data / "good.png").write_bytes(png_bytes(48, 40, pad_to=2048))
    (data / "tiny.png").write_bytes(png_bytes(48, 40))
    (data / "wrong_size.png").write_bytes(png_bytes(64, 64, pad_to=2048))
    import numpy as np

    np.savez(data / "legacy.npz", diffraction=np.zeros((8, 8, 5), dtype=np.float32))
    artifacts = {"checkpoint_property": "checkpoint_path", "png_properties": ["amplitude_png", "phase_png"],
                 "png_shape_property": "expected_png_shape", "min_png_bytes": 1024}
    project.catalog(
        {
            "integration": {"args": ["tests/test_integration.py"], "artifacts": artifacts,
                            "figures": [{"name": "amplitude_ssim", "baseline": 0.8, "tolerance": 0.05},
                                        {"name": "phase_ssim", "baseline": 0.9, "tolerance": 0.05}]},
            "artifacts_check": {"args": ["tests/test_artifacts.py"], "artifacts": artifacts},
            "backend_selection": {"args": ["tests/test_backend.py"], "runtime": {"critical_s": 90}},
            "reassembly_parity": {"args": ["tests/test_other.py"], "owner": "INTEGRATE-PYTORCH-001"},
            "torch_import": {"args": ["tests/torch/test_needs_torch.py"]},
        },
        {"pr": {"selectors": ["integration", "artifacts_check", "backend_selection", "reassembly_parity", "torch_import"],
                "budget_s": 0.5}},
    )
    result = project.run("--jobs", "2", "--no-history")  # history has its own tests
    assert result.returncode == 1, result.stderr
    return project, result


@pytest.mark.parametrize("test, trigger", [
    ("test_generic_failure", "FAIL-001"),
    ("test_checkpoint_typeerror", "FAIL-003"),
    ("test_decoder_shape", "PARITY-001"),
    ("test_gridsize_sync", "CONFIG-001"),
    ("test_npz_layout", "FORMAT-001"),
])
def test_integration_failures_follow_the_ordered_chain(fired, test, trigger):
    """First match wins: a checkpoint TypeError that mentions a shape is FAIL-003 only."""
    _, result = fired
    assert result.triggers_by_node()[f"tests/test_integration.py::{test}"] == {trigger}


def test_each_fired_trigger_carries_its_evidence(fired):
    _, result = fired
    alert = next(a for a in result.alerts("FAIL-003"))
    assert alert["severity"] == "high" and alert["owner"] == "INTEGRATE-PYTORCH-001" and alert["sla"] == "<4 hours"
    evidence = alert["evidence"]
    assert evidence["selector"] == "integration"
    assert evidence["nodeid"] == "tests/test_integration.py::test_checkpoint_typeerror"
    assert evidence["matched_line"].startswith("TypeError: PtychoPINN_Lightning.load_from_checkpoint")
    assert evidence["stage"] == "call"
    fail_001 = next(a for a in result.alerts("FAIL-001"))
    assert fail_001["severity"] == "critical" and "TEST-PYTORCH-001" in fail_001["owner"]


def test_backend_suite_failure_is_fail_002_only(fired):
    _, result = fired
    alerts = result.alerts(selector="backend_selection")
    assert [(a["trigger"], a["severity"], a["nodeid"]) for a in alerts] == [
        ("FAIL-002", "critical", "tests/test_backend.py::test_default_backend_is_tensorflow")]


def test_other_selectors_failure_is_test_001_owned_by_the_selector(fired):
    _, result = fired
    (alert,) = result.alerts(selector="reassembly_parity")
    assert alert["trigger"] == "TEST-001" and alert["owner"] == "INTEGRATE-PYTORCH-001"


def test_torch_import_error_under_tests_torch_is_policy_001(fired):
    _, result = fired
    assert result.selector("torch_import")["state"] == "collection_error"
    triggers = {a["trigger"] for a in result.alerts(selector="torch_import")}
    assert triggers == {"POLICY-001", "HARNESS-001"}
    policy = result.alerts("POLICY-001")[0]
    assert "torch" in policy["evidence"]["matched_line"]


def test_good_artifacts_pass_and_are_reported_relative_to_the_run(fired):
    _, result = fired
    checks = result.selector("integration")["artifacts"]
    assert len(checks) == 3 and all(check["ok"] for check in checks), checks
    ckpt = next(c for c in checks if c["kind"] == "checkpoint")
    assert "hyper_parameters: data_config, inference_config, model_config, training_config" == ckpt["detail"]
    assert ckpt["path"].startswith("selectors/integration/tmp/")
    assert (result.run_dirs[-1] / ckpt["path"]).is_file()  # the artifact survived in the run directory
    test = next(t for t in result.selector("integration")["tests"] if t["nodeid"].endswith("save_load_infer"))
    assert Path(test["user_properties"]["checkpoint_path"]).is_file()  # recorded paths point to the published run
    assert ".staging" not in json.dumps(result.report)


def test_artifact_triggers(fired):
    project, result = fired
    details = sorted((a["trigger"], a["evidence"]["property"], a["evidence"]["detail"]) for a in result.alerts(selector="artifacts_check"))
    assert [(t, p) for t, p, _ in details] == [
        ("ARTIF-001", "checkpoint_path"), ("ARTIF-001", "checkpoint_path"),
        ("ARTIF-002", "amplitude_png"), ("ARTIF-002", "amplitude_png"), ("ARTIF-002", "phase_png")]
    text = " | ".join(d for _, _, d in details)
    assert "no 'hyper_parameters' key" in text
    assert "posix.system, which torch.load(weights_only=True) refuses" in text
    assert "below the 1024-byte minimum" in text
    assert "64x64 px, expected 48x40" in text
    assert "PNG file is missing" in text
    assert not (project.root / "EVIL_RAN").exists() and not (project.root / "tests" / "EVIL_RAN").exists()


def test_quality_figure_below_baseline_fires_qual_001(fired):
    _, result = fired
    (alert,) = result.alerts("QUAL-001")
    assert alert["evidence"]["figure"] == "amplitude_ssim"
    assert alert["evidence"]["value"] == 0.52 and alert["evidence"]["baseline"] == 0.8
    assert alert["severity"] == "high"


def test_cadence_budget(fired):
    _, result = fired
    (alert,) = result.alerts("BUDGET-001")
    assert alert["severity"] == "warning" and alert["evidence"]["budget_s"] == 0.5


def test_summaries_escape_untrusted_text(fired):
    _, result = fired
    html = (result.run_dirs[-1] / "summary.html").read_text()
    markdown = (result.run_dirs[-1] / "summary.md").read_text()
    assert "&lt;4 hours" in html and "<4 hours" not in html
    assert "FAIL-003" in markdown and "&lt;4 hours" in markdown
    for line in markdown.splitlines():
        if line.startswith("| 🟠 | **FAIL-003**"):
            assert line.count(" | ") == 6  # message pipes cannot break the table


def test_evaluate_applies_the_rules_to_a_report_from_elsewhere(fired):
    project, result = fired
    pytest_json = result.run_dirs[-1] / result.selector("backend_selection")["files"]["pytest_json"]
    done = project.harness("evaluate", str(pytest_json), "--selector", "backend_selection", "--runtime", "95", "--json")
    assert done.returncode == 1, done.stderr
    verdict = json.loads(done.stdout)
    assert verdict["state"] == "failed"
    assert {a["trigger"] for a in verdict["alerts"]} == {"RT-001", "FAIL-002"}
    rt = next(a for a in verdict["alerts"] if a["trigger"] == "RT-001")
    assert rt["evidence"]["runtime_s"] == 95 and rt["evidence"]["threshold_s"] == 90


def test_safe_reader_accepts_a_real_torch_checkpoint(tmp_path):
    """The restricted unpickler reads what torch.save writes (torch runs in a subprocess)."""
    pytest.importorskip("torch")
    path = tmp_path / "last.ckpt"
    script = ("import torch, collections, sys; torch.save({'state_dict': collections.OrderedDict(w=torch.zeros(3)), "
              "'hyper_parameters': {'model_config': {'N': 64}}, 'epoch': 1}, sys.argv[1])")
    subprocess.run([sys.executable, "-c", script, str(path)], check=True, env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""})
    from harness.artifacts import inspect_checkpoint

    found = inspect_checkpoint(path)
    assert found.ok and found.detail == "hyper_parameters: model_config"
