"""Every way a pytest process can end gets a state of its own; only a clean run is "passed".

One harness run over a sample project with a selector per case (they run two at a time),
then one test per case on its report.json.
"""

from __future__ import annotations

import json

import pytest
from sample_projects import SampleProject

CASES = {
    "clean": ("tests/test_clean.py", """
        import pytest
        def test_one(): assert True
        @pytest.mark.xfail(reason="known bug", strict=True)
        def test_known_bug(): assert 0
        @pytest.mark.skip(reason="not here")
        def test_skipped(): pass
    """, {}),
    "signal_timeout": ("tests/test_slow.py", """
        import time
        def test_hangs(): time.sleep(30)
    """, {"test_timeout_s": 1}),
    "exits": ("tests/test_exit.py", """
        import os
        def test_exit(): os._exit(3)
    """, {}),
    "aborts": ("tests/test_abort.py", """
        import os
        def test_abort(): os.abort()
    """, {}),
    "collection": ("tests/test_broken.py", """
        def test_fine(): pass
        def oops(:
    """, {}),
    "empty": ("tests/test_empty.py", """
        def test_a(): pass
    """, {"args": ["tests/test_empty.py", "-k", "no_such_test"]}),
    "missing_file": ("tests/test_present.py", """
        def test_present(): pass
    """, {"args": ["tests/test_absent.py::test_gone"]}),
    "flaky": ("tests/test_flaky.py", """
        import pathlib
        def test_second_try_passes(tmp_path_factory):
            marker = pathlib.Path(tmp_path_factory.getbasetemp()).parent / "flaky-marker"
            if not marker.exists():
                marker.write_text("failed once")
                raise AssertionError("first attempt fails")
    """, {"reruns": 2}),
    "flaky_strict": ("tests/test_flaky_strict.py", """
        import pathlib
        def test_second_try_passes(tmp_path_factory):
            marker = pathlib.Path(tmp_path_factory.getbasetemp()).parent / "flaky-marker"
            if not marker.exists():
                marker.write_text("failed once")
                raise AssertionError("first attempt fails")
    """, {"reruns": 1, "args": ["tests/test_flaky_strict.py", "--fail-on-flaky"]}),
    "harness_timeout": ("tests/test_blocked.py", """
        import signal, time
        def test_ignores_alarm():
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(60)
    """, {"test_timeout_s": 1, "timeout_s": 2}),
    "thread_timeout": ("tests/test_thread.py", """
        import time
        def test_hangs(): time.sleep(30)
    """, {"test_timeout_s": 1, "timeout_method": "thread"}),
    "truncated": ("tests/test_session.py", """
        import time
        def test_a(): time.sleep(0.6)
        def test_b(): time.sleep(0.6)
        def test_c(): time.sleep(0.6)
    """, {"args": ["tests/test_session.py", "--session-timeout=0.5"]}),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> tuple[SampleProject, object]:
    project = SampleProject(tmp_path_factory.mktemp("states"))
    selectors = {}
    for name, (path, source, fields) in CASES.items():
        project.write(path, source)
        selectors[name] = {"args": [path], **fields}
    project.catalog(selectors)
    result = project.run("--jobs", "2", "--no-history")  # history has its own tests
    return project, result


def test_the_gate_fails_and_says_where_the_report_is(zoo):
    project, result = zoo
    assert result.returncode == 1, result.stderr
    assert f"report written to {result.run_dirs[-1]}" in result.stdout
    assert result.report["gate"]["passed"] is False
    assert result.report["run"]["status"] == "failed"


def test_clean_run_with_xfail_and_skip_is_passed(zoo):
    _, result = zoo
    clean = result.selector("clean")
    assert clean["state"] == "passed"
    assert (clean["counts"]["passed"], clean["counts"]["xfailed"], clean["counts"]["skipped"]) == (1, 1, 1)
    assert result.alerts(selector="clean") == []


def test_pytest_timeout_fails_the_test_with_its_message(zoo):
    _, result = zoo
    slow = result.selector("signal_timeout")
    assert slow["state"] == "failed"
    test = slow["tests"][0]
    assert "Timeout" in test["message"] and ">1.0s" in test["message"]
    assert [a["trigger"] for a in result.alerts(selector="signal_timeout")] == ["TEST-001"]


@pytest.mark.parametrize("name, signal", [("exits", None), ("aborts", "SIGABRT")])
def test_a_crashed_interpreter_is_report_missing(zoo, name, signal):
    _, result = zoo
    crashed = result.selector(name)
    assert crashed["state"] == "report_missing"
    assert crashed["signal"] == signal
    if signal is None:
        assert crashed["exit_code"] == 3
        assert "exited with status 3" in crashed["reason"]
    assert crashed["files"]["pytest_json"] is None
    assert [a["trigger"] for a in result.alerts(selector=name)] == ["HARNESS-001"]


def test_collection_error_is_its_own_state(zoo):
    _, result = zoo
    broken = result.selector("collection")
    assert broken["state"] == "collection_error"
    assert broken["report_exitcode"] == 2
    collector = next(t for t in broken["tests"] if t["kind"] == "collector")
    assert "SyntaxError" in collector["message"] or "invalid syntax" in collector["longrepr"]
    # The harness owner's alert names the module and the error; no call-failure trigger fires.
    assert broken["reason"].startswith("collection failed: tests/test_broken.py: ")
    assert collector["message"].splitlines()[0] in broken["reason"]
    assert {a["trigger"] for a in result.alerts(selector="collection")} == {"HARNESS-001"}


def test_no_tests_is_not_passed(zoo):
    _, result = zoo
    empty = result.selector("empty")
    assert empty["state"] == "did_not_run"
    assert empty["exit_code"] == 5
    assert empty["reason"] == "all 1 collected tests deselected"
    assert [a["trigger"] for a in result.alerts(selector="empty")] == ["HARNESS-002"]


def test_rerun_outcome_is_flaky_and_warns(zoo):
    _, result = zoo
    flaky = result.selector("flaky")
    assert flaky["state"] == "flaky"
    assert flaky["tests"][0]["outcome"] == "rerun"
    alerts = result.alerts(selector="flaky")
    assert [(a["trigger"], a["severity"]) for a in alerts] == [("FLAKY-001", "warning")]
    assert flaky["report_exitcode"] == 0


def test_a_hang_pytest_timeout_cannot_break_is_killed_by_the_harness(zoo):
    _, result = zoo
    hung = result.selector("harness_timeout")
    assert hung["state"] == "timeout"
    assert 2 <= hung["wall_s"] < 15
    assert "HARNESS-001" in {a["trigger"] for a in result.alerts(selector="harness_timeout")}


def test_thread_timeout_kills_pytest_and_leaves_no_report(zoo):
    _, result = zoo
    killed = result.selector("thread_timeout")
    assert killed["state"] == "report_missing"
    assert killed["exit_code"] != 0


def test_session_timeout_leaves_a_truncated_run(zoo):
    _, result = zoo
    cut = result.selector("truncated")
    assert cut["state"] == "truncated", cut["reason"]
    assert cut["counts"]["collected"] > cut["counts"]["total"]


def test_run_directory_holds_every_selectors_files(zoo):
    _, result = zoo
    run_dir = result.run_dirs[-1]
    for name in ("report.json", "summary.md", "summary.html", "env.txt"):
        assert (run_dir / name).stat().st_size > 0, name
    env_txt = (run_dir / "env.txt").read_text()
    assert "python -V" in env_txt and "pip show torch lightning" in env_txt and "CPU(s)" in env_txt
    clean = result.selector("clean")
    assert json.loads((run_dir / clean["files"]["pytest_json"]).read_text())["exitcode"] == 0
    assert "1 passed, 1 skipped, 1 xfailed" in (run_dir / clean["files"]["stdout"]).read_text()
    assert clean["files"]["basetemp"] == "selectors/clean/tmp"
    assert f"--basetemp={run_dir}/selectors/clean/tmp" in clean["argv"]  # paths as published, not as staged
    flaky_tmp = run_dir / result.selector("flaky")["files"]["basetemp"]
    assert flaky_tmp.is_dir()  # its tmp_path_factory lives in the run directory (test_triggers checks files)
    assert not list((result.reports_dir / ".staging").glob("*.[0-9]*"))


def test_a_selector_naming_a_missing_file_is_a_usage_error_that_says_so(zoo):
    _, result = zoo
    missing = result.selector("missing_file")
    assert missing["state"] == "usage_error" and missing["exit_code"] == 4
    assert "file or directory not found: tests/test_absent.py::test_gone" in missing["reason"]
    assert [a["trigger"] for a in result.alerts(selector="missing_file")] == ["HARNESS-001"]


def test_fail_on_flaky_exit_7_is_recorded_beside_the_reports_own_exit_code(zoo):
    _, result = zoo
    strict = result.selector("flaky_strict")
    assert strict["state"] == "flaky"
    assert (strict["exit_code"], strict["report_exitcode"]) == (7, 0)
