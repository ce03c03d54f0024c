"""``harness github publish`` against a loopback server answering like the GitHub REST API:
one PR comment created then edited in place, one Check Run per head SHA with annotations paged
at 50 per request, rate limits waited out (and reported) within a bound, the token never shown."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from github_server import TOKEN, FakeGitHub
from sample_projects import harness_main

from harness.github_publish import MARKER, read_state
from harness.history import HistoryStore
from harness.report_model import (
    Counts,
    Gate,
    GitInfo,
    HostInfo,
    RunInfo,
    RunReport,
    SelectorFiles,
    SelectorResult,
    TestRecord,
)

SHA_A = "a" * 40
SHA_B = "b" * 40
BASE = "c" * 40
PR = 7


def _report(run_id: str, failing: list[str], passing: list[str], *, sha: str, runtime: float = 40.0,
            root: Path | None = None) -> RunReport:
    tests = [TestRecord(nodeid=f"tests/test_integration.py::{name}", outcome="failed", failed_stage="call",
                        message=f"AssertionError: {name} went wrong") for name in failing]
    tests += [TestRecord(nodeid=f"tests/test_integration.py::{name}", outcome="passed") for name in passing]
    selector = SelectorResult(
        name="integration", title="Integration", owner="TEST-PYTORCH-001", argv=[], env={},
        state="failed" if failing else "passed", reason=f"{len(failing)} failed", runtime_s=runtime, wall_s=runtime,
        counts=Counts(total=len(tests), collected=len(tests), passed=len(passing), failed=len(failing)), tests=tests,
        files=SelectorFiles(pytest_json="selectors/integration/pytest.json", stdout="s.log", stderr="e.log", basetemp="tmp"),
    )
    from harness.report_model import Alert

    alerts = [Alert(trigger="FAIL-001", title="Integration workflow failure", severity="high", owner="both",
                    sla="<4 hours", fingerprint=f"fp-{name}", selector="integration",
                    nodeid=f"tests/test_integration.py::{name}", summary=f"{name}: AssertionError")
              for name in failing]
    run = RunInfo(id=run_id, cadence="pr", started_at="2026-12-07T10:00:00Z", finished_at="2026-12-07T10:01:00Z",
                  wall_s=60.0, status="failed" if failing else "passed", catalog="c.toml", rules="r.yaml",
                  root=str(root or "."), jobs=2, harness_version="0.1.0", git=GitInfo(sha=sha, branch="main"),
                  host=HostInfo(hostname="h", host_key="k", platform="linux"), versions={})
    return RunReport(run=run, gate=Gate(passed=not failing, fail_on="high", exit_code=1 if failing else 0,
                                        blocking=[a.fingerprint for a in alerts]),
                     selectors=[selector], alerts=alerts)


def _run_dir(reports: Path, report: RunReport) -> Path:
    """A published run directory: report.json and the selector's pytest JSON (for file and line)."""
    directory = reports / report.run.id
    (directory / "selectors" / "integration").mkdir(parents=True)
    (directory / "report.json").write_text(report.to_json(), encoding="utf-8")
    tests = []
    for i, test in enumerate(report.selectors[0].tests):
        entry = {"nodeid": test.nodeid, "outcome": test.outcome, "lineno": 10 * i}
        if test.outcome == "failed":
            entry["call"] = {"outcome": "failed", "crash": {"path": str(Path(report.run.root) / "tests/test_integration.py"),
                                                             "lineno": 10 * i + 3, "message": test.message}}
        tests.append(entry)
    (directory / "selectors" / "integration" / "pytest.json").write_text(json.dumps({"tests": tests}), encoding="utf-8")
    return directory


@pytest.fixture
def github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    server = FakeGitHub().start()
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"number": PR, "pull_request": {"number": PR, "head": {"sha": SHA_A},
                                                                "base": {"sha": BASE, "ref": "main"}}}))
    for key in list(os.environ):  # no CI variables of the machine running the tests
        if key.startswith(("GITHUB_", "HARNESS_")):
            monkeypatch.delenv(key)
    for key, value in {"GITHUB_API_URL": server.api_url, "GITHUB_REPOSITORY": "lab/ptycho", "GITHUB_SHA": "d" * 40,
                       "GITHUB_EVENT_PATH": str(event), "GITHUB_TOKEN": TOKEN, "GITHUB_SERVER_URL": "https://github.example",
                       "GITHUB_RUN_ID": "4242"}.items():
        monkeypatch.setenv(key, value)
    server.event_path = event  # type: ignore[attr-defined]
    yield server
    server.stop()


