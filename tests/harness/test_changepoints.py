"""Change points, flaky tests across runs and accepted baselines, on constructed histories."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from harness.changepoints import InvalidMeasurement, ScanSettings, check_measurement, detect, scan
from harness.commands.baseline import accept
from harness.flaky import counted_flips, flaky_tests
from harness.history import HistoryStore
from harness.rule_schema import load_rules
from harness.synthetic_runs import SyntheticRun, record, selector
from sample_projects import SampleProject

RULES = Path(__file__).resolve().parents[2] / "alerts" / "rules.yaml"


def sha(i: int) -> str:
    return f"{i:04d}abc".ljust(40, "0")


def noisy(rng, n, cv, step=0.0, at=20, level=20.0):
    values = level * np.exp(rng.normal(0.0, math.sqrt(math.log1p(cv * cv)), n))
    values[at:] *= 1 + step
    return values


def test_a_step_is_found_at_its_run_with_before_and_after_medians():
    values = noisy(np.random.default_rng(7), 26, 0.05, step=0.5)
    shift = detect(values, ScanSettings())
    assert shift is not None and shift.onset == 20
    assert shift.before == pytest.approx(20, rel=0.08) and shift.after == pytest.approx(30, rel=0.08)
    assert shift.change == pytest.approx(0.5, abs=0.1)


def test_a_noisy_stationary_series_fires_nothing_and_one_outlier_is_not_a_change():
    rng = np.random.default_rng(11)
    values = noisy(rng, 200, 0.10)
    values[120] *= 3.0
    fired = [t for t in range(14, 201) if detect(values[:t], ScanSettings(significance=4.0)) is not None]
    assert fired == []


def test_a_decrease_is_not_an_increase_and_a_small_change_is_below_magnitude():
    rng = np.random.default_rng(3)
    assert detect(noisy(rng, 28, 0.03, step=-0.5), ScanSettings()) is None
    assert detect(noisy(rng, 28, 0.03, step=-0.5), ScanSettings(direction="decrease")) is not None
    assert detect(noisy(rng, 28, 0.01, step=0.05), ScanSettings(min_change=0.10)) is None


def test_scan_judges_many_series_at_once_and_short_ones_not_at_all():
    rng = np.random.default_rng(5)
    matrix = np.array([noisy(rng, 30, 0.05, step=1.0, at=24), noisy(rng, 30, 0.05)])
    matrix = np.vstack([matrix, np.r_[np.full(25, np.nan), [1, 1, 5, 5, 5]]])
    fires, shifts = scan(matrix, ScanSettings())
    assert fires.tolist() == [True, False, False] and shifts[0].onset == 24


@pytest.mark.parametrize("value", [float("nan"), -1.0, None, float("inf"), "x"])
def test_values_that_are_not_measurements_are_rejected_by_name(value):
    with pytest.raises(InvalidMeasurement, match=r"integration: runtime: value .* in run r1 is not a measurement"):
        check_measurement(value, "integration: runtime", "r1")


# -- through the real rule engine and history store ----------------------------------------


@pytest.fixture
def store(tmp_path):
    with HistoryStore.open(tmp_path / "history.sqlite") as opened:
        yield opened


def drive(store, runtimes, *, tests=None, figures=None, start=0, host="h1"):
    rules, sel = load_rules(RULES), selector(figures=({"name": "ssim", "direction": "higher"},))
    reports = []
    for offset, runtime in enumerate(runtimes):
        i = start + offset
        run = SyntheticRun(runtime_s=float(runtime), sha=sha(i), host_key=host,
                           tests=(tests(i) if tests else {}), figures=(figures(i) if figures else {}))
        reports.append(record(store, rules, sel, run, i))
    return reports


def fired(report, trigger):
    return [a for a in report.alerts if a.trigger == trigger]


def test_rt_004_names_the_first_run_and_the_commit_range_and_fires_as_one_alert(store):
    runtimes = noisy(np.random.default_rng(1), 40, 0.05, step=0.4)
    reports = drive(store, runtimes)
    firing = [i for i, r in enumerate(reports) if fired(r, "RT-004")]
    assert firing and firing[0] <= 25 and firing == list(range(firing[0], 40))
    alerts = [fired(reports[i], "RT-004")[0] for i in firing]
    assert len({a.fingerprint for a in alerts}) == 1  # one change, one alert (one notification)
    change = alerts[-1].evidence["change"]
    assert change["first_run"] == "run-00020" and change["commit_range"] == f"{sha(19)[:7]}..{sha(20)[:7]}"
    assert "runtime +" in alerts[0].summary and "first seen in run run-00020 at 0020abc (last good 0019abc" in alerts[0].summary
    assert change == alerts[0].evidence["change"]  # the evidence of the run that found it, unchanged
    assert all(not fired(r, "RT-004") for r in reports[:20])


def test_rt_004_resolves_when_the_series_returns(store):
    rng = np.random.default_rng(2)
    runtimes = np.r_[noisy(rng, 20, 0.03), noisy(rng, 8, 0.03, step=0.5, at=0), noisy(rng, 8, 0.03)]
    reports = drive(store, runtimes)
    assert fired(reports[27], "RT-004")
    back = next(i for i in range(28, 36) if not fired(reports[i], "RT-004"))
    assert [r.trigger for r in reports[back].resolved] == ["RT-004"]


def test_an_accepted_baseline_resolves_the_change_and_is_recorded(store):
    rng = np.random.default_rng(4)
    reports = drive(store, noisy(rng, 30, 0.03, step=0.5))
    assert fired(reports[-1], "RT-004")
    row = accept(store, "integration", "new solver is slower by design", "alice")
    assert row["accepted_by"] == "alice" and row["after_run"] == "run-00029"
    later = drive(store, noisy(rng, 3, 0.03, level=30.0), start=30)
    # The workflow test's duration is the runtime too: its PERF-001 resolves with RT-004.
    assert not fired(later[0], "RT-004") and "RT-004" in [r.trigger for r in later[0].resolved]
    assert not any(fired(r, "RT-004") for r in later)


def test_a_failed_run_neither_moves_nor_resolves_an_open_change(store):
    rng = np.random.default_rng(6)
    reports = drive(store, noisy(rng, 30, 0.03, step=0.5))
    open_alert = fired(reports[-1], "RT-004")[0]
    failing = drive(store, [45.0], tests=lambda i: {"t.py::test_a": ("failed", 1.0, "boom")}, start=30)
    assert fired(failing[0], "RT-004")[0].evidence["change"] == open_alert.evidence["change"]
    assert failing[0].resolved == []


def test_perf_001_finds_the_test_that_slowed_and_qual_002_the_figure_that_dropped(store):
    rng = np.random.default_rng(8)

    def tests(i):
        return {f"t.py::test_{j}": ("passed", float((2.0 if j == 3 and i >= 20 else 1.0) * math.exp(rng.normal(0, 0.03))), None)
                for j in range(6)}

    reports = drive(store, noisy(rng, 30, 0.03), tests=tests, figures=lambda i: {"ssim": 0.80 if i < 22 else 0.74})
    perf = fired(reports[-1], "PERF-001")
    assert [a.nodeid for a in perf] == ["t.py::test_3"] and perf[0].evidence["change"]["first_run"] == "run-00020"
    qual = fired(reports[-1], "QUAL-002")
    assert len(qual) == 1 and qual[0].evidence["change"]["first_run"] == "run-00022"
    assert "ssim -8 %" in qual[0].summary
    assert not fired(reports[-1], "RT-004")


def test_a_test_without_a_valid_duration_is_a_note_not_a_statistic(store):
    rng = np.random.default_rng(9)
    reports = drive(store, noisy(rng, 16, 0.03), tests=lambda i: {"t.py::test_a": ("passed", -1.0 if i == 15 else 1.0, None)})
    assert any("t.py::test_a: call duration: value -1.0 in run this run is not a measurement" in n for n in reports[-1].notes)


# -- flaky across runs ------------------------------------------------------------------------


def test_flips_count_short_failure_stretches_only():
    P, F = True, False
    assert counted_flips([P, P, F, P, P]) == 2            # failed once between passes
    assert counted_flips([P, P, F, F, F, F]) == 0         # broke and stays broken
    assert counted_flips([P, F, F, F, P]) == 0            # a regression and its fix
    assert counted_flips([P, F, P, F, P]) == 4


def test_flaky_002_fires_once_per_flaky_test_and_never_for_deterministic_ones(store):
    rng = np.random.default_rng(10)
    flips = rng.random(60) < 0.2

    def tests(i):
        return {
            "t.py::test_flaky": ("failed" if flips[i] else "passed", 1.0, f"timeout {i}" if flips[i] else None),
            "t.py::test_always_fails": ("failed", 1.0, "broken"),
            "t.py::test_broke_at_30": ("failed" if i >= 30 else "passed", 1.0, "regressed"),
            "t.py::test_fine": ("passed", 1.0, None),
        }

    reports = drive(store, np.full(60, 20.0), tests=tests)
    nodes = {a.nodeid for r in reports for a in fired(r, "FLAKY-002")}
    assert nodes == {"t.py::test_flaky"}
    alerts = [a for r in reports for a in fired(r, "FLAKY-002")]
    assert len({a.fingerprint for a in alerts}) == 1
    last = alerts[-1].evidence
    assert last["flip_rate"] > 0 and last["last_message"].startswith("timeout")
    listed = flaky_tests(store, "integration")
    assert [v.nodeid for v in listed] == ["t.py::test_flaky"]


def test_a_test_that_failed_and_passed_on_one_commit_is_flaky(store):
    def tests(i):
        return {"t.py::test_x": ("failed" if i == 12 else "passed", 1.0, "once")}

    rules, sel = load_rules(RULES), selector()
    reports = [record(store, rules, sel, SyntheticRun(runtime_s=20.0, sha=sha(i // 2), tests=tests(i)), i) for i in range(15)]
    alert = fired(reports[14], "FLAKY-002")[0]  # runs 12 (failed) and 13 (passed) were both on commit 6
    assert alert.evidence["same_commit"] == sha(6)[:7]


def test_a_pass_after_a_fail_on_the_same_commit_is_flaky_in_the_run_that_passes(store):
    """The run being judged counts with its own commit: a retry that passes on the commit that
    just failed is FLAKY-002 at once (one fail then one pass is a single flip, so only the
    same-commit pair can say so)."""
    rules, sel = load_rules(RULES), selector()
    outcomes = {0: ("failed", sha(1)), 1: ("passed", sha(1)), 2: ("failed", sha(2)), 3: ("passed", sha(3))}
    reports = [record(store, rules, sel, SyntheticRun(runtime_s=20.0, sha=commit, tests={"t.py::test_y": (outcome, 1.0, "once")}), i)
               for i, (outcome, commit) in outcomes.items()]
    assert [bool(fired(r, "FLAKY-002")) for r in reports[:2]] == [False, True]
    alert = fired(reports[1], "FLAKY-002")[0]
    assert alert.evidence["same_commit"] == sha(1)[:7] and "failed and passed on commit" in alert.summary


def test_harness_run_judges_its_own_commit_for_flakiness(tmp_path):
    """``harness run`` hands the commit it tested to the rules: a test that failed on a commit
    and passes on the same commit in the next run is reported flaky in that run's report."""
    project = SampleProject(tmp_path)
    project.write("tests/test_retry.py", """\
        from pathlib import Path

        def test_passes_on_retry():
            marker = Path(__file__).resolve().parents[1] / "reports" / "failed-once"
            if not marker.exists():
                marker.parent.mkdir(exist_ok=True)
                marker.write_text("failed")
                raise AssertionError("fails the first time only")
        """)
    project.write(".gitignore", "reports/\n__pycache__/\n.pytest_cache/\n")
    project.catalog({"integration": {"args": ["tests/test_retry.py"]}})
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one commit"], cwd=tmp_path, check=True)
    first = project.run()
    assert first.returncode == 1 and first.selector("integration")["state"] == "failed", first.stderr
    second = project.run()
    assert second.report["run"]["git"]["dirty"] is False, second.report["run"]["git"]
    flaky = second.alerts("FLAKY-002")
    assert [a["nodeid"] for a in flaky] == ["tests/test_retry.py::test_passes_on_retry"], second.report["alerts"]
    assert flaky[0]["evidence"]["same_commit"] == second.report["run"]["git"]["sha"][:7]


