"""The command line: help, clear errors (exit 2, no traceback), calibrate, changed files, schema."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from sample_projects import REPO, SampleProject

BRIEF_TRIGGERS = {"RT-001", "RT-002", "RT-003", "FAIL-001", "FAIL-002", "FAIL-003", "POLICY-001", "CONFIG-001",
                  "FORMAT-001", "PARITY-001", "ARTIF-001", "ARTIF-002"}


def harness(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_help_lists_the_commands_without_importing_a_backend():
    done = harness("--help")
    assert done.returncode == 0
    for command in ("run", "evaluate", "calibrate", "history", "catalog", "rules", "schema"):
        assert f"    {command}" in done.stdout
    probe = ("import sys, harness.cli as cli; cli.build_parser(); "
             "import harness.pipeline, harness.rule_engine, harness.artifacts, harness.history, harness.render; "
             "print(sorted({'torch', 'tensorflow', 'lightning'} & set(sys.modules)))")
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO)
    assert imported.stdout.strip() == "[]"


@pytest.mark.parametrize("command", ["run", "evaluate", "calibrate", "history", "catalog", "rules"])
def test_every_command_has_help(command):
    done = harness(command, "--help")
    assert done.returncode == 0 and "usage: harness" in done.stdout


def test_the_repository_catalog_and_rules_are_valid():
    catalog = harness("catalog", "--json")
    assert catalog.returncode == 0, catalog.stderr
    data = json.loads(catalog.stdout)
    assert data["cadences"]["pr"]["selectors"] == ["integration", "backend_selection"]
    assert data["cadences"]["pr"]["budget_s"] == 120
    integration = data["selectors"]["integration"]
    assert integration["args"][0] == "tests/torch/test_integration_workflow_torch.py::test_run_pytorch_train_save_load_infer"
    assert integration["env"]["CUDA_VISIBLE_DEVICES"] == ""
    assert (integration["runtime"]["critical_s"], integration["runtime"]["warning_s"],
            integration["runtime"]["suspicious_below_s"], integration["runtime"]["baseline_s"]) == (90, 60, 20, 35.92)
    parity = {tuple(s["args"][:3]) for name, s in data["selectors"].items() if name in data["cadences"]["nightly"]["selectors"]}
    assert ("tests/torch/test_config_bridge.py", "-k", "parity") in parity
    rules = harness("rules", "--json")
    assert rules.returncode == 0, rules.stderr
    ids = {t["id"] for t in json.loads(rules.stdout)["triggers"]}
    assert BRIEF_TRIGGERS | {"QUAL-001"} <= ids


@pytest.mark.parametrize("body, expected", [
    ('[selectors.a]\ntitle = "a"\nowner = "o"\nargs = ["t.py"]\ntest_timeout_s = -1\n[cadences.pr]\nselectors = ["a"]\n',
     "selectors.a.test_timeout_s: Input should be greater than 0"),
    ('[selectors.a]\ntitle = "a"\nowner = "o"\nargs = ["t.py"]\ntimout_s = 5\n[cadences.pr]\nselectors = ["a"]\n',
     "selectors.a.timout_s: Extra inputs are not permitted"),
    ('[selectors.a]\ntitle = "a"\nowner = "o"\nargs = ["t.py"]\n[cadences.pr]\nselectors = ["b"]\n',
     "cadences.pr.selectors names unknown selector 'b' (known: a)"),
    ('[selectors.a\n', "not valid TOML"),
])
def test_an_invalid_catalog_is_one_line_naming_file_and_field(tmp_path, body, expected):
    path = tmp_path / "catalog.toml"
    path.write_text(body)
    done = harness("run", "--cadence", "pr", "--catalog", str(path), "--reports-dir", str(tmp_path / "r"))
    assert done.returncode == 2
    assert str(path) in done.stderr and expected in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_an_invalid_rule_names_the_trigger(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: 1\ntriggers:\n  - id: RT-001\n    title: t\n    severity: critical\n    owner: o\n"
                     "    sla: 1h\n    when:\n      message: {any: ['(unclosed']}\n")
    done = harness("rules", "--rules", str(rules))
    assert done.returncode == 2
    assert "triggers.0(RT-001).when.message.any: invalid regular expression '(unclosed'" in done.stderr


@pytest.mark.parametrize("args, expected", [
    (["run", "--cadence", "hourly"], "no cadence 'hourly' (valid: manual, nightly, pr, weekly)"),
    (["run", "--cadence", "pr", "--selector", "torch_full"], "--selector torch_full: not part of cadence 'pr'"),
    (["run", "--cadence", "manual", "--selector", "nope"], "no selector 'nope'"),
    (["run"], "the following arguments are required: --cadence"),
    (["history", "--selector", "x", "--history", "/nonexistent/h.sqlite"], "no history database"),
])
def test_user_mistakes_exit_2_without_traceback(args, expected):
    done = harness(*args)
    assert done.returncode == 2, done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr


def test_schema_command_prints_the_report_json_schema():
    done = harness("schema")
    schema = json.loads(done.stdout)
    assert {"schema", "schema_version", "run", "gate", "selectors", "alerts", "resolved"} <= set(schema["properties"])


# -- calibrate and baseline thresholds, changed files ----------------------------------------


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    project = SampleProject(tmp_path_factory.mktemp("calibrate"))
    project.write("tests/test_q.py", """
        import os, time
        def test_quality(record_property):
            time.sleep(0.2)
            record_property("amplitude_ssim", float(os.environ.get("SAMPLE_SSIM", "0.9")))
    """)
    project.catalog({"integration": {"args": ["tests/test_q.py"], "paths": ["src/*"],
                                     "runtime": {"measure": "tests", "mode": "baseline"},
                                     "figures": [{"name": "amplitude_ssim", "tolerance": 0.05}]}})
    done = project.harness("calibrate", "--selector", "integration", "--runs", "2", "--json")
    return project, done


def test_calibrate_stores_the_median_runtime_and_figures(calibrated):
    project, done = calibrated
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    runtime = data["baselines"]["runtime"]
    assert len(runtime["samples"]) == 2 and runtime["median"] >= 0.2
    assert data["baselines"]["figure:amplitude_ssim"]["median"] == 0.9
    assert [p.name for p in project.reports.iterdir() if not p.name.startswith(".")] == ["history.sqlite"]


def test_baseline_mode_uses_the_calibrated_figures(calibrated):
    project, done = calibrated
    median = json.loads(done.stdout)["baselines"]["runtime"]["median"]
    result = project.run(SAMPLE_SSIM="0.7")
    thresholds = result.selector("integration")["thresholds"]
    assert thresholds["mode"] == "baseline" and thresholds["baseline_source"] == "calibrated on this host"
    assert thresholds["critical_s"] == pytest.approx(2.5 * median, abs=1e-3)
    assert thresholds["suspicious_below_s"] == pytest.approx(0.55 * median, abs=1e-3)
    (alert,) = result.alerts("QUAL-001")
    assert alert["evidence"]["baseline"] == 0.9 and alert["evidence"]["baseline_source"] == "calibrated on this host"
    assert result.returncode == 1


def test_changed_files_decide_which_selectors_are_mandatory(calibrated, tmp_path):
    project, _ = calibrated
    changes = tmp_path / "changed.txt"
    changes.write_text("docs/readme.md\n")
    skipped = project.run("--changed-files", str(changes), "--json")
    assert skipped.returncode == 0, skipped.stderr
    summary = json.loads(skipped.stdout)
    assert summary["selectors"]["integration"]["state"] == "not_run"
    assert "none of the 1 changed files matches src/*" in summary["selectors"]["integration"]["reason"]
    changes.write_text("docs/readme.md\nsrc/model.py\n")
    ran = project.run("--changed-files", str(changes), "--json")
    assert json.loads(ran.stdout)["selectors"]["integration"]["state"] == "passed"


def test_base_ref_uses_the_files_git_says_changed(calibrated):
    project, _ = calibrated
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=project.root, check=True)
    (project.root / ".gitignore").write_text("reports/\n")
    subprocess.run([*git, "add", "-A"], cwd=project.root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "base"], cwd=project.root, check=True)
    (project.root / "docs").mkdir()
    (project.root / "docs" / "notes.md").write_text("words\n")
    subprocess.run([*git, "add", "-A"], cwd=project.root, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "docs only"], cwd=project.root, check=True)
    skipped = project.run("--base", "HEAD~1", "--json", "--no-history")
    assert skipped.returncode == 0, skipped.stderr
    summary = json.loads(skipped.stdout)
    assert summary["selectors"]["integration"]["state"] == "not_run"
    assert skipped.report["run"]["changed_files"] == ["docs/notes.md"]
    bad = project.run("--base", "no-such-ref")
    assert bad.returncode == 2 and "--base 'no-such-ref': names no commit" in bad.stderr


@pytest.mark.parametrize("base", ["--output=written-by-git.txt", "-", "HEAD~5", "HEAD:catalog.toml"])
def test_an_unusable_base_is_a_usage_error_never_an_empty_selection_that_passes(tmp_path, base):
    project = SampleProject(tmp_path)
    project.write("tests/test_ok.py", "def test_ok(): pass\n")
    project.catalog({"integration": {"args": ["tests/test_ok.py"], "paths": ["src/*"]}})
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "only commit"], cwd=tmp_path, check=True)
    result = project.run(f"--base={base}", "--no-history")
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"--base {base!r}" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "written-by-git.txt").exists()
    assert [p for p in project.reports.glob("*") if not p.name.startswith(".")] == []  # nothing ran