def _set_head(server: FakeGitHub, sha: str) -> None:
    data = json.loads(server.event_path.read_text())  # type: ignore[attr-defined]
    data["pull_request"]["head"]["sha"] = sha
    server.event_path.write_text(json.dumps(data))  # type: ignore[attr-defined]


def _publish(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict, str]:
    code = harness_main("github", "publish", *args, "--json", "--no-history")
    out, err = capsys.readouterr()
    assert TOKEN not in out and TOKEN not in err
    return code, json.loads(out), err


def _ours(server: FakeGitHub) -> list[dict]:
    return [c for c in server.state.comments.get(PR, []) if MARKER in c["body"]]


def test_publish_twice_one_comment_created_then_edited_one_check_run_per_head_sha(
        github: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    github.seed_comments(PR, [f"review comment {i}" for i in range(130)])  # ours lands on page 2 of the listing
    reports = tmp_path / "reports"
    first = _run_dir(reports, _report("20261207T100000Z-pr", [f"test_{i}" for i in range(120)], ["test_ok"],
                                      sha=SHA_A, root=tmp_path))

    code, result, _ = _publish(capsys, str(first))
    assert code == 0 and result["warnings"] == []
    assert result["comment"]["action"] == "created"
    assert result["check_run"]["action"] == "created" and result["check_run"]["conclusion"] == "failure"
    (run_a,) = github.state.check_runs
    assert run_a["head_sha"] == SHA_A and run_a["name"] == "harness pr" and run_a["status"] == "completed"
    assert run_a["output"]["title"].startswith("gate failed: FAIL-001")
    # 120 annotations: one create with 50, then updates of 50 and 20 (GitHub takes at most 50 a request)
    sent = [len((r.body.get("output") or {}).get("annotations") or [])
            for r in github.state.requests if "/check-runs" in r.path and r.method in ("POST", "PATCH")]
    assert sent == [50, 50, 20]
    annotations = github.state.annotations[run_a["id"]]
    assert len(annotations) == 120
    assert {a["path"] for a in annotations} == {"tests/test_integration.py"}
    assert annotations[5]["start_line"] == 53 and annotations[5]["annotation_level"] == "failure"  # the crash line
    assert "triggers: FAIL-001" in annotations[5]["message"]
    # the comment listing was followed through its Link header to page 2
    listings = [r for r in github.state.requests if r.path.endswith(f"/issues/{PR}/comments") and r.method == "GET"]
    assert [r.query.get("page", "1") for r in listings] == ["1", "2"]
    (comment,) = _ours(github)
    assert "gate failed" in comment["body"] and "FAIL-001" in comment["body"]
    assert "https://github.example/lab/ptycho/actions/runs/4242" in comment["body"]

    # a new push: test_0 fixed, test_new broken; the same comment is edited, a second check run is made
    _set_head(github, SHA_B)
    second = _run_dir(reports, _report("20261207T110000Z-pr", ["test_new", *[f"test_{i}" for i in range(1, 120)]],
                                       ["test_ok", "test_0"], sha=SHA_B, runtime=50.0, root=tmp_path))
    code, result, _ = _publish(capsys, str(second))
    assert code == 0 and result["comment"]["action"] == "updated" and result["comment"]["id"] == comment["id"]
    (comment,) = _ours(github)
    assert len(github.state.comments[PR]) == 131  # never a second comment
    body = comment["body"]
    assert "this PR's previous run (20261207T100000Z-pr" in body
    assert "New failures (1): `integration: tests/test_integration.py::test_new`" in body
    assert "Fixed (1): `integration: tests/test_integration.py::test_0`" in body
    assert "`integration` runtime 40.0 s → 50.0 s, +10.0 s (+25%)" in body
    assert read_state(body)["run"] == "20261207T110000Z-pr"
    assert [r["head_sha"] for r in github.state.check_runs] == [SHA_A, SHA_B]

    # the same head again (a re-run): its check run is updated, not duplicated, annotations not repeated
    code, result, _ = _publish(capsys, str(second))
    assert result["check_run"]["action"] == "updated" and result["check_run"]["annotations"] == 0
    assert [r["head_sha"] for r in github.state.check_runs] == [SHA_A, SHA_B]
    assert len(github.state.annotations[github.state.check_runs[1]["id"]]) == 120


def test_a_403_rate_limit_is_waited_out_and_reported(github: FakeGitHub, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    run_dir = _run_dir(tmp_path / "reports", _report("20261207T100000Z-pr", ["test_a"], [], sha=SHA_A, root=tmp_path))
    github.refuse(403, {"Retry-After": "1", "x-ratelimit-remaining": "0"}, "API rate limit exceeded")
    github.refuse(429, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 1)},
                  "secondary rate limit")
    started = time.monotonic()
    code, result, err = _publish(capsys, str(run_dir))
    assert time.monotonic() - started >= 1.0
    assert code == 0 and result["warnings"] == []
    assert result["check_run"]["action"] == "created" and result["comment"]["action"] == "created"
    assert len(result["rate_limits"]) == 2
    assert "rate limited by GitHub, waited 1.0 s (Retry-After)" in result["rate_limits"][0]
    assert "(x-ratelimit-reset)" in result["rate_limits"][1]
    assert "rate limited by GitHub, waited" in err  # reported on stderr too