# -- runtime thresholds that follow the host ---------------------------------------------------

BRIEF_RUNTIME = {"baseline_s": 35.92, "critical_s": 90, "warning_s": 60, "suspicious_below_s": 20}


def drive_rt(store, runtimes, start=0):
    rules = load_rules(RULES)
    sel = selector(runtime=BRIEF_RUNTIME)
    return [record(store, rules, sel, SyntheticRun(runtime_s=float(v), sha=sha(start + i)), start + i)
            for i, v in enumerate(runtimes)]


def test_a_host_whose_history_says_15_s_is_normal_stops_raising_rt_003(store):
    reports = drive_rt(store, [15.0] * 13)
    fast = [bool(fired(r, "RT-003")) for r in reports]
    assert fast == [True] * 10 + [False] * 3  # absolute floor until 10 runs here, then the host's own
    assert any("(4 of 10 runs so far)" in note for note in reports[4].notes)
    assert reports[12].selectors[0].thresholds["mode"] == "host"
    assert reports[12].selectors[0].thresholds["suspicious_below_s"] == pytest.approx(15 * 0.55)


def test_host_thresholds_catch_a_slowdown_the_absolute_ones_miss_and_keep_the_ceiling(store):
    reports = drive_rt(store, [22.5] * 10 + [59.0])
    assert [a.trigger for a in reports[-1].alerts if a.trigger.startswith("RT-00") and a.trigger != "RT-004"] == ["RT-001"]
    assert reports[-1].selectors[0].thresholds["critical_s"] == pytest.approx(56.25)


