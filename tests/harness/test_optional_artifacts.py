"""Brief §3.1's optional artifact: ``{output_dir}/train_debug.log`` (debug mode only).

The catalog's ``optional_files`` are looked for beside the PNGs a test recorded (its output_dir):
reported in ``report.json`` when present, and nothing at all when absent, so no rule fires either way.
"""

from __future__ import annotations

import pickle
from pathlib import Path

from sample_projects import RULES, checkpoint_bytes, png_bytes

from harness.catalog import ArtifactSpec, Selector
from harness.rule_engine import EvaluationContext, NoHistory, evaluate_selector, prepare
from harness.report_model import Counts, SelectorResult, SelectorState, TestRecord
from harness.rule_schema import load_rules

NODE = "tests/test_integration.py::test_run_pytorch_train_save_load_infer"


def _outputs(folder: Path, debug_log: bytes | None) -> dict[str, str]:
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(checkpoint_bytes(pickle.dumps({"hyper_parameters": {"N": 64}})))
    for name in ("reconstruction_amplitude.png", "reconstruction_phase.png"):
        (folder / name).write_bytes(png_bytes(64, 64, pad_to=2048))
    if debug_log is not None:
        (folder / "train_debug.log").write_bytes(debug_log)
    return {"checkpoint_path": str(folder / "checkpoints" / "last.ckpt"),
            "amplitude_png": str(folder / "reconstruction_amplitude.png"),
            "phase_png": str(folder / "reconstruction_phase.png"), "expected_png_shape": "[64, 64]"}


def _evaluate(tmp_path: Path, debug_log: bytes | None):
    selector = Selector(name="integration", title="integration", owner="TEST-PYTORCH-001", args=("t",),
                        artifacts=ArtifactSpec(checkpoint_property="checkpoint_path",
                                               png_properties=("amplitude_png", "phase_png"),
                                               png_shape_property="expected_png_shape",
                                               optional_files=("train_debug.log",)))
    result = SelectorResult(name="integration", title="integration", owner="TEST-PYTORCH-001", argv=[], env={},
                            state=SelectorState.PASSED, wall_s=40.0, counts=Counts(total=1, passed=1),
                            tests=[TestRecord(nodeid=NODE, outcome="passed",
                                              user_properties=_outputs(tmp_path / "out", debug_log))])
    ctx = EvaluationContext(rules=load_rules(RULES), history=NoHistory(), host_key="h")
    prepare(result, selector, ctx, tmp_path)
    return result, evaluate_selector(result, selector, ctx), ctx


def test_a_debug_log_is_reported_when_present(tmp_path):
    result, alerts, _ = _evaluate(tmp_path, b"epoch 1 loss 0.5\n" * 3000)
    optional = [a for a in result.artifacts if a.kind == "optional"]
    assert len(optional) == 1
    assert optional[0].property == "train_debug.log" and optional[0].ok and optional[0].size_bytes == 17 * 3000
    assert optional[0].path.endswith("out/train_debug.log")
    assert alerts == []


def test_no_debug_log_is_no_finding_at_all(tmp_path):
    result, alerts, ctx = _evaluate(tmp_path, None)
    assert {a.kind for a in result.artifacts} == {"checkpoint", "png"} and all(a.ok for a in result.artifacts)
    assert alerts == [] and not any("train_debug" in note for note in ctx.notes)


def test_an_empty_debug_log_is_reported_but_fires_nothing(tmp_path):
    result, alerts, _ = _evaluate(tmp_path, b"")
    optional = next(a for a in result.artifacts if a.kind == "optional")
    assert not optional.ok and "empty" in optional.detail
    assert alerts == []


def test_the_shipped_catalog_knows_train_debug_log_as_optional():
    from harness.catalog import load_catalog
    from harness.locations import DEFAULT_CATALOG

    assert load_catalog(DEFAULT_CATALOG).selectors["integration"].artifacts.optional_files == ("train_debug.log",)
