"""``harness reproduce`` end to end on a small failing pytest project, and the fix-plan ledger.

The fixture project's integration test writes a Lightning-style checkpoint (a zip around a
pickle, as torch does) and records it; in "typeerror" mode the checkpoint lacks
``hyper_parameters`` and loading it fails with the brief's FAIL-003 TypeError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sample_projects import SampleProject

from harness.escalation import ReproduceRequest, reproduce
from harness.fix_plan_ledger import append_entry, insert_entry

REPO = Path(__file__).resolve().parents[2]

FIXTURE_TEST = '''
import io, os, pickle, zipfile

def _checkpoint(path, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(content, protocol=2))
        archive.writestr("archive/version", "3\\n")
    path.write_bytes(buffer.getvalue())

def test_run_pytorch_train_save_load_infer(tmp_path, record_property):
    mode = os.environ.get("FIXTURE_MODE", "good")
    print("CUDA_VISIBLE_DEVICES=%r" % os.environ.get("CUDA_VISIBLE_DEVICES"))
    content = {"epoch": 3, "state_dict": {"w": [0.0] * 200}, "global_step": 30}
    if mode == "good":
        content["hyper_parameters"] = {"model_config": {"N": 64}, "training_config": {}, "data_config": {},
                                       "inference_config": {}}
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    _checkpoint(ckpt, content)
    record_property("checkpoint_path", str(ckpt))
    if mode == "typeerror":
        raise TypeError("PtychoPINN_Lightning.__init__() missing 4 required positional arguments: "
                        "'model_config', ... while loading checkpoint last.ckpt")

def test_backend_default():
    assert True
'''

LEDGER = """# Fix plan — escalation ledger

Hand-written preface that must survive.

## [INTEGRATE-PYTORCH-001] PyTorch backend implementation

Owner of: the backend.

### Attempts history

- 2025-10-01 an older attempt (keep me)

### Notes

A later subsection that must stay after the attempts.

## [TEST-PYTORCH-001] Integration test harness

