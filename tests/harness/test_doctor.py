"""`harness doctor`: the generic checks and a catalog's declared ones, each with evidence and a fix.

The project is the tiny pytest project (``sample_projects.make_project``) with a ``config_sync``
selector added and the brief's handoff checklist (§7) declared under ``[doctor]`` as this
repository's catalog does.
torch and lightning are the one boundary replaced: small packages on ``PYTHONPATH`` stand in for
them (a real ``import lightning`` takes 6-30 s here), so the tests can make them old or broken.
Everything else (selector runs, history, the dataset probe through ``ptycho.simulate``) is real.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_history_postgres import pg_url, postgres_server  # noqa: F401 - pytest fixtures (a throwaway server)
from sample_projects import harness_main, make_project

from harness import doctor
from harness.catalog import (
    CpuOnlyCheck,
    DatasetCheck,
    GuardrailsCheck,
    PackageCheck,
    SelectorPassesCheck,
    load_catalog,
)
from harness.history import HistoryStore
from harness.history_schema import MIGRATIONS, latest_version

CANONICAL_NAME = "canonical_run1084_seed1084.npz"
CONFIG_SYNC = """
[selectors.config_sync]
title = "CONFIG-001 wiring (tiny)"
owner = "INTEGRATE-PYTORCH-001"
args = ["tests/test_backend.py::test_pytorch_routing"]
"""
# The repository's declarations (harness/catalog.toml), for the tiny project's selectors.
DOCTOR = """
[[doctor.checks]]
kind = "package"
module = "torch"
minimum = "2.2"
title = "PyTorch >= 2.2 importable (POLICY-001)"
fix = "pip install 'torch>=2.2' --index-url https://download.pytorch.org/whl/cpu (CPU build)"

[[doctor.checks]]
kind = "package"
module = "lightning"
title = "Lightning importable"

[[doctor.checks]]
kind = "dataset"
title = "Canonical dataset present"
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
title = "CONFIG-001: params.cfg synced before the dispatcher routes"
fix = "call update_legacy_dict(params.cfg, config) before inspecting config.backend or importing a backend"

[[doctor.checks]]
kind = "guardrails"
selector = "integration"
triggers = ["RT-001", "RT-002", "RT-003", "FAIL-001", "PARITY-001"]

[[doctor.checks]]
kind = "cpu_only"
selectors = ["integration"]
"""
TORCH = PackageCheck(kind="package", module="torch", minimum="2.2", fix="pip install 'torch>=2.2'")
LIGHTNING = PackageCheck(kind="package", module="lightning")
DATASET = DatasetCheck(kind="dataset", locate="ptycho.simulate:canonical_path",
                       generate="ptycho.simulate:ensure_canonical_dataset",
                       keys=(("diffraction", "diff3d"), ("probeGuess",), ("xcoords",), ("ycoords",)))
ROUTES = """\
version: 1
sinks:
  team:
    kind: webhook
    url_env: DOCTOR_TEST_HOOK_URL
    secret_env: DOCTOR_TEST_HOOK_SECRET
routes:
  - name: team
    sinks: [team]
default:
  sinks: [team]