def test_the_absolute_limits_stay_a_ceiling_on_a_slow_host(tmp_path):
    with HistoryStore.open(tmp_path / "slow.sqlite") as slow:
        reports = drive_rt(slow, [50.0] * 10 + [95.0])
    thresholds = reports[-1].selectors[0].thresholds
    assert thresholds["critical_s"] == 90 and thresholds["warning_s"] == 60
    assert fired(reports[-1], "RT-001")


# -- quarantine -------------------------------------------------------------------------------


@pytest.fixture
def quarantined_rules(tmp_path):
    """The shipped rules beside a quarantine file (the engine reads alerts/quarantine.yaml there)."""
    from harness import quarantine

    rules_file = tmp_path / "alerts" / "rules.yaml"
    rules_file.parent.mkdir()
    rules_file.write_text(RULES.read_text())
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_q.py").write_text("def test_flaky():\n    pass\n\ndef test_other():\n    pass\n")
    quarantine.add(rules_file.parent / "quarantine.yaml", "tests/test_q.py::test_flaky", "bob", "flaky, issue 12",
                   "2026-12-31", tmp_path, on=quarantine.date(2026, 12, 1))
    return rules_file


def test_a_quarantined_failure_is_reported_and_counted_but_does_not_fail_the_gate(store, quarantined_rules, monkeypatch):
    from harness import quarantine
    from harness.rule_engine import blocking

    monkeypatch.setattr(quarantine, "today", lambda: quarantine.date(2026, 12, 7))
    rules, sel = load_rules(quarantined_rules), selector("unit")
    run = SyntheticRun(runtime_s=5.0, tests={"tests/test_q.py::test_flaky": ("failed", 0.1, "boom"),
                                             "tests/test_q.py::test_other": ("failed", 0.1, "real")})
    report = record(store, rules, sel, run, 0)
    failures = {a.nodeid: a for a in report.alerts if a.trigger == "TEST-001"}
    assert failures["tests/test_q.py::test_flaky"].summary.startswith("[quarantined]")
    assert failures["tests/test_q.py::test_flaky"].evidence["quarantined"]["owner"] == "bob"
    assert [a.nodeid for a in blocking(report.alerts, "high")] == ["tests/test_q.py::test_other"]
    assert any("1 quarantined test(s) ran, 1 failed, 0 passed" in note for note in report.notes)


