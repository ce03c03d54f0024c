"""Every shell example of docs/guide.md, executed in order against a sample project, so the guide cannot drift.

The guide is written for "your project directory" with its own catalog ``harness.toml``; this test
builds such a directory (the sample project below: a tiny pytest project with its catalog, rules,
routes and ledger) and runs each ```bash block of the guide there, one bash process per block, with
the exported variables and the working directory carried from block to block as in a terminal.
The test substitutes nothing in the blocks; it only provides the environment a reader would have:

- ``harness`` on PATH (this interpreter's), ``TEAM_WEBHOOK_URL`` / ``TEAM_WEBHOOK_SECRET`` pointing
  at a loopback webhook receiver (``webhook_receiver.Receiver``) that checks every signature;
- ``PTYCHO_DATASETS_DIR`` holding a small file with the canonical dataset's name and keys, and
  ``PYTHONPATH`` with stand-ins for torch and lightning: ``harness doctor`` imports both for real in
  a subprocess, and a real ``import lightning`` takes 6-30 s on this machine. These are the only
  boundaries replaced.

A block runs under ``set -euo pipefail`` and must exit 0, unless its fence says otherwise:
```` ```bash exit=1 ```` (the gate failed, the failure reproduced, ...). ```toml and ```yaml blocks must
parse. ``python tests/harness/test_guide.py DIR`` builds the sample project in DIR to try the
guide by hand (then export the variables above yourself).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "guide.md"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # the Standard Webhooks test vector's secret
FENCE = re.compile(r"^```(?P<info>[^\n`]*)\n(?P<body>.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
SHELL_LANGUAGES = {"sh", "shell", "console", "zsh", "shell-session", "bash"}
BLOCK_TIMEOUT_S = 240

# -- the sample project ------------------------------------------------------------------------------

SAMPLE_FILES = {
    "harness.toml": '''\
        # The sample project's selector catalog (docs/guide.md). Paths are relative to this file.
        version = 1
        root = "."
        rules = "alerts/rules.yaml"

        [defaults]
        test_timeout_s = 60
        timeout_s = 120
        env = { CUDA_VISIBLE_DEVICES = "", TF_CPP_MIN_LOG_LEVEL = "2" }

        [selectors.integration]
        title = "Integration workflow: train -> save -> load -> infer"
        owner = "TEST-PYTORCH-001"
        priority = "high"
        args = ["tests/test_integration.py::test_run_pytorch_train_save_load_infer", "-vv"]
        paths = ["sample/*", "tests/test_integration.py"]

        [selectors.integration.runtime]
        critical_s = 90
        warning_s = 60

        [selectors.backend_selection]
        title = "Backend selection suite"
        owner = "INTEGRATE-PYTORCH-001"
        priority = "high"
        args = ["tests/test_backend_selection.py", "-vv"]
        paths = ["sample/backend.py", "tests/test_backend_selection.py"]

        [selectors.backend_selection.runtime]
        measure = "tests"
        warning_s = 5

        [selectors.config_sync]
        title = "CONFIG-001: the config is synced before the backend is chosen"
        owner = "INTEGRATE-PYTORCH-001"
        args = ["tests/test_backend_selection.py::test_routes_to_selected_backend_after_config_sync", "-vv"]

        [selectors.parity]
        title = "Parity between the two implementations"
        owner = "INTEGRATE-PYTORCH-001"
        args = ["tests/test_parity.py", "-vv"]

        [selectors.full_suite]
        title = "Every test of the project"
        owner = "TEST-PYTORCH-001"
        args = ["tests/", "-vv"]
        timeout_s = 600

        [cadences.pr]
        description = "Pre-merge gate"
        selectors = ["integration", "backend_selection"]
        budget_s = 120

        [cadences.nightly]
        description = "Nightly parity"
        selectors = ["parity"]

        [cadences.weekly]
        description = "Weekly deep validation"
        selectors = ["full_suite"]
        environment_capture = "full"

        [cadences.manual]
        description = "Escalation: any selector with --selector"
        selectors = ["integration"]
        any_selector = true

        # harness doctor: the brief's handoff checklist, declared as harness/catalog.toml does
        [[doctor.checks]]
        kind = "package"
        module = "torch"
        minimum = "2.2"
        title = "PyTorch >= 2.2 importable (POLICY-001)"

        [[doctor.checks]]
        kind = "package"
        module = "lightning"

        [[doctor.checks]]
        kind = "dataset"
        locate = "ptycho.simulate:canonical_path"
        generate = "ptycho.simulate:ensure_canonical_dataset"
        keys = [["diffraction", "diff3d"], ["probeGuess"], ["xcoords"], ["ycoords"]]

        [[doctor.checks]]
        kind = "selector_passes"
        selector = "integration"
        limit = "critical"

        [[doctor.checks]]
        kind = "selector_passes"
        selector = "backend_selection"
        limit = "warning"

        [[doctor.checks]]
        kind = "selector_runs"
        id = "config_001"
        selector = "config_sync"
        title = "CONFIG-001: the config is synced before the backend is chosen"
        fix = "call update_config before choosing the backend"

        [[doctor.checks]]
        kind = "guardrails"
        selector = "integration"
        triggers = ["RT-001", "RT-002", "RT-003", "FAIL-001", "FAIL-002", "POLICY-001", "CONFIG-001"]

        [[doctor.checks]]
        kind = "cpu_only"
        selectors = ["integration"]

        [retention]
        regression_evidence_days = 90
        delivery_log_days = 90
        escalation_evidence = "forever"
        ''',
    "alerts/routes.yaml": '''\
        # Starter routes: everything to the team's webhook (docs/guide.md shows a fuller file).
        version: 1
        sinks:
          team:
            kind: webhook
            url_env: TEAM_WEBHOOK_URL
            secret_env: TEAM_WEBHOOK_SECRET
        routes: []
        default:
          sinks: [team]
        ''',
    "sample/__init__.py": '"""A sample project the harness watches (docs/guide.md)."""\n',
    "sample/backend.py": '''\
        BACKENDS = ("tensorflow", "pytorch")
        config = {"gridsize": 1}


        def update_config(gridsize):
            config["gridsize"] = gridsize


        def select_backend(name, gridsize):
            if name not in BACKENDS:
                raise ValueError(f"backend: expected one of {BACKENDS}, got {name!r}")
            update_config(gridsize)  # CONFIG-001: sync first, then route
            return {"backend": name, "gridsize": config["gridsize"]}
        ''',
    "sample/stitching.py": '''\
        def normalise(canvas, weights):
            """Divide the accumulated canvas by the accumulated weights."""
            return [value / weight if weight else float("nan") for value, weight in zip(canvas, weights)]
        ''',
    "tests/test_integration.py": '''\
        from sample.backend import select_backend


        def test_run_pytorch_train_save_load_infer(tmp_path):
            model = tmp_path / "model.txt"
            model.write_text("weights")
            assert select_backend("pytorch", 1)["backend"] == "pytorch" and model.read_text() == "weights"
        ''',
    "tests/test_backend_selection.py": '''\
        import pytest

        from sample.backend import config, select_backend


        def test_backend_field_defaults_to_tensorflow():
            assert select_backend("tensorflow", 1)["backend"] == "tensorflow"


        def test_routes_to_selected_backend_after_config_sync():
            assert select_backend("pytorch", 2) == {"backend": "pytorch", "gridsize": 2}
            assert config["gridsize"] == 2


        def test_invalid_backend_raises_value_error():
            with pytest.raises(ValueError, match="expected one of"):
                select_backend("torch", 1)
        ''',
    "tests/test_parity.py": '''\
        def test_both_implementations_agree():
            assert sum([0.1] * 10) == pytest_approx(1.0)


        def pytest_approx(value):
            import pytest
            return pytest.approx(value)
        ''',
    "docs/fix_plan.md": "# Fix plan\n\nEscalations are appended here by `harness reproduce`.\n",
}


def make_sample_project(root: Path) -> Path:
    """Write the sample project under ``root`` (the repository's own rules.yaml is copied in)."""
    for relative, text in SAMPLE_FILES.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    shutil.copy(REPO / "alerts" / "rules.yaml", root / "alerts" / "rules.yaml")
    return root


def stand_ins(folder: Path) -> Path:
    """torch and lightning stand-ins (the harness imports them only in doctor's subprocess)."""
    for name, version in (("torch", "2.13.0+cpu"), ("lightning", "2.6.6")):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(f'__version__ = "{version}"  # stand-in for the guide test\n')
    return folder


def canonical_stand_in(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "canonical_run1084_seed1084.npz",
             **{key: np.zeros((2, 4, 4), np.float32) for key in ("diffraction", "probeGuess", "xcoords", "ycoords")})


# -- the guide's blocks ---------------------------------------------------------------------------------


def blocks(text: str) -> list[tuple[str, str, int]]:
    """(language and options, body, line) of every fenced block, in order."""
    found = []
    for match in FENCE.finditer(text):
        found.append((match.group("info").strip(), match.group("body"), text.count("\n", 0, match.start()) + 1))
    return found


def expected_exit(info: str) -> int:
    match = re.search(r"\bexit=(\d+)\b", info)
    return int(match.group(1)) if match else 0


def run_block(body: str, state: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """One block in its own bash, starting from the previous block's exports and directory."""
    script = (
        "set -euo pipefail\n"
        f'if [ -f "{state}/env.sh" ]; then source "{state}/env.sh"; fi\n'
        f'cd "$(cat "{state}/cwd")"\n'
        f"trap 'export -p > \"{state}/env.sh\"; pwd > \"{state}/cwd\"' EXIT\n"
        + body
    )
    return subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=BLOCK_TIMEOUT_S, check=False)


def verify_signature(request) -> bool:
    """Standard Webhooks: v1,<base64 HMAC-SHA256 of "id.timestamp.body"> keyed with the secret."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{request.headers['webhook-id']}.{request.headers['webhook-timestamp']}.".encode() + request.body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return f"v1,{expected}" in request.headers["webhook-signature"].split()


@pytest.fixture(scope="module")
def guide_run(tmp_path_factory):
    """Run the whole guide once; every test below reads what it left."""
    from webhook_receiver import Receiver

    root = make_sample_project(tmp_path_factory.mktemp("my-project"))
    support = tmp_path_factory.mktemp("support")
    canonical_stand_in(support / "datasets")
    # evidence from 200 days ago that `harness prune` must remove (no history row: a --no-history run)
    aged = root / "reports" / f"{datetime.now(UTC) - timedelta(days=200):%Y%m%dT%H%M%SZ}-nightly"
    (aged / "selectors").mkdir(parents=True)
    (aged / "summary.md").write_text("# an old nightly\n")
    state = support / "state"
    state.mkdir()
    (state / "cwd").write_text(str(root))
    receiver = Receiver.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "GITHUB_", "PYTEST_", "TEAM_"))}
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=str(stand_ins(support / "stand_ins")), PTYCHO_DATASETS_DIR=str(support / "datasets"),
        TEAM_WEBHOOK_URL=receiver.url("/team"), TEAM_WEBHOOK_SECRET=SECRET, HARNESS_HOST="guide-host",
        TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", COLUMNS="160", PYTHONDONTWRITEBYTECODE="1",
    )
    outcomes = []
    try:
        for info, body, line in blocks(GUIDE.read_text(encoding="utf-8")):
            if info.split()[:1] != ["bash"]:
                continue
            done = run_block(body, state, env)
            outcomes.append({"line": line, "body": body, "expected": expected_exit(info), "code": done.returncode,
                             "stdout": done.stdout, "stderr": done.stderr})
            if done.returncode != expected_exit(info):
                break  # later blocks build on this one
    finally:
        receiver.stop()
    return {"root": root, "aged": aged, "outcomes": outcomes, "requests": list(receiver.requests)}


@pytest.mark.slow  # the whole guide runs once, about 30-60 s on 2 busy cores
def test_every_shell_example_runs_as_written(guide_run):
    text = GUIDE.read_text(encoding="utf-8")
    bash_blocks = [b for b in blocks(text) if b[0].split()[:1] == ["bash"]]
    assert len(bash_blocks) >= 20, "the guide should show its commands as ```bash blocks"
    for outcome in guide_run["outcomes"]:
        assert outcome["code"] == outcome["expected"], (
            f"docs/guide.md line {outcome['line']}: exit {outcome['code']}, expected {outcome['expected']}\n"
            f"--- block ---\n{outcome['body']}--- stdout ---\n{outcome['stdout'][-3000:]}\n"
            f"--- stderr ---\n{outcome['stderr'][-3000:]}"
        )
    assert len(guide_run["outcomes"]) == len(bash_blocks)


def test_no_shell_example_escapes_the_test():
    """Shell in any other fence (sh, console, ...) would not be run; config fences must parse."""
    for info, body, line in blocks(GUIDE.read_text(encoding="utf-8")):
        language = info.split()[0] if info else ""
        assert language not in SHELL_LANGUAGES - {"bash"}, f"docs/guide.md line {line}: use ```bash for shell"
        if language == "toml":
            tomllib.loads(body)
        elif language == "yaml":
            yaml.safe_load(body)
        else:
            assert language in {"bash", "text", "json", "markdown", "python", ""}, f"line {line}: ```{language}"


def github_anchor(heading: str) -> str:
    """GitHub's id for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_into_the_guide_lands_on_a_heading():
    text = GUIDE.read_text(encoding="utf-8")
    anchors = {github_anchor(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}
    sources = [*(REPO / "harness").rglob("*.py"), *(REPO / "docs").glob("*.md"), REPO / "README.md"]
    links = {(path.name, anchor) for path in sources
             for anchor in re.findall(r"guide\.md#([\w-]+)", path.read_text(encoding="utf-8"))}
    assert links, "nothing links into the guide"
    assert [link for link in links if link[1] not in anchors] == []


@pytest.mark.slow  # the whole guide runs once, about 30-60 s on 2 busy cores
def test_the_examples_did_what_the_guide_says(guide_run):
    root = guide_run["root"]
    history = sqlite3.connect(root / "reports" / "history.sqlite")
    cadences = {row[0] for row in history.execute("SELECT cadence FROM runs")}
    assert {"pr", "nightly", "weekly", "manual"} <= cadences
    # adding a selector and writing a rule: the new selector ran and the new trigger fired on it
    fired = {row[0] for row in history.execute("SELECT trigger_id FROM alerts WHERE selector = 'stitching'")}
    assert "STITCH-001" in fired
    # calibrating a baseline
    assert history.execute("SELECT runs FROM baselines WHERE selector = 'integration' AND metric = 'runtime'").fetchone()
    # silencing, then ending the silence early
    silences = history.execute("SELECT trigger_id, selector, expired_at FROM alert_silences").fetchall()
    assert [(t, s) for t, s, _ in silences] == [("STITCH-001", "stitching")] and silences[0][2] is not None
    # reproducing an escalation: the directory and the ledger entry
    escalations = list((root / "plans" / "active").glob("*/reports/*/escalation/document.md"))
    assert escalations and "STITCH-001" in escalations[0].read_text()
    assert "STITCH-001" in (root / "docs" / "fix_plan.md").read_text()
    # the dashboard
    assert (root / "reports" / "index.html").is_file()
    # retention: the 200-day-old report directory went, the recent ones and the escalation stayed
    assert not guide_run["aged"].exists()
    assert len([p for p in (root / "reports").iterdir() if re.match(r"^\d{8}T\d{6}Z-", p.name)]) >= 5


@pytest.mark.slow  # the whole guide runs once, about 30-60 s on 2 busy cores
def test_the_webhook_got_signed_messages_and_no_silenced_one(guide_run):
    requests = guide_run["requests"]
    assert requests, "no notification reached the webhook"
    assert all(r.path == "/team" and verify_signature(r) for r in requests)
    bodies = [json.loads(r.body) for r in requests]
    names = [alert["labels"]["alertname"] for body in bodies for alert in body["alerts"] if body["status"] == "firing"]
    assert "HarnessTestAlert" in names                  # harness alerts test
    assert names.count("STITCH-001") == 1               # fired once; silenced afterwards
    assert SECRET not in json.dumps(bodies)


@pytest.mark.slow  # the whole guide runs once, about 30-60 s on 2 busy cores
def test_another_project_was_monitored_in_its_own_environment(guide_run):
    """"Monitoring another project": its pytest ran in its own venv, which has no harness in it."""
    calc = guide_run["root"].parent / "calc"
    history = sqlite3.connect(calc / "reports" / "history.sqlite")
    assert history.execute("SELECT cadence, gate_passed FROM runs").fetchall() == [("pr", 1)]
    assert history.execute("SELECT state, passed FROM selector_results").fetchall() == [("passed", 2)]
    run_dir = next(p for p in (calc / "reports").iterdir() if re.match(r"^\d{8}T\d{6}Z-pr$", p.name))
    recorded = json.loads((run_dir / "selectors" / "unit" / "pytest.json").read_text())["environment"]
    assert Path(recorded["executable"]).parent == calc / ".env" / "bin"
    done = subprocess.run([calc / ".env" / "bin" / "python", "-c", "import harness"], capture_output=True, text=True,
                          cwd=calc, check=False, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert done.returncode != 0 and "No module named 'harness'" in done.stderr


if __name__ == "__main__":  # build the sample project to try the guide by hand
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/harness/test_guide.py DIR")
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    make_sample_project(target)
    print(f"sample project written to {target}; export TEAM_WEBHOOK_URL / TEAM_WEBHOOK_SECRET to receive alerts")