def test_a_rate_limit_beyond_the_bound_is_reported_never_raised(github: FakeGitHub, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    run_dir = _run_dir(tmp_path / "reports", _report("20261207T100000Z-pr", ["test_a"], [], sha=SHA_A, root=tmp_path))
    for _ in range(2):
        github.refuse(403, {"Retry-After": "3600"}, "API rate limit exceeded")
    code, result, err = _publish(capsys, str(run_dir), "--max-wait", "5")
    assert code == 0  # the gate's verdict is the run's; this step only reports
    assert len(result["warnings"]) == 2 and all("given up" in w for w in result["warnings"])
    assert "Traceback" not in err
    github.refuse(403, {"Retry-After": "3600"}, "API rate limit exceeded")
    code = harness_main("github", "publish", str(run_dir), "--max-wait", "5", "--strict", "--no-history")
    assert code == 1


def test_outside_a_pull_request_only_the_check_run(github: FakeGitHub, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    github.event_path.write_text(json.dumps({"ref": "refs/heads/main", "after": SHA_A}))  # type: ignore[attr-defined]
    run_dir = _run_dir(tmp_path / "reports", _report("20261207T100000Z-pr", [], ["test_ok"], sha=SHA_A, root=tmp_path))
    code, result, _ = _publish(capsys, str(run_dir))
    assert code == 0 and result["comment"]["action"] == "skipped"
    assert result["check_run"]["conclusion"] == "success" and github.state.check_runs[0]["head_sha"] == "d" * 40
    assert not any("/comments" in r.path for r in github.state.requests)


def test_only_on_change_leaves_an_unchanged_verdict_alone(github: FakeGitHub, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture) -> None:
    reports = tmp_path / "reports"
    first = _run_dir(reports, _report("20261207T100000Z-pr", ["test_a"], [], sha=SHA_A, root=tmp_path))
    second = _run_dir(reports, _report("20261207T110000Z-pr", ["test_a"], [], sha=SHA_A, runtime=45, root=tmp_path))
    third = _run_dir(reports, _report("20261207T120000Z-pr", [], ["test_a"], sha=SHA_A, root=tmp_path))
    assert _publish(capsys, str(first), "--only-on-change")[1]["comment"]["action"] == "created"
    assert _publish(capsys, str(second), "--only-on-change")[1]["comment"]["action"] == "unchanged"
    assert "20261207T100000Z-pr" in _ours(github)[0]["body"]
    assert _publish(capsys, str(third), "--only-on-change")[1]["comment"]["action"] == "updated"
    assert "gate passed" in _ours(github)[0]["body"]


def test_changes_since_the_base_commit_come_from_history(github: FakeGitHub, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture) -> None:
    reports = tmp_path / "reports"
    history = tmp_path / "history.sqlite"
    base = _report("20261206T100000Z-pr", ["test_old"], ["test_a"], sha=BASE, runtime=30.0, root=tmp_path)
    with HistoryStore.open(history) as store, store.recording(base):
        pass
    now = _run_dir(reports, _report("20261207T100000Z-pr", ["test_a"], ["test_old"], sha=SHA_A, runtime=36.0,
                                    root=tmp_path))
    code = harness_main("github", "publish", str(now), "--history", str(history), "--json")
    capsys.readouterr()
    assert code == 0
    body = _ours(github)[0]["body"]
    assert f"Since base {BASE[:7]} (run 20261206T100000Z-pr" in body
    assert "New failures (1): `integration: tests/test_integration.py::test_a`" in body
    assert "Fixed (1): `integration: tests/test_integration.py::test_old`" in body
    assert "30.0 s → 36.0 s, +6.0 s (+20%)" in body


def test_a_read_only_token_is_reported_and_the_token_never_shown(github: FakeGitHub, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = _run_dir(tmp_path / "reports", _report("20261207T100000Z-pr", ["test_a"], [], sha=SHA_A, root=tmp_path))
    github.refuse(403, {}, "Resource not accessible by integration")
    github.refuse(403, {}, "Resource not accessible by integration")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    code, result, err = _publish(capsys, str(run_dir))
    assert code == 0
    assert result["warnings"] == [
        "check run not published: GET /repos/lab/ptycho/commits/" + SHA_A
        + "/check-runs: HTTP 403 Resource not accessible by integration",
        f"pull-request comment not published: GET /repos/lab/ptycho/issues/{PR}/comments: HTTP 403 "
        "Resource not accessible by integration",
    ]
    assert "::warning title=harness github publish::check run not published" in err


def test_configuration_errors_name_the_variable(github: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = _run_dir(tmp_path / "reports", _report("20261207T100000Z-pr", [], ["t"], sha=SHA_A, root=tmp_path))
    monkeypatch.delenv("GITHUB_TOKEN")
    assert harness_main("github", "publish", str(run_dir), "--no-history") == 2
    assert "GITHUB_TOKEN is not set" in capsys.readouterr().err
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", "not a repo")
    assert harness_main("github", "publish", str(run_dir), "--no-history") == 2
    assert "GITHUB_REPOSITORY: expected OWNER/REPO" in capsys.readouterr().err
    monkeypatch.setenv("GITHUB_REPOSITORY", "lab/ptycho")
    assert harness_main("github", "publish", "--reports-dir", str(tmp_path / "empty"), "--no-history") == 2
    assert "no run directory" in capsys.readouterr().err
    assert not github.state.requests


def test_the_default_run_directory_is_the_latest(github: FakeGitHub, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    reports = tmp_path / "reports"
    _run_dir(reports, _report("20261207T100000Z-pr", ["test_a"], [], sha=SHA_A, root=tmp_path))
    _run_dir(reports, _report("20261207T110000Z-pr", [], ["test_a"], sha=SHA_A, root=tmp_path))
    code, result, _ = _publish(capsys, "--reports-dir", str(reports))
    assert code == 0 and result["run"] == "20261207T110000Z-pr" and result["check_run"]["conclusion"] == "success"


def test_a_selector_the_base_never_ran_has_no_new_failures(tmp_path: Path) -> None:
    from harness.github_publish import changes_since_base

    history = tmp_path / "history.sqlite"
    base = _report("20261206T100000Z-pr", [], ["test_a"], sha=BASE, root=tmp_path)
    with HistoryStore.open(history) as store, store.recording(base):
        pass
    now = _report("20261207T100000Z-pr", ["test_a"], [], sha=SHA_A, root=tmp_path)
    other = now.selectors[0].model_copy(update={"name": "backend_selection"})
    now.selectors.append(other)
    with HistoryStore.open(history) as store:
        changes = changes_since_base(store, now, BASE)
    assert changes is not None
    assert changes.new_failures == ["integration: tests/test_integration.py::test_a"]  # not backend_selection's


def test_change_point_lines_are_in_the_comment() -> None:
    from harness.github_publish import GitHubTarget, comment_body
    from harness.report_model import Alert

    report = _report("20261207T100000Z-pr", [], ["test_a"], sha=SHA_A)
    report.alerts.append(Alert(trigger="RT-004", title="runtime shift", severity="warning", owner="o", sla="1d",
                               fingerprint="cp", selector="integration", summary="integration: runtime shifted",
                               evidence={"headline": "runtime +38 % (35.1 s → 48.4 s) since abc1234"}))
    body = comment_body(report, GitHubTarget(api_url="http://x", repository="lab/ptycho", head_sha=SHA_A), None)
    assert "**Change points**" in body
    assert "- **RT-004** `integration`: runtime +38 % (35.1 s → 48.4 s) since abc1234" in body