def test_an_expired_quarantine_re_arms_the_test_and_alerts_its_owner(store, quarantined_rules, monkeypatch):
    from harness import quarantine
    from harness.rule_engine import blocking

    monkeypatch.setattr(quarantine, "today", lambda: quarantine.date(2027, 1, 2))
    rules, sel = load_rules(quarantined_rules), selector("unit")
    report = record(store, rules, sel, SyntheticRun(runtime_s=5.0, tests={"tests/test_q.py::test_flaky": ("failed", 0.1, "boom")}), 0)
    expired = fired(report, "QUAR-001")
    assert len(expired) == 1 and expired[0].owner == "bob" and "expired on 2026-12-31" in expired[0].summary
    assert [a.trigger for a in blocking(report.alerts, "high")] == ["TEST-001"]


def test_a_quarantined_test_that_passed_its_last_ten_runs_is_proposed_for_release(store, quarantined_rules, monkeypatch):
    from harness import quarantine

    monkeypatch.setattr(quarantine, "today", lambda: quarantine.date(2026, 12, 7))
    rules, sel = load_rules(quarantined_rules), selector("unit")
    reports = [record(store, rules, sel, SyntheticRun(runtime_s=5.0, sha=sha(i), tests={
        "tests/test_q.py::test_flaky": ("failed" if i == 2 else "passed", 0.1, "boom")}), i) for i in range(13)]
    proposed = [i for i, r in enumerate(reports) if fired(r, "QUAR-002")]
    assert proposed == [12]  # runs 3..12 are its ten passes after the failure in run 2
    assert "harness quarantine remove tests/test_q.py::test_flaky" in fired(reports[12], "QUAR-002")[0].summary


