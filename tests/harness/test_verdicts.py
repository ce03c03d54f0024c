"""A verdict means what it says: work that did not run never passes a gate, a fixture failure goes
to the harness owner, a selector runs entirely inside its own environment, runtime rules judge
only runs that executed, and nothing of the harness's secrets reaches the code under test.

Each test runs the harness for real on a small sample project (tests/harness/sample_projects.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sample_projects import SampleProject

NEEDS_GPU = """
    import pytest
    @pytest.mark.skipif(True, reason="CUDA GPU required")
    def test_run_pytorch_train_save_load_infer(): pass
"""
BACKEND = """
    def test_default_is_tensorflow(): assert True
"""


def _gpu_project(root: Path, **integration: object) -> SampleProject:
    project = SampleProject(root)
    project.write("tests/test_integration.py", NEEDS_GPU)
    project.write("tests/test_backend.py", BACKEND)
    project.catalog({
        "integration": {"args": ["tests/test_integration.py"], **integration},
        "backend_selection": {"args": ["tests/test_backend.py"]},
    })
    return project


def test_an_all_skipped_mandated_selector_fails_the_gate_with_its_skip_reason(tmp_path):
    project = _gpu_project(tmp_path, runtime={"suspicious_below_s": 20, "warning_s": 60, "critical_s": 90})
    result = project.run("--no-history")
    assert result.returncode == 1, result.stderr
    integration = result.selector("integration")
    assert integration["state"] == "did_not_run"
    assert integration["reason"] == "1 skipped — CUDA GPU required"
    assert integration["skips"] == [{"reason": "CUDA GPU required", "count": 1,
                                     "example": "tests/test_integration.py::test_run_pytorch_train_save_load_infer"}]
    assert integration["skip_expected"] is False
    (alert,) = result.alerts(selector="integration")  # HARNESS-002 only: no RT-003 on a run that never executed
    assert (alert["trigger"], alert["severity"], alert["owner"]) == ("HARNESS-002", "high", "TEST-PYTORCH-001")
    assert alert["evidence"]["skips"] == {"CUDA GPU required": 1}
    assert result.report["gate"]["passed"] is False
    summary = (result.run_dirs[-1] / "summary.md").read_text()
    assert "did not run — 1 skipped — CUDA GPU required" in summary
    assert "| `integration` (did not run) | 1 | CUDA GPU required |" in summary
    assert "CUDA GPU required" in (result.run_dirs[-1] / "summary.html").read_text()
    # The pull-request comment and the check run say it too.
    from harness.github_publish import GitHubTarget, check_text, comment_body
    from harness.report_model import RunReport

    report = RunReport.model_validate_json((result.run_dirs[-1] / "report.json").read_text())
    comment = comment_body(report, GitHubTarget("http://127.0.0.1:9", "o/r", "a" * 40, pr_number=1), None)
    assert "- `integration` — did not run: 1 × CUDA GPU required" in comment
    assert "did_not_run — 1 skipped — CUDA GPU required" in check_text(report)


@pytest.mark.parametrize("fields", [
    {"allow_skip": True},
    {"allow_skip": ["pr"]},
    {"expected_skip_reasons": ["CUDA|GPU"]},
], ids=["allow_skip", "allow_skip_in_cadence", "expected_reason"])
def test_an_expected_skip_does_not_fail_the_gate_but_is_still_shown(tmp_path, fields):
    project = _gpu_project(tmp_path, **fields)
    result = project.run("--no-history")
    assert result.returncode == 0, result.stdout + result.stderr
    integration = result.selector("integration")
    assert integration["state"] == "did_not_run" and integration["skip_expected"] is True
    assert result.alerts(selector="integration") == []
    summary = (result.run_dirs[-1] / "summary.md").read_text()
    assert "did not run (expected here)" in summary and "CUDA GPU required" in summary


def test_allow_skip_in_another_cadence_or_a_non_matching_reason_still_fails(tmp_path):
    project = _gpu_project(tmp_path)
    project.catalog(
        {"integration": {"args": ["tests/test_integration.py"], "allow_skip": ["nightly"],
                         "expected_skip_reasons": ["dataset missing"]}},
        {"pr": {"selectors": ["integration"]}, "nightly": {"selectors": ["integration"]}},
    )
    assert project.run("--no-history").alerts("HARNESS-002")
    assert project.run("--no-history", cadence="nightly").returncode == 0


def test_a_selector_that_collected_nothing_is_never_an_expected_skip(tmp_path):
    project = _gpu_project(tmp_path)
    project.catalog({"integration": {"args": ["tests/test_integration.py", "-k", "no_such_test"], "allow_skip": True}})
    result = project.run("--no-history")
    assert result.selector("integration")["state"] == "did_not_run"
    assert [a["trigger"] for a in result.alerts()] == ["HARNESS-002"]


def test_skip_reasons_of_a_passing_selector_are_grouped_and_counted(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_mixed.py", """
        import pytest
        def test_runs(): pass
        @pytest.mark.parametrize("n", range(3))
        def test_gpu(n): pytest.skip("CUDA GPU required")
        @pytest.mark.skip(reason="slow | <b>needs</b> a cluster")
        def test_slow(): pass
    """)
    project.catalog({"mixed": {"args": ["tests/test_mixed.py"]}})
    result = project.run("--no-history")
    assert result.returncode == 0
    mixed = result.selector("mixed")
    assert mixed["state"] == "passed"
    assert mixed["reason"] == "1 passed, 4 skipped — 3× CUDA GPU required; 1× slow | <b>needs</b> a cluster"
    assert [(g["reason"], g["count"]) for g in mixed["skips"]] == [
        ("CUDA GPU required", 3), ("slow | <b>needs</b> a cluster", 1)]
    summary = (result.run_dirs[-1] / "summary.md").read_text()
    assert "| `mixed` | 3 | CUDA GPU required |" in summary
    assert "| `mixed` | 1 | slow \\| &lt;b&gt;needs&lt;/b&gt; a cluster |" in summary  # untrusted text escaped
    html = (result.run_dirs[-1] / "summary.html").read_text()
    assert "slow | &lt;b&gt;needs&lt;/b&gt; a cluster" in html and "<b>needs</b>" not in html


def test_a_skip_never_resolves_a_failing_alert_a_passing_run_does(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_integration.py", """
        import os, pytest
        def test_run_pytorch_train_save_load_infer():
            if os.environ.get("SAMPLE_MODE") == "skip":
                pytest.skip("CUDA GPU required")
            assert os.environ.get("SAMPLE_MODE") != "fail", "workflow broke"
    """)
    project.catalog({"integration": {"args": ["tests/test_integration.py"]}})
    failing = project.run(SAMPLE_MODE="fail")
    assert {a["trigger"] for a in failing.alerts()} == {"FAIL-001"}
    skipped = project.run(SAMPLE_MODE="skip")
    assert skipped.returncode == 1
    assert skipped.report["resolved"] == []  # FAIL-001 is still open: the workflow never ran
    assert (skipped.run_dirs[-1] / "summary.md").read_text().count("Resolved since the last run") == 0
    passed = project.run(SAMPLE_MODE="pass")
    assert passed.returncode == 0
    assert {r["trigger"] for r in passed.report["resolved"]} == {"FAIL-001", "HARNESS-002"}


FIXTURE_ERRORS = """
    import pytest

    @pytest.fixture
    def dataset(tmp_path):
        return open(tmp_path / "missing" / "fly001.npz", "rb")

    @pytest.fixture
    def torch_model():
        import torch_is_not_here  # noqa: F401

    def test_run_pytorch_train_save_load_infer(dataset):
        pass

    def test_call_failure():
        raise RuntimeError("inference produced NaN")