### Attempts history
"""


@pytest.fixture
def project(tmp_path) -> SampleProject:
    sample = SampleProject(tmp_path)
    sample.write("tests/test_integration.py", FIXTURE_TEST)
    sample.catalog({
        "integration": {
            "args": ["tests/test_integration.py"],
            "env": {"CUDA_VISIBLE_DEVICES": "0", "TF_CPP_MIN_LOG_LEVEL": "2"},  # reproduce forces ""
            "artifacts": {"checkpoint_property": "checkpoint_path"},
        },
        "backend_selection": {"args": ["tests/test_integration.py::test_backend_default"],
                              "owner": "INTEGRATE-PYTORCH-001"},
    }, cadences={"pr": {"selectors": ["integration", "backend_selection"]},
                 "manual": {"selectors": ["integration"], "any_selector": True}})
    sample.write("docs/fix_plan.md", LEDGER)
    return sample


def _reproduce(project: SampleProject, *args: str, **env: str):
    argv = [sys.executable, "-m", "harness", "reproduce", "--catalog", str(project.root / "catalog.toml"),
            "--reports-dir", str(project.reports), *args]
    return subprocess.run(argv, cwd=project.root, env=project.env(HARNESS_NOTIFY="off", **env),
                          capture_output=True, text=True, timeout=120, check=False)


def test_reproduce_by_trigger_files_a_complete_escalation(project):
    good = project.run(FIXTURE_MODE="good", HARNESS_NOTIFY="off")
    assert good.returncode == 0, good.stderr
    bad = project.run(FIXTURE_MODE="typeerror", HARNESS_NOTIFY="off")
    assert {"FAIL-003", "ARTIF-001"} <= {a["trigger"] for a in bad.alerts()}, bad.stderr

    done = _reproduce(project, "--trigger", "FAIL-003", "--json", FIXTURE_MODE="typeerror")
    assert done.returncode == 1, done.stderr  # 1: the failure reproduced
    summary = json.loads(done.stdout)
    directory = Path(summary["directory"])
    assert directory.parent.parent == project.root / "plans" / "active" / "INTEGRATE-PYTORCH-001" / "reports"
    assert directory.name == "escalation" and len(directory.parent.name) == len("2025-10-19T193425Z")
    assert sorted(p.name for p in directory.iterdir()) >= ["document.md", "env.txt", "escalation.json", "failure.log",
                                                           "pytest.json"]
    assert summary["trigger"]["id"] == "FAIL-003" and summary["owners"] == ["INTEGRATE-PYTORCH-001"]

    log = (directory / "failure.log").read_text()
    assert "test_run_pytorch_train_save_load_infer FAILED" in log  # -vv: one line per test
    assert "CUDA_VISIBLE_DEVICES=''" in log  # forced empty although the catalog says "0"
    assert "TypeError: PtychoPINN_Lightning.__init__() missing 4 required positional arguments" in log

    env_txt = (directory / "env.txt").read_text()
    assert "$ python -V\nPython 3." in env_txt and "Name: torch" in env_txt or "not found: torch" in env_txt
    assert "Model name" in env_txt and "CPU(s)" in env_txt

    document = (directory / "document.md").read_text()
    assert document.startswith("# Escalation ") and "FAIL-003 on `integration`" in document
    assert "**Reproduced.**" in document
    assert "| Response SLA | <4 hours |" in document and "| Owner | INTEGRATE-PYTORCH-001 |" in document
    assert "TypeError: PtychoPINN_Lightning.__init__() missing 4 required positional arguments" in document
    assert "stack trace" in document and "raise TypeError" in document
    assert 'CUDA_VISIBLE_DEVICES="" TF_CPP_MIN_LOG_LEVEL=2 pytest tests/test_integration.py -vv | tee failure.log' in document
    assert "harness reproduce --trigger FAIL-003" in document
    # diff from the known-good run: runtime, artifact size, checkpoint keys
    good_key = good.run_dirs[0].name
    assert f"Known-good run: `{good_key}`" in document
    assert "| Runtime (wall) |" in document
    assert "| `checkpoint_path` size |" in document
    assert "| `checkpoint_path` checkpoint keys | epoch, global_step, hyper_parameters, state_dict | epoch, global_step, state_dict | removed: hyper_parameters |" in document
    assert "- `tests/test_integration.py::test_run_pytorch_train_save_load_infer`: passed -> failed" in document
    assert "docs/workflows/pytorch.md §6" in document  # brief §3.5 step 5 for checkpoint issues
    artifacts = summary["diff"]["artifacts"]["checkpoint_path"]
    assert artifacts["keys_removed"] == ["hyper_parameters"]
    assert artifacts["known_good"]["size_bytes"] > artifacts["now"]["size_bytes"] > 0

    ledger = (project.root / "docs" / "fix_plan.md").read_text()
    assert ledger.startswith(LEDGER.split("## [TEST")[0].split("- 2025-10-01")[0])
    integrate = ledger.split("## [INTEGRATE-PYTORCH-001]")[1].split("## [TEST-PYTORCH-001]")[0]
    attempts, notes = integrate.split("### Notes")
    assert "- 2025-10-01 an older attempt (keep me)" in attempts
    assert f"· FAIL-003 (high, SLA <4 hours) · selector `integration`** — reproduced" in attempts
    assert f"`plans/active/INTEGRATE-PYTORCH-001/reports/{directory.parent.name}/escalation/`" in attempts
    assert "A later subsection that must stay after the attempts." in notes
    assert not list((project.root / "plans" / "active").rglob(".staging-*"))


def test_a_passing_rerun_is_documented_as_not_reproduced(project):
    done = _reproduce(project, "--selector", "integration", "--no-ledger", "--quiet")
    assert done.returncode == 0, done.stderr
    [document] = (project.root / "plans" / "active").rglob("document.md")
    assert "TEST-PYTORCH-001" in str(document)  # no trigger: the selector's catalog owner
    text = document.read_text()
    assert "**Not reproduced.**" in text and "No errors: every test passed." in text
    assert "No known-good run of `integration` in history" in text
    assert (project.root / "docs" / "fix_plan.md").read_text() == LEDGER


def test_env_txt_is_written_without_lscpu_or_git(project):
    done = _reproduce(project, "--selector", "integration", "--no-ledger", "--quiet", PATH="/nonexistent")
    assert done.returncode == 0, done.stderr
    [env_txt] = (project.root / "plans" / "active").rglob("env.txt")
    text = env_txt.read_text()
    assert "Model name:" in text and f"CPU(s): {os.cpu_count()}" in text


def test_secrets_never_reach_failure_log_pytest_json_env_txt_or_the_document(project, tmp_path):
    """A routes variable is withheld from the reproduction and from the interpreter env.txt asks;
    a value a test (or the interpreter's start-up) finds elsewhere is redacted where it lands."""
    url, name = "https://hooks.example/secret-url-7f3a9", "HARNESS_WEBHOOK_TEST_PYTORCH_001_URL"
    elsewhere = tmp_path / "found-elsewhere.txt"
    elsewhere.write_text(url)
    project.write("site/sitecustomize.py", f"""
        import os, sys
        print("start-up sees", open({str(elsewhere)!r}).read(), os.environ.get({name!r}), file=sys.stderr)
    """)
    project.write("tests/test_integration.py", f"""
        import os
        def test_run_pytorch_train_save_load_infer():
            value = open({str(elsewhere)!r}).read()
            print("the test found", value, "and in its environment", os.environ.get({name!r}))
            raise AssertionError("leaked " + value)
    """)
    done = _reproduce(project, "--selector", "integration", "--no-ledger", **{name: url},
                      PYTHONPATH=str(project.root / "site"))
    assert done.returncode == 1, done.stderr
    [directory] = (project.root / "plans" / "active").rglob("escalation")
    written = {p.name: p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    assert {"failure.log", "pytest.json", "env.txt", "document.md", "escalation.json"} <= set(written)
    for file, data in written.items():
        assert url.encode() not in data, f"the secret is in {file}"
    redacted = f"[redacted: {name}]"
    assert f"the test found {redacted} and in its environment None" in written["failure.log"].decode()
    assert f"start-up sees {redacted} None" in written["env.txt"].decode()  # asked without the secret, cleaned
    assert redacted in written["pytest.json"].decode() and f"leaked {redacted}" in written["document.md"].decode()
    for file in ("failure.log", "pytest.json"):  # env.txt comes redacted from env_text itself
        assert f"harness: warning: secret value of {name} found in {file}; redacted" in done.stderr


def test_both_initiatives_get_a_ledger_entry_for_a_shared_trigger(project):
    done = _reproduce(project, "--selector", "integration", "--initiative", "TEST-PYTORCH-001", "--quiet",
                      FIXTURE_MODE="typeerror")
    assert done.returncode == 1
    ledger = (project.root / "docs" / "fix_plan.md").read_text()
    assert ledger.count("selector `integration`** — reproduced") == 1
    assert "selector `integration`** — reproduced" in ledger.split("## [TEST-PYTORCH-001]")[1]


@pytest.mark.parametrize(("args", "message"), [
    (["--selector", "nope"], "no selector 'nope'"),
    (["--trigger", "NOPE-001"], "--trigger: 'NOPE-001' is not a trigger"),
    (["--trigger", "RT-001"], "no history database"),
    (["--selector", "integration", "--initiative", "../../x"], "--initiative '../../x': expected an initiative name"),
    (["--selector", "integration", "--initiative", "/tmp/x"], "--initiative '/tmp/x': expected an initiative name"),
])
def test_user_mistakes_are_one_line_and_exit_2(project, args, message):
    done = _reproduce(project, *args)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (project.root / "plans").exists() and not (project.root / "x").exists()


def test_a_failure_while_documenting_leaves_no_directory_and_no_ledger_entry(project, tmp_path):
    from harness.catalog import load_catalog
    from harness.rule_schema import load_rules

    catalog = load_catalog(project.root / "catalog.toml")
    broken = tmp_path / "broken-templates"  # overrides the packaged document template with one that fails
    broken.mkdir()
    (broken / "escalation_document.md.j2").write_text("# {{ no_such_field_in_the_context }}\n")
    request = ReproduceRequest(
        catalog=catalog, rules=load_rules(REPO / "alerts" / "rules.yaml"), selector=catalog.selector("integration"),
        trigger=None, history_path=None, reports_dir=project.reports, plans_root=project.root / "plans" / "active",
        ledger=project.root / "docs" / "fix_plan.md", templates_dir=broken,
    )
    with pytest.raises(Exception, match="no_such_field_in_the_context"):
        reproduce(request)
    assert not (project.root / "plans").exists()
    assert (project.root / "docs" / "fix_plan.md").read_text() == LEDGER


def test_a_project_without_its_own_templates_documents_with_the_packaged_defaults(project, tmp_path):
    from harness.catalog import load_catalog
    from harness.rule_schema import load_rules

    catalog = load_catalog(project.root / "catalog.toml")
    request = ReproduceRequest(
        catalog=catalog, rules=load_rules(REPO / "alerts" / "rules.yaml"), selector=catalog.selector("integration"),
        trigger=None, history_path=None, reports_dir=project.reports, plans_root=project.root / "plans" / "active",
        ledger=project.root / "docs" / "fix_plan.md", templates_dir=tmp_path / "no-project-copy",
    )
    outcome = reproduce(request)
    assert outcome.exit_code == 0 and (outcome.directory / "document.md").read_text().startswith("# Escalation ")
    assert "selector `integration`** — not reproduced" in (project.root / "docs" / "fix_plan.md").read_text()


# -- the ledger ------------------------------------------------------------------------------------


def test_insert_entry_creates_missing_sections_and_loses_nothing():
    text = insert_entry(LEDGER, "NEW-INITIATIVE-001", "- new")
    assert text.startswith(LEDGER.rstrip("\n"))
    assert text.endswith("## [NEW-INITIATIVE-001]\n\n### Attempts history\n\n- new\n")
    headless = "# Ledger\n\n## [A-1] x\n\nprose\n\n## [B-1] y\n"
    updated = insert_entry(headless, "A-1", "- first")
    assert updated == "# Ledger\n\n## [A-1] x\n\nprose\n\n### Attempts history\n\n- first\n\n## [B-1] y\n"
    assert insert_entry("", "A-1", "- e").startswith("# Fix plan")


def test_entries_append_in_order_inside_the_attempts_list():
    text = LEDGER
    for n in range(3):
        text = insert_entry(text, "INTEGRATE-PYTORCH-001", f"- entry {n}")
    integrate = text.split("## [INTEGRATE-PYTORCH-001]")[1].split("### Notes")[0]
    positions = [integrate.index(f"- entry {n}") for n in range(3)]
    assert integrate.index("keep me") < positions[0] < positions[1] < positions[2]
    for line in LEDGER.splitlines():
        assert line in text.splitlines()


_WRITER = """
import sys
from pathlib import Path
from harness.fix_plan_ledger import append_entry
ledger, tag, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for n in range(count):
    initiative = "INTEGRATE-PYTORCH-001" if n % 2 else "TEST-PYTORCH-001"
    append_entry(ledger, initiative, f"- {tag} entry {n}\\n  second line of {tag} {n}")
"""


def test_two_processes_appending_at_once_both_land(tmp_path):
    ledger = tmp_path / "docs" / "fix_plan.md"
    ledger.parent.mkdir()
    ledger.write_text(LEDGER, encoding="utf-8")
    count = 25
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(ledger), tag, str(count)], cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)}) for tag in ("alpha", "beta")]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    text = ledger.read_text(encoding="utf-8")
    for tag in ("alpha", "beta"):
        for n in range(count):
            assert text.count(f"- {tag} entry {n}\n  second line of {tag} {n}\n") == 1, (tag, n)
    for line in LEDGER.splitlines():
        assert line in text.splitlines()
    assert not [p for p in ledger.parent.iterdir() if p.name != "fix_plan.md"]  # no temp files left
    integrate = text.split("## [INTEGRATE-PYTORCH-001]")[1].split("## [TEST-PYTORCH-001]")[0]
    assert integrate.count(" entry ") == 2 * (count // 2)  # odd n of both writers, all before "### Notes"
    assert integrate.index("### Notes") > integrate.rindex(" entry ")


def test_append_entry_creates_the_ledger(tmp_path):
    ledger = tmp_path / "docs" / "fix_plan.md"
    append_entry(ledger, "TEST-PYTORCH-001", "- first")
    assert "## [TEST-PYTORCH-001]\n\n### Attempts history\n\n- first\n" in ledger.read_text()