@pytest.mark.parametrize("argv, message", [
    (["tests/test_q.py::test_missing", "--owner", "a", "--reason", "r", "--expires", "2999-01-01"], "unknown node id"),
    (["tests/test_q.py::test_other", "--owner", "a", "--reason", "r", "--expires", "2001-01-01"], "in the past"),
    (["tests/test_q.py::test_other", "--owner", "", "--reason", "r", "--expires", "2999-01-01"], "--owner"),
    (["not a node id", "--owner", "a", "--reason", "r", "--expires", "2999-01-01"], "not a pytest node id"),
])
def test_quarantine_add_refuses_bad_entries_in_one_line(quarantined_rules, argv, message):
    import subprocess
    import sys

    root = quarantined_rules.parents[1]
    (root / "catalog.toml").write_text('version = 1\nroot = "."\nrules = "alerts/rules.yaml"\n'
                                       '[selectors.unit]\ntitle = "u"\nowner = "o"\nargs = ["tests"]\n'
                                       '[cadences.pr]\nselectors = ["unit"]\n')
    done = subprocess.run([sys.executable, "-m", "harness", "quarantine", "add", *argv, "--catalog", str(root / "catalog.toml")],
                          capture_output=True, text=True, cwd=root)
    assert done.returncode == 2 and message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


# -- showing it ---------------------------------------------------------------------------------