"""


def test_a_fixture_error_goes_to_the_harness_owner_not_fail_001(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_integration.py", FIXTURE_ERRORS)
    project.write("tests/test_backend.py", """
        import pytest
        @pytest.fixture
        def registry():
            yield {}
            raise KeyError("backend registry left dirty")
        def test_routing(registry): pass
    """)
    project.write("tests/torch/test_needs_torch.py", """
        import sys
        import pytest
        @pytest.fixture
        def model():
            sys.modules["torch"] = None  # torch "not installed"
            import torch
        def test_model(model): pass
    """)
    project.catalog({
        "integration": {"args": ["tests/test_integration.py"]},
        "backend_selection": {"args": ["tests/test_backend.py"]},
        "torch_fixture": {"args": ["tests/torch/test_needs_torch.py"]},
    })
    result = project.run("--no-history")
    assert result.returncode == 1
    by_node = result.triggers_by_node()
    # The fixture error: HARNESS-003 for the harness owner, naming the fixture and the message.
    setup_node = "tests/test_integration.py::test_run_pytorch_train_save_load_infer"
    assert by_node[setup_node] == {"HARNESS-003"}
    (alert,) = [a for a in result.alerts("HARNESS-003") if a["nodeid"] == setup_node]
    assert alert["owner"] == "TEST-PYTORCH-001" and alert["severity"] == "high"
    assert alert["evidence"]["fixture"] == "dataset" and alert["evidence"]["stage"] == "setup"
    assert "setup of fixture 'dataset': FileNotFoundError" in alert["summary"] and "fly001.npz" in alert["summary"]
    # A failure in the call is still FAIL-001.
    assert by_node["tests/test_integration.py::test_call_failure"] == {"FAIL-001"}
    assert result.selector("integration")["state"] == "failed"
    # A teardown error in the backend suite: not FAIL-002.
    backend = result.selector("backend_selection")
    assert backend["state"] == "setup_error"
    assert "teardown of fixture 'registry'" in backend["reason"]
    assert [a["trigger"] for a in result.alerts(selector="backend_selection")] == ["HARNESS-003"]
    # The message rules still win: a torch ImportError in a fixture under tests/torch/ is POLICY-001.
    assert by_node["tests/torch/test_needs_torch.py::test_model"] == {"POLICY-001"}


def test_a_setup_error_alone_is_its_own_state_and_no_runtime_rule_judges_it(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_integration.py", """
        import pytest
        @pytest.fixture
        def dataset():
            raise FileNotFoundError("datasets/fly001.npz")
        def test_run_pytorch_train_save_load_infer(dataset): pass
    """)
    project.catalog({"integration": {"args": ["tests/test_integration.py"],
                                     "runtime": {"suspicious_below_s": 20, "warning_s": 60, "critical_s": 90}}})
    result = project.run("--no-history")
    integration = result.selector("integration")
    assert integration["state"] == "setup_error"
    assert integration["reason"].startswith("1 error(s) in setup of fixture 'dataset': FileNotFoundError")
    assert [a["trigger"] for a in result.alerts()] == ["HARNESS-003"]
    assert "errored in setup" in (result.run_dirs[-1] / "summary.md").read_text()


def test_runtime_rules_judge_runs_that_executed_and_ignore_runs_that_never_started(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_integration.py", "def test_run_pytorch_train_save_load_infer(): pass\n")
    fast = {"suspicious_below_s": 20, "warning_s": 60, "critical_s": 90}
    project.catalog({"integration": {"args": ["tests/test_integration.py"], "runtime": fast}})
    executed = project.run("--no-history")
    assert [a["trigger"] for a in executed.alerts()] == ["RT-003"]  # a real 1 s run is suspicious
    # The same selector in an interpreter that cannot start: no report, no RT-003 noise.
    project.catalog({"integration": {"args": ["tests/test_integration.py"], "runtime": fast}},
                    python="no-such-env/bin/python")
    never = project.run("--no-history")
    assert never.selector("integration")["state"] == "internal_error"
    assert [a["trigger"] for a in never.alerts()] == ["HARNESS-001"]


@pytest.fixture(scope="module")
def foreign_venv(tmp_path_factory) -> Path:
    """A virtual environment other than the harness's, with pytest reachable through a .pth file
    (the harness's site-packages), so it runs the selector but is a prefix of its own."""
    import site

    root = tmp_path_factory.mktemp("venv") / "env under test"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site_packages = next((root / "lib").glob("python3*/site-packages"))
    (site_packages / "harness_site.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return root


def test_a_selector_runs_entirely_inside_the_catalogs_environment(tmp_path, foreign_venv):
    project = SampleProject(tmp_path)
    project.write("tests/test_prefix.py", """
        import json, os, shutil, subprocess, sys
        def test_python_on_path_is_the_environment_under_test(record_property):
            prefix = subprocess.run(["python", "-c", "import sys; print(sys.prefix)"],
                                    capture_output=True, text=True, check=True).stdout.strip()
            record_property("child_prefix", prefix)
            record_property("own_prefix", sys.prefix)
            record_property("virtual_env", os.environ.get("VIRTUAL_ENV"))
            record_property("which_python", shutil.which("python"))
    """)
    project.catalog({"prefix": {"args": ["tests/test_prefix.py"]}}, python=str(foreign_venv / "bin" / "python"))
    result = project.run("--no-history")
    assert result.returncode == 0, result.stdout + result.stderr
    selector = result.selector("prefix")
    properties = selector["tests"][0]["user_properties"]
    assert properties["child_prefix"] == str(foreign_venv)
    assert properties["own_prefix"] == str(foreign_venv)
    assert properties["virtual_env"] == str(foreign_venv)
    assert properties["which_python"] == str(foreign_venv / "bin" / "python")
    # The report says which interpreter and framework versions the selector saw.
    environment = selector["environment"]
    assert environment["executable"] == str(foreign_venv / "bin" / "python")
    assert set(environment["packages"]) >= {"torch", "tensorflow"}
    summary = (result.run_dirs[-1] / "summary.md").read_text()
    assert "Environments the tests saw" in summary and str(foreign_venv / "bin" / "python") in summary


SECRETS = {
    "HARNESS_WEBHOOK_TEST_PYTORCH_001_URL": "https://hooks.example/secret-url-7f3a9",
    "HARNESS_WEBHOOK_TEST_PYTORCH_001_SECRET": "whsec_c2VjcmV0LXNpZ25pbmcta2V5LTQ0",
    "HARNESS_SLACK_WEBHOOK_URL": "https://hooks.slack.example/T000/B000/slack-secret-91c",
    "GITHUB_TOKEN": "ghp_notarealtoken0000000000000000000042",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-key-value-5b1e",
}


def test_secrets_never_reach_the_code_under_test(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_env.py", """
        import os, sys
        def test_prints_its_environment():
            for name, value in sorted(os.environ.items()):
                print(f"{name}={value}")
                print(f"{name}={value}", file=sys.stderr)
            assert os.environ["SAMPLE_VISIBLE"] == "yes"       # the catalog's pass_env
            assert os.environ["PTYCHO_DATASETS_DIR"] == "/data"  # the documented pass-through
            assert os.environ["FROM_CATALOG"] == "1"            # the catalog's env
            assert "HOME" in os.environ and "PATH" in os.environ
            raise AssertionError("\\n".join(f"{k}={v}" for k, v in os.environ.items()))
    """)
    # Even a pass-through pattern that matches a routes variable does not let it through.
    project.catalog({"env_dump": {"args": ["tests/test_env.py"], "env": {"FROM_CATALOG": "1"}}},
                    pass_env=["SAMPLE_*", "HARNESS_WEBHOOK_*", "HARNESS_SLACK_*"])
    result = project.run(SAMPLE_VISIBLE="yes", PTYCHO_DATASETS_DIR="/data", **SECRETS)
    dump = result.selector("env_dump")
    assert dump["state"] == "failed" and "SAMPLE_VISIBLE=yes" in dump["tests"][0]["longrepr"]
    written = [p for p in project.reports.rglob("*") if p.is_file()]
    assert any(p.name == "stdout.log" for p in written) and any(p.name == "history.sqlite" for p in written)
    for path in written:
        data = path.read_bytes()
        for name, value in SECRETS.items():
            assert value.encode() not in data, f"{name}'s value is in {path}"
    stdout = next(p for p in written if p.name == "stdout.log").read_text()
    assert "SAMPLE_VISIBLE=yes" in stdout and "HARNESS_SELECTOR=env_dump" in stdout
    assert "HARNESS_WEBHOOK_TEST_PYTORCH_001_URL" not in stdout and "GITHUB_TOKEN" not in stdout


def test_a_secret_a_test_finds_elsewhere_is_redacted_from_logs_and_report(tmp_path):
    """The child never gets the variable, but a test may read the value from somewhere else (here a
    file): what the selector wrote is checked for the harness's secret values before publishing."""
    project = SampleProject(tmp_path)
    url = SECRETS["HARNESS_WEBHOOK_TEST_PYTORCH_001_URL"]
    (tmp_path / "leak.txt").write_text(url)
    project.write("tests/test_leak.py", f"""
        import pathlib, sys
        def test_reads_a_file():
            value = pathlib.Path({str(tmp_path / "leak.txt")!r}).read_text()
            print("found", value)
            print("found", value, file=sys.stderr)
            assert value == "", value
    """)
    project.catalog({"leak": {"args": ["tests/test_leak.py"]}})
    result = project.run("--no-history", HARNESS_WEBHOOK_TEST_PYTORCH_001_URL=url)
    run_dir = result.run_dirs[-1]
    for path in (p for p in run_dir.rglob("*") if p.is_file()):
        assert url.encode() not in path.read_bytes(), path
    stdout = (run_dir / "selectors" / "leak" / "stdout.log").read_text()
    assert "found [redacted: HARNESS_WEBHOOK_TEST_PYTORCH_001_URL]" in stdout
    assert "secret value of HARNESS_WEBHOOK_TEST_PYTORCH_001_URL found in selectors/leak/stdout.log; redacted" in result.report["notes"]
    assert "[redacted: HARNESS_WEBHOOK_TEST_PYTORCH_001_URL]" in result.selector("leak")["tests"][0]["message"]
    assert "redacted" in result.stderr


def test_a_crafted_report_with_an_impossible_outcome_or_duration_is_never_passed(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_ok.py", "def test_ok(): pass\n")
    project.catalog({"integration": {"args": ["tests/test_ok.py"]}})
    base = {"exitcode": 0, "duration": 1.0, "summary": {"passed": 1, "total": 1, "collected": 1}}
    test = {"nodeid": "tests/test_ok.py::test_ok", "outcome": "passed",
            "setup": {"duration": 0.01, "outcome": "passed"}, "call": {"duration": 0.5, "outcome": "passed"},
            "teardown": {"duration": 0.01, "outcome": "passed"}}
    crafted = {
        "outcome": {**base, "tests": [{**test, "outcome": "totally-fine"}]},
        "nan": {**base, "tests": [{**test, "call": {"duration": float("nan"), "outcome": "passed"}}]},
        "negative": {**base, "tests": [{**test, "call": {"duration": -3.0, "outcome": "passed"}}]},
        "missing": {**base, "tests": [{**test, "call": {"outcome": "passed"}}]},
        "session": {**base, "duration": float("inf"), "tests": [test]},
    }
    for name, report in crafted.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(report))  # json writes NaN/Infinity as pytest-json-report would
        done = project.harness("evaluate", str(path), "--selector", "integration", "--json")
        assert done.returncode == 1, (name, done.stdout, done.stderr)
        verdict = json.loads(done.stdout)
        assert verdict["state"] == "report_invalid", (name, verdict)
        assert [a["trigger"] for a in verdict["alerts"]] == ["HARNESS-001"], name
    genuine = tmp_path / "genuine.json"
    genuine.write_text(json.dumps({**base, "tests": [test]}))
    done = project.harness("evaluate", str(genuine), "--selector", "integration", "--json")
    assert json.loads(done.stdout)["state"] == "passed"


def test_catalog_errors_for_the_new_fields_name_the_field(tmp_path):
    project = SampleProject(tmp_path)
    project.write("tests/test_ok.py", "def test_ok(): pass\n")
    for fields, top, expected in (
        ({"allow_skip": ["weekly"]}, {}, "allow_skip names unknown cadence 'weekly'"),
        ({"expected_skip_reasons": ["("]}, {}, "expected_skip_reasons: invalid regular expression"),
        ({}, {"pass_env": ["BAD NAME"]}, "pass_env: 'BAD NAME' is not a variable name"),
    ):
        project.catalog({"one": {"args": ["tests/test_ok.py"], **fields}}, **top)
        done = project.harness("catalog")
        assert done.returncode == 2, done.stdout
        assert expected in done.stderr and "catalog.toml" in done.stderr
        assert "Traceback" not in done.stderr


def test_selector_environment_unit(monkeypatch, tmp_path):
    """The filtering itself, without a run: allow-list, route variables withheld, PATH order."""
    from harness.selector_env import build_environment

    routes = tmp_path / "routes.yaml"
    routes.write_text("sinks:\n  a: {kind: webhook, url_env: TEAM_HOOK, secret_env: TEAM_SIGNING}\n")
    environ = {"PATH": "/usr/bin:/bin", "HOME": "/home/u", "TEAM_HOOK": "x", "TEAM_SIGNING": "y",
               "HARNESS_ROUTES": str(routes), "OMP_NUM_THREADS": "2", "RANDOM_TOKEN": "z", "LC_ALL": "C"}
    env = build_environment({"CUDA_VISIBLE_DEVICES": ""}, "sel", "run-1", python="/usr/bin/python3",
                            pass_env=("TEAM_*",), environ=environ)
    assert env["OMP_NUM_THREADS"] == "2" and env["LC_ALL"] == "C" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert "TEAM_HOOK" not in env and "TEAM_SIGNING" not in env and "RANDOM_TOKEN" not in env
    assert "HARNESS_ROUTES" not in env
    assert env["PATH"] == "/usr/bin:/bin"  # a system interpreter the catalog did not name: PATH untouched
    assert (env["HARNESS_SELECTOR"], env["HARNESS_RUN_ID"]) == ("sel", "run-1")
    named = build_environment({}, "sel", "r", python="/opt/tools/bin/python", explicit_python=True, environ=environ)
    assert named["PATH"] == "/opt/tools/bin:/usr/bin:/bin" and "VIRTUAL_ENV" not in named


@pytest.mark.parametrize("longrepr, name", [
    ("@pytest.fixture\n    def dataset():\n>       return open('x')\nE       FileNotFoundError: x", "dataset"),
    ("    @pytest.fixture\n>   def dataset(): raise FileNotFoundError('x')\nE   FileNotFoundError: x", "dataset"),
    ("file t.py, line 3\n  def test_a(nosuch): pass\nE       fixture 'nosuch' not found", "nosuch"),
    ("tests/conftest.py:12: in registry\n    raise KeyError('x')\nE   KeyError: 'x'", "registry"),
    ("E   RuntimeError: no frames", None),
])
def test_fixture_names_come_from_the_longrepr(longrepr, name):
    from harness.pytest_report import fixture_name, skip_reason

    assert fixture_name(longrepr) == name
    assert skip_reason("('/p/t.py', 15, 'Skipped: CUDA GPU required')") == "CUDA GPU required"
    assert skip_reason("('/p/t.py', 15, \"Skipped: it's slow\")") == "it's slow"


TEST_001_ONLY = """
    version: 1
    triggers:
      - id: TEST-001
        title: A test failed
        severity: high
        owner: selector
        sla: "<24 hours"
        when:
          outcome: [failed, error]
"""


def test_a_rules_file_without_a_did_not_run_trigger_still_fails_the_gate_on_a_selector_that_did_not_run(tmp_path):
    project = _gpu_project(tmp_path)
    rules = project.write("rules.yaml", TEST_001_ONLY)
    result = project.run("--no-history", "--rules", str(rules))
    assert result.returncode == 1  # the built-in HARNESS-002: mandated work that did not run never passes
    (alert,) = result.alerts(selector="integration")
    assert (alert["trigger"], alert["severity"], alert["owner"]) == ("HARNESS-002", "high", "TEST-PYTORCH-001")
    assert alert["evidence"]["skips"] == {"CUDA GPU required": 1}
    assert result.alerts(selector="backend_selection") == []  # it ran: the built-in trigger stays silent
    # An expected skip (the catalog's word) passes, as with the full rules file.
    expected = _gpu_project(tmp_path / "expected", allow_skip=True)
    rules = expected.write("rules.yaml", TEST_001_ONLY)
    assert expected.run("--no-history", "--rules", str(rules)).returncode == 0


def test_a_rules_file_with_its_own_did_not_run_trigger_decides_and_the_report_notes_a_quiet_one(tmp_path):
    project = _gpu_project(tmp_path)
    rules = project.write("rules.yaml", TEST_001_ONLY + """
      - id: SKIP-001
        title: Did not run (informational here)
        severity: info
        owner: selector
        sla: "<1 week"
        scope: {selectors: [backend_selection]}
        when:
          state: [did_not_run]
    """)
    result = project.run("--no-history", "--rules", str(rules))
    assert result.returncode == 0 and result.alerts() == []  # the file's own trigger replaces the built-in one
    assert any(note.startswith("integration did not run (1 skipped — CUDA GPU required) and no trigger in rules.yaml")
               for note in result.report["notes"])  # ...but the report does not keep quiet about it


def test_history_says_did_not_run_in_words(tmp_path):
    project = _gpu_project(tmp_path)
    assert project.run().returncode == 1
    shown = project.harness("history", "--selector", "integration")
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if " pr " in line)
    assert "did not run" in row and "did_not_run" not in row and "HARNESS-002" in row