"""


def stub_packages(folder: Path, torch: str = '__version__ = "2.13.0+cpu"\n',
                  lightning: str = '__version__ = "2.6.6"\n') -> Path:
    for name, body in (("torch", torch), ("lightning", lightning)):
        (folder / name).mkdir(parents=True, exist_ok=True)
        (folder / name / "__init__.py").write_text(body)
    return folder


def environ(stubs: Path, datasets: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "TINY_", "GITHUB_"))}
    env.update(PYTHONPATH=os.pathsep.join([str(stubs), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               PTYCHO_DATASETS_DIR=str(datasets), CUDA_VISIBLE_DEVICES="")
    env.update(extra)
    return env


def fake_dataset(folder: Path, keys=("diffraction", "probeGuess", "xcoords", "ycoords")) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CANONICAL_NAME
    np.savez(path, **{key: np.zeros(3, dtype=np.float32) for key in keys})
    return path


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """The tiny project with config_sync and routes, and one recorded pr run in its history."""
    root = tmp_path_factory.mktemp("doctor")
    catalog = make_project(root)
    catalog.write_text(catalog.read_text() + CONFIG_SYNC + DOCTOR)
    (root / "routes.yaml").write_text(ROUTES)
    stubs = stub_packages(root / "stubs")
    datasets = root / "datasets"
    fake_dataset(datasets)
    reports = root / "reports"
    with pytest.MonkeyPatch.context() as patch:
        for name in [k for k in os.environ if k.startswith(("HARNESS_", "TINY_", "GITHUB_"))]:
            patch.delenv(name)
        patch.setenv("HARNESS_HOST", "doctor-host")
        patch.setenv("HARNESS_NOTIFY", "off")
        assert harness_main("run", "--cadence", "pr", "--catalog", str(catalog), "--reports-dir", str(reports),
                            "--progress", "none") == 0
    return {"root": root, "catalog": catalog, "stubs": stubs, "datasets": datasets, "reports": reports,
            "history": reports / "history.sqlite", "routes": root / "routes.yaml"}


def request(project, **changes) -> doctor.DoctorRequest:
    base = dict(catalog_path=project["catalog"], rules_path=None, history=project["history"],
                routes_path=project["routes"], jobs=2, progress="none",
                environ=environ(project["stubs"], project["datasets"], DOCTOR_TEST_HOOK_URL="http://127.0.0.1:9/x"))
    base.update(changes)
    return doctor.DoctorRequest(**base)


def by_id(report) -> dict[str, doctor.Check]:
    return {check.id: check for check in report.checks}


# -- the whole checklist ----------------------------------------------------------------------------


def test_a_healthy_project_passes_every_required_check_from_history(project, monkeypatch):
    monkeypatch.setenv("HARNESS_HOST", "doctor-host")
    report = doctor.diagnose(request(project))
    checks = by_id(report)
    assert list(checks) == ["catalog", "torch", "lightning", "pytest_plugins", "dataset", "integration",
                            "backend_selection", "config_001", "guardrails", "cpu_only", "webhooks", "history"]
    assert report.ok and report.exit_code == 0, [(c.id, c.status, c.evidence) for c in report.checks if not c.holds]
    assert checks["torch"].status == "pass" and "torch 2.13.0+cpu" in checks["torch"].evidence
    assert checks["lightning"].evidence.startswith("lightning 2.6.6 imports")
    assert checks["dataset"].status == "pass" and CANONICAL_NAME in checks["dataset"].evidence
    integration = checks["integration"]
    assert integration.title == "integration passes within 90 s"
    assert integration.status == "pass" and "1/1 tests passed" in integration.evidence
    assert "host doctor-host" in integration.evidence and "limit 90 s" in integration.evidence
    assert checks["backend_selection"].title == "backend_selection passes in under 5 s"
    assert checks["backend_selection"].status == "pass" and "(tests;" in checks["backend_selection"].evidence
    assert checks["config_001"].status == "pass" and "tests/test_backend.py::test_pytorch_routing" in checks["config_001"].evidence
    assert checks["history"].status == "pass" and f"schema version {latest_version()}" in checks["history"].evidence
    # the webhook URL is set, the secret is not: names only, never the value
    webhooks = checks["webhooks"]
    assert webhooks.status == "warn" and "DOCTOR_TEST_HOOK_SECRET" in webhooks.details["missing"]
    assert "127.0.0.1:9" not in json.dumps(report.to_json())
    assert report.work_dir is None  # nothing failed: no logs kept


def test_without_history_the_selector_checks_cannot_tell_and_say_so(project, tmp_path):
    report = doctor.diagnose(request(project, history=tmp_path / "none.sqlite"))
    checks = by_id(report)
    for name in ("integration", "backend_selection"):
        assert checks[name].status == "unknown"
        assert "no history database" in checks[name].evidence and "harness doctor --run" in checks[name].fix
    assert checks["history"].status == "warn"       # not created yet: holds, with how it gets created
    assert report.exit_code == 1


def test_run_runs_the_selectors_now_and_keeps_the_logs_of_a_failure(project, tmp_path, monkeypatch):
    monkeypatch.setenv("TINY_FAIL_INTEGRATION", "1")
    report = doctor.diagnose(request(project, history=tmp_path / "none.sqlite", run=True))
    checks = by_id(report)
    assert checks["backend_selection"].status == "pass" and "[run now]" in checks["backend_selection"].evidence
    integration = checks["integration"]
    assert integration.status == "fail" and "decoder output shape mismatch" in integration.evidence
    assert "harness reproduce --selector integration" in integration.fix
    assert report.exit_code == 1 and report.work_dir is not None
    log = Path(report.work_dir) / "selectors" / "integration" / "stdout.log"
    assert log.is_file() and str(log) in integration.evidence


def test_runtime_limits_come_from_the_catalog(project, tmp_path):
    text = project["catalog"].read_text()
    strict = tmp_path / "strict.toml"
    strict.write_text(text.replace('root = "."', f'root = "{project["root"]}"')
                      .replace("critical_s = 90", "critical_s = 0.001").replace("warning_s = 60", "warning_s = 0.0005"))

    def check(catalog_path: Path, host: str) -> doctor.Check:
        recorded = doctor.recorded_run(project["history"], "integration", host, doctor.datetime.now(doctor.UTC))
        spec = SelectorPassesCheck(kind="selector_passes", selector="integration", limit="critical")
        return doctor.selector_passes_check(spec, load_catalog(catalog_path), recorded,
                                     project["history"], host)

    over = check(strict, "doctor-host")
    assert over.title == "integration passes within 0.001 s"
    assert over.status == "fail" and "over the limit" in over.evidence
    elsewhere = check(project["catalog"], "some-other-machine")
    assert elsewhere.status == "warn" and "recorded on another machine" in elsewhere.evidence


# -- one check at a time ------------------------------------------------------------------------------


@pytest.mark.parametrize("torch, lightning, expect", [
    ('__version__ = "2.1.0"\n', '__version__ = "2.6.6"\n', {"torch": "fail"}),
    ('raise ImportError("libtorch_cpu.so: cannot open shared object file")\n', '__version__ = "2.6.6"\n', {"torch": "fail"}),
    ('__version__ = "2.13.0+cpu"\n', 'raise ModuleNotFoundError("No module named lightning_utilities")\n', {"lightning": "fail"}),
])
def test_torch_and_lightning_are_imported_by_the_catalogs_interpreter(tmp_path, torch, lightning, expect):
    stubs = stub_packages(tmp_path / "stubs", torch, lightning)
    rows, plugins = doctor.package_checks(sys.executable, tmp_path, environ(stubs, tmp_path), [TORCH, LIGHTNING])
    checks = {c.id: c for c in [*rows, plugins]}
    for name, status in expect.items():
        assert checks[name].status == status
        assert checks[name].fix
    if "torch" in expect:
        evidence = checks["torch"].evidence
        assert ("needs >= 2.2" in evidence) or ("libtorch_cpu.so" in evidence)
        assert "torch>=2.2" in checks["torch"].fix
    assert checks["pytest_plugins"].status == "pass"


def test_an_interpreter_that_is_not_there_makes_the_package_checks_unknown(tmp_path):
    rows, plugins = doctor.package_checks(str(tmp_path / "no-python"), tmp_path, dict(os.environ), [TORCH])
    checks = [*rows, plugins]
    assert {c.status for c in checks} == {"unknown"}
    assert "not found" in checks[0].evidence


def test_fix_generates_the_canonical_dataset(tmp_path):
    env = environ(tmp_path, tmp_path / "datasets")
    missing = doctor.dataset_check(DATASET, sys.executable, tmp_path, env, fix=False)
    assert missing.status == "fail" and "harness doctor --fix" in missing.fix
    fixed = doctor.dataset_check(DATASET, sys.executable, tmp_path, env, fix=True)
    assert fixed.status == "pass" and "generated now" in fixed.evidence, fixed.evidence
    with zipfile.ZipFile(tmp_path / "datasets" / CANONICAL_NAME) as archive:
        assert "diffraction.npy" in archive.namelist()


def test_a_dataset_without_the_contract_keys_fails(tmp_path):
    fake_dataset(tmp_path / "datasets", keys=("diffraction", "xcoords"))
    check = doctor.dataset_check(DATASET, sys.executable, tmp_path, environ(tmp_path, tmp_path / "datasets"), fix=False)
    assert check.status == "fail" and "probeGuess" in check.evidence and "ycoords" in check.evidence


def test_history_health_and_schema_version(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 200)
    assert doctor.history_check(garbage, fix=False).status == "fail"

    old = tmp_path / "old.sqlite"
    db = sqlite3.connect(old)
    db.executescript(MIGRATIONS[0].sql)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)")
    db.execute("INSERT INTO schema_migrations VALUES (1, 'core', '2025-01-01T00:00:00.000Z')")
    db.commit()
    db.close()
    stale = doctor.history_check(old, fix=False)
    assert stale.status == "warn" and "schema version 1" in stale.evidence and "--fix" in stale.fix
    assert doctor.history_check(old, fix=False).details["schema_version"] == 1  # checking did not migrate it
    fixed = doctor.history_check(old, fix=True)
    assert fixed.status == "pass" and "migrated now" in fixed.evidence

    newer = tmp_path / "newer.sqlite"
    HistoryStore.open(newer).close()
    db = sqlite3.connect(newer)
    db.execute("INSERT INTO schema_migrations VALUES (999, 'future', '2030-01-01T00:00:00.000Z')")
    db.commit()
    db.close()
    assert doctor.history_check(newer, fix=False).status == "fail"


def test_history_on_postgresql_is_checked_and_migrated_with_fix(pg_url):  # noqa: F811
    from harness.history_backend import HistoryURL

    url = HistoryURL(pg_url)
    empty = doctor.history_check(url, fix=False)
    assert empty.status == "warn" and "schema version 0" in empty.evidence and "integrity_check is SQLite's" in empty.evidence
    fixed = doctor.history_check(url, fix=True)
    assert fixed.status == "pass" and f"migrated to {latest_version()}" in fixed.evidence
    assert doctor.history_check(url, fix=False).status == "pass"


def test_cpu_only_requires_the_integration_selector_pinned(project, tmp_path):
    text = project["catalog"].read_text().replace('env = { CUDA_VISIBLE_DEVICES = "" }', 'env = { }')
    unpinned = tmp_path / "unpinned.toml"
    unpinned.write_text(text.replace('root = "."', f'root = "{project["root"]}"'))
    check = doctor.cpu_only_check(CpuOnlyCheck(kind="cpu_only", selectors=("integration",)), load_catalog(unpinned),
                                  {"CUDA_VISIBLE_DEVICES": "0"})
    assert check.status == "fail" and 'CUDA_VISIBLE_DEVICES = ""' in check.fix
    assert 'this shell: CUDA_VISIBLE_DEVICES="0"' in check.evidence


def test_the_shipped_catalog_declares_the_handoff_checklist():
    from harness.locations import DEFAULT_CATALOG, DEFAULT_RULES
    from harness.rule_schema import load_rules

    catalog = load_catalog(DEFAULT_CATALOG)
    declared = {spec.kind: spec for spec in catalog.doctor.checks}
    assert [s.module for s in catalog.doctor.checks if s.kind == "package"] == ["torch", "lightning"]
    assert set(declared) == {"package", "dataset", "selector_passes", "selector_runs", "guardrails", "cpu_only"}
    assert doctor.cpu_only_check(declared["cpu_only"], catalog, {}).status == "pass"
    rails = doctor.guardrails_check(declared["guardrails"], catalog, load_rules(DEFAULT_RULES))
    assert rails.status == "info" and "hard limit 90 s" in rails.evidence and "warning 60 s" in rails.evidence
    assert set(declared["guardrails"].triggers) <= {t.id for t in load_rules(DEFAULT_RULES).triggers}
    assert "tests/torch/test_backend_selection.py" in " ".join(catalog.selectors[declared["selector_runs"].selector].args)


def test_a_declared_check_naming_an_unknown_selector_is_a_catalog_error(project, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(project["catalog"].read_text().replace('root = "."', f'root = "{project["root"]}"')
                   + '\n[[doctor.checks]]\nkind = "selector_passes"\nselector = "nope"\n')
    with pytest.raises(doctor.ConfigError, match=r"doctor\.checks\.\d+: names unknown selector 'nope'"):
        load_catalog(bad)


def test_guardrails_warn_when_the_rules_lose_a_brief_trigger(project, tmp_path):
    from harness.locations import DEFAULT_RULES
    from harness.rule_schema import load_rules

    text = DEFAULT_RULES.read_text()
    start = text.index("  - id: PARITY-001")
    trimmed = tmp_path / "rules.yaml"
    trimmed.write_text(text[:start] + text[text.index("  - id: FAIL-001"):])
    spec = GuardrailsCheck(kind="guardrails", selector="integration", triggers=("FAIL-001", "PARITY-001"))
    check = doctor.guardrails_check(spec, load_catalog(project["catalog"]), load_rules(trimmed))
    assert check.status == "warn" and "PARITY-001" in check.evidence and not check.required


def test_notifications_switched_off_are_reported(project):
    check = doctor.webhooks_check(project["routes"], {"HARNESS_NOTIFY": "off", "DOCTOR_TEST_HOOK_URL": "u",
                                                      "DOCTOR_TEST_HOOK_SECRET": "whsec_c2VjcmV0"})
    assert check.status == "warn" and "HARNESS_NOTIFY=off" in check.evidence and "whsec_" not in check.evidence


# -- the command line ------------------------------------------------------------------------------------


def test_the_command_prints_the_table_and_exits_by_the_required_checks(project, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(project["stubs"]))
    monkeypatch.setenv("PTYCHO_DATASETS_DIR", str(project["datasets"]))
    monkeypatch.setenv("HARNESS_HOST", "doctor-host")
    monkeypatch.setenv("HARNESS_ROUTES", str(project["routes"]))
    args = ["doctor", "--catalog", str(project["catalog"]), "--reports-dir", str(project["reports"]), "--progress", "none"]
    assert harness_main(*args, "--run") == 0  # the selectors run now, and pass
    out = capsys.readouterr().out
    assert "[run now]" in " ".join(out.replace("│", " ").split())  # evidence is plain text, not rich markup
    for words in ("handoff checklist", "PyTorch >= 2.2 importable", "integration passes within 90 s",
                  "Escalation matrix", "RT-001", "all 11 required checks hold (exit 0)"):
        assert words in out
    assert harness_main(*args, "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is True and {c["id"] for c in data["checks"]} >= {"torch", "dataset", "config_001", "history"}
    assert {row["trigger"] for row in data["escalation_matrix"]} >= {"RT-001", "FAIL-001", "PARITY-001"}


def test_a_broken_catalog_is_a_failed_check_not_a_traceback(tmp_path, monkeypatch, capsys):
    bad = tmp_path / "harness.toml"
    bad.write_text("version = 1\n[selectors.a]\ntitle = 'a'\n")
    monkeypatch.setenv("PYTHONPATH", str(stub_packages(tmp_path / "stubs")))
    code = harness_main("doctor", "--catalog", str(bad), "--history", str(tmp_path / "h.sqlite"), "--json",
                        "--progress", "none")
    data = json.loads(capsys.readouterr().out)
    checks = {c["id"]: c for c in data["checks"]}
    assert code == 1 and checks["catalog"]["status"] == "fail" and "harness.toml" in checks["catalog"]["evidence"]
    assert "declared checks cannot run" in checks["catalog"]["evidence"]
    # what does not need the catalog is still checked
    assert list(checks) == ["catalog", "pytest_plugins", "webhooks", "history"]
    assert checks["pytest_plugins"]["status"] == "pass"


# -- doctor agrees with the gate, and its advice follows the cause ------------------------------------------


def test_doctor_reads_the_gate_of_the_recorded_run(project, tmp_path, monkeypatch):
    """A recorded run whose gate failed on the integration selector: doctor fails it, naming the trigger
    the gate fired; the same history's passing selector still passes."""
    reports = tmp_path / "reports"
    for name in [k for k in os.environ if k.startswith(("HARNESS_", "TINY_", "GITHUB_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HARNESS_HOST", "doctor-host")
    monkeypatch.setenv("HARNESS_NOTIFY", "off")
    monkeypatch.setenv("TINY_FAIL_INTEGRATION", "1")
    assert harness_main("run", "--cadence", "pr", "--catalog", str(project["catalog"]), "--reports-dir", str(reports),
                        "--progress", "none") == 1
    db = sqlite3.connect(reports / "history.sqlite")
    gate_passed, fired = db.execute("SELECT gate_passed, (SELECT GROUP_CONCAT(trigger_id) FROM alerts) FROM runs").fetchone()
    db.close()
    assert gate_passed == 0 and fired == "PARITY-001"  # the failure's message names a shape mismatch
    checks = by_id(doctor.diagnose(request(project, history=reports / "history.sqlite")))
    integration = checks["integration"]
    assert integration.status == "fail" and "the gate fails on it: PARITY-001 (high)" in integration.evidence
    assert "harness reproduce --selector integration" in integration.fix
    assert integration.details["alerts"] == ["PARITY-001"] and integration.details["fail_on"] == "high"
    assert checks["backend_selection"].status == "pass"


def test_a_run_the_gate_let_through_holds_with_a_warning():
    """Not passed, but no alert at or above the gate's threshold (a flaky pass, an allowed skip): the
    gate passed, so doctor does not fail it; it warns and says why."""
    from harness.catalog import Catalog, Selector

    selector = Selector(name="integration", title="i", owner="o", args=("tests/x.py",))
    catalog = Catalog(path=Path("c.toml"), root=Path("."), selectors={"integration": selector}, cadences={})
    spec = SelectorPassesCheck(kind="selector_passes", selector="integration")
    run = doctor.SelectorRun(state="flaky", reason="passed after 1 rerun", runtime_s=1.0, measure="wall", passed=1,
                             total=1, source="run r1", alerts=[doctor.FiredAlert("FLAKY-001", "warning", "flaky")],
                             fail_on="high")
    check = doctor.selector_passes_check(spec, catalog, run, None, "host")
    assert check.status == "warn" and check.holds and "the gate let it through" in check.evidence
    failing = doctor.SelectorRun(state="failed", reason="1 failed", runtime_s=1.0, measure="wall", source="run r2",
                                 alerts=[doctor.FiredAlert("FAIL-001", "critical", "workflow failed")], fail_on="high")
    assert doctor.selector_passes_check(spec, catalog, failing, None, "host").status == "fail"
    # the same alert below a stricter run's threshold did not block that run's gate either
    lenient = doctor.SelectorRun(**{**failing.__dict__, "fail_on": "critical", "alerts": [
        doctor.FiredAlert("TEST-001", "high", "a test failed")]})
    assert doctor.selector_passes_check(spec, catalog, lenient, None, "host").status == "warn"


@pytest.mark.parametrize("args, cause, advice", [
    (["tests/test_backend.py::test_no_such_test"], "usage_error", "pytest found nothing to run"),
    (["tests/test_backend_broken.py::test_pytorch_routing"], "failed", "update_legacy_dict"),
    (["tests/test_backend_broken.py::test_fixture_fails"], "setup_error", "a fixture failed in setup"),
])
def test_the_advice_follows_the_cause(project, tmp_path, args, cause, advice):
    """CONFIG-001's advice (update_legacy_dict) is for its test failing, not for a missing node id or a
    fixture that could not set the test up."""
    root = tmp_path / "project"
    shutil.copytree(project["root"], root, ignore=shutil.ignore_patterns("reports", "stubs", "datasets"))
    (root / "tests" / "test_backend_broken.py").write_text(
        "import pytest\n"
        "@pytest.fixture\n"
        "def dataset(tmp_path):\n"
        "    return open(tmp_path / 'missing.npz')\n"
        "def test_pytorch_routing():\n"
        "    assert False, 'params.cfg was not synced'\n"
        "def test_fixture_fails(dataset):\n"
        "    pass\n")
    catalog = root / "catalog.toml"
    text = catalog.read_text()
    start = text.index("[selectors.config_sync]")
    catalog.write_text(text.replace(text[start:text.index("args", start)] + 'args = ["tests/test_backend.py::test_pytorch_routing"]',
                                    text[start:text.index("args", start)] + f"args = {json.dumps(args)}"))
    report = doctor.diagnose(request(project, catalog_path=catalog, history=tmp_path / "none.sqlite"))
    check = by_id(report)["config_001"]
    assert check.status == "fail" and check.details["state"] == cause, check.evidence
    assert advice in check.fix, check.fix
    if advice != "update_legacy_dict":
        assert "update_legacy_dict" not in check.fix


def test_checks_take_keywords_and_one_status_enum():
    with pytest.raises(TypeError):
        doctor.Check("history", "title", True, doctor.CheckStatus.FAIL, "evidence")  # type: ignore[misc]
    check = doctor.Check(id="history", title="t", status=doctor.CheckStatus.WARN, evidence="e")
    assert check.required and check.holds and check.to_json()["status"] == "warn"
    assert {str(s) for s in doctor.CheckStatus} == {"pass", "warn", "fail", "unknown", "skipped", "info"}


@pytest.mark.parametrize("allow_skip, gate_exit, status", [(False, 1, "fail"), (True, 0, "warn")])
def test_a_selector_whose_tests_all_skipped_reads_as_the_gate_read_it(project, tmp_path, monkeypatch,
                                                                      allow_skip, gate_exit, status):
    """The integration selector ran, but every test skipped: the gate fails it (HARNESS-002) unless
    the catalog expects the skip; doctor, reading that run, says the same."""
    text = project["catalog"].read_text().replace('root = "."', f'root = "{project["root"]}"')
    text = text.replace('args = ["tests/test_integration.py::test_run_pytorch_train_save_load_infer"]',
                        'args = ["tests/test_backend.py::test_pytorch_unavailable_raises_runtime_error"]'
                        + ("\nallow_skip = true" if allow_skip else ""))
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(text)
    reports = tmp_path / "reports"
    for name in [k for k in os.environ if k.startswith(("HARNESS_", "TINY_", "GITHUB_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HARNESS_HOST", "doctor-host")
    monkeypatch.setenv("HARNESS_NOTIFY", "off")
    assert harness_main("run", "--cadence", "pr", "--catalog", str(catalog), "--reports-dir", str(reports),
                        "--progress", "none") == gate_exit
    check = by_id(doctor.diagnose(request(project, catalog_path=catalog, history=reports / "history.sqlite")))["integration"]
    assert check.status == status, check.evidence
    assert "no torch here" in check.evidence or "skipped" in check.evidence
    if status == "fail":
        assert "HARNESS-002" in check.evidence and "did not run" in check.fix
    else:
        assert "the gate let it through" in check.evidence


def test_no_routes_file_is_a_warning_as_for_harness_run(tmp_path):
    check = doctor.webhooks_check(tmp_path / "alerts" / "routes.yaml", {})
    assert check.status == "warn" and check.holds and "outbox" in check.evidence and "--routes" in check.fix
    broken = tmp_path / "routes.yaml"
    broken.write_text("version: 1\nsinks: 3\n")
    assert doctor.webhooks_check(broken, {}).status == "fail"