def test_the_dashboard_marks_the_change_and_lists_flaky_tests(store, tmp_path):
    from harness import dashboard

    rng = np.random.default_rng(12)
    flips = rng.random(30) < 0.3
    drive(store, noisy(rng, 30, 0.03, step=0.5),
          tests=lambda i: {"t.py::test_flaky": ("failed" if flips[i] else "passed", 0.05, "flake")})
    data = dashboard.collect(store, tmp_path)
    chart = next(c for c in data.charts if c.selector == "integration")
    assert [c["run_key"] for c in chart.changes] == ["run-00020"]
    assert 'id="change-integration-0"' in chart.svg
    assert [f["nodeid"] for f in data.flaky] == ["t.py::test_flaky"]
    page = dashboard.render(data)
    assert "change point: runtime +" in page and "since 0020abc" in page
    assert 'id="flaky-tests"' in page and "t.py::test_flaky" in page and 'id="quarantined-tests"' in page


def test_summaries_carry_one_line_per_change(store, tmp_path):
    from harness.render import write_reports

    reports = drive(store, noisy(np.random.default_rng(13), 30, 0.03, step=0.5))
    write_reports(reports[-1], tmp_path)
    markdown = (tmp_path / "summary.md").read_text()
    changes = [line for line in markdown.splitlines() if line.startswith("- **RT-004**")]
    assert len(changes) == 1 and "runtime +" in changes[0] and changes[0].endswith("since 0020abc")
    assert "since 0020abc" in (tmp_path / "summary.html").read_text()


# -- history where the runs happen -------------------------------------------------------------


def test_the_pr_gate_judges_prs_against_main_history_and_saves_only_main_runs():
    import yaml

    workflow = yaml.safe_load((RULES.parents[1] / ".github" / "workflows" / "pr-gate.yml").read_text())
    triggers = workflow[True] if True in workflow else workflow["on"]  # YAML 1.1 reads `on` as True
    assert triggers["push"]["branches"] == ["main"] and "pull_request" in triggers
    steps = workflow["jobs"]["gate"]["steps"]
    names = [step["name"] for step in steps]
    restore = next(s for s in steps if s.get("uses", "").startswith("actions/cache/restore@"))
    save = next(s for s in steps if s.get("uses", "").startswith("actions/cache/save@"))
    runs = [i for i, s in enumerate(steps) if "harness run" in s.get("run", "")]
    assert names.index(restore["name"]) < min(runs) < max(runs) < names.index(save["name"])
    assert "github.run_id" in restore["with"]["key"] and restore["with"]["restore-keys"].strip().endswith("-main-")
    assert save["with"]["key"] == restore["with"]["key"] and "runner.os" in save["with"]["key"]
    assert "github.event_name == 'push'" in save["if"]  # a pull request never writes main's history
    assert workflow["concurrency"]["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"


def test_a_further_change_after_an_open_one_is_a_new_alert(store):
    rng = np.random.default_rng(14)
    runtimes = np.r_[noisy(rng, 20, 0.02), noisy(rng, 12, 0.02, step=0.3, at=0), noisy(rng, 12, 0.02, step=1.0, at=0)]
    reports = drive(store, runtimes)
    changes = {a.evidence["change"]["first_run"]: a.fingerprint for r in reports for a in fired(r, "RT-004")}
    assert list(changes) == ["run-00020", "run-00032"] and len(set(changes.values())) == 2
    assert "RT-004" in [r.trigger for r in reports[min(i for i, r in enumerate(reports) if any(
        a.evidence["change"]["first_run"] == "run-00032" for a in fired(r, "RT-004")))].resolved]


def test_the_commit_range_reaches_back_to_the_last_run_of_another_commit(store):
    rules, sel = load_rules(RULES), selector()
    runtimes = noisy(np.random.default_rng(15), 30, 0.02, step=0.5)
    commits = [sha(0)] * 18 + [sha(1)] * 12  # the slower commit ran twice before its step showed
    reports = [record(store, rules, sel, SyntheticRun(runtime_s=float(v), sha=commits[i]), i) for i, v in enumerate(runtimes)]
    change = fired(reports[-1], "RT-004")[0].evidence["change"]
    assert change["first_sha"] == sha(1)[:7] and change["last_good_sha"] == sha(0)[:7]
