"""harness.github: the job summary within GitHub's 1 MiB and at most 10 annotations per level."""

from __future__ import annotations

import io
from pathlib import Path

from sample_projects import harness_main, make_project

from harness import github
from harness.report_model import Alert, Gate, GitInfo, HostInfo, RunInfo, RunReport

ACTIONS_ENV = {
    "GITHUB_ACTIONS": "true",
    "GITHUB_SERVER_URL": "https://github.example",
    "GITHUB_REPOSITORY": "lab/ptycho",
    "GITHUB_RUN_ID": "4242",
}


def _alert(i: int, severity: str, trigger: str = "FAIL-001", nodeid: str | None = None) -> Alert:
    return Alert(trigger=trigger, title="Integration workflow failure", severity=severity, owner="both", sla="<4 hours",
                 fingerprint=f"fp{i}", selector="integration", nodeid=nodeid, summary=f"failure number {i}")


def _report(alerts: list[Alert], fail_on: str = "high") -> RunReport:
    run = RunInfo(
        id="20250101T000000Z-pr", cadence="pr", started_at="2025-01-01T00:00:00Z", finished_at="2025-01-01T00:01:00Z",
        wall_s=60.0, status="failed", catalog="catalog.toml", rules="rules.yaml", root=".", jobs=2,
        harness_version="0.1.0", git=GitInfo(), host=HostInfo(hostname="h", host_key="k", platform="linux"),
        versions={},
    )
    return RunReport(run=run, gate=Gate(passed=False, fail_on=fail_on, exit_code=1), selectors=[], alerts=alerts)


def _run_dir(tmp_path: Path, summary: str) -> Path:
    directory = tmp_path / "20250101T000000Z-pr"
    directory.mkdir()
    (directory / "summary.md").write_text(summary, encoding="utf-8")
    return directory


def test_outside_actions_nothing_is_written(tmp_path: Path) -> None:
    step_summary = tmp_path / "step.md"
    out = io.StringIO()
    done = github.publish(_report([_alert(1, "critical")]), _run_dir(tmp_path, "# hi\n"),
                          env={"GITHUB_STEP_SUMMARY": str(step_summary)}, out=out)
    assert done is False and out.getvalue() == "" and not step_summary.exists()


def test_summary_is_appended_after_what_the_step_wrote_before(tmp_path: Path) -> None:
    step_summary = tmp_path / "step.md"
    step_summary.write_text("earlier output\n", encoding="utf-8")
    run_dir = _run_dir(tmp_path, "# Gate passed\n| selector | state |\n")
    assert github.publish(_report([]), run_dir, env={**ACTIONS_ENV, "GITHUB_STEP_SUMMARY": str(step_summary)},
                          out=io.StringIO())
    assert step_summary.read_text(encoding="utf-8") == "earlier output\n# Gate passed\n| selector | state |\n"


def test_an_oversized_summary_is_cut_within_1_mib_with_a_pointer_to_the_artifact(tmp_path: Path) -> None:
    step_summary = tmp_path / "step.md"
    step_summary.write_bytes(b"x" * 1000)  # an earlier command's output counts against the limit
    line = "| integration | failed | é 😀 naïve |\n"  # multi-byte characters must not be split
    summary = "# Gate failed\n" + line * 60_000  # about 2.5 MB
    run_dir = _run_dir(tmp_path, summary)
    github.publish(_report([]), run_dir, env={**ACTIONS_ENV, "GITHUB_STEP_SUMMARY": str(step_summary)},
                   out=io.StringIO())
    data = step_summary.read_bytes()
    assert len(data) <= github.STEP_SUMMARY_LIMIT_BYTES
    assert len(data) > github.STEP_SUMMARY_LIMIT_BYTES - 4096  # used, not thrown away
    text = data.decode("utf-8")  # valid UTF-8 throughout
    assert "Summary truncated" in text
    assert "https://github.example/lab/ptycho/actions/runs/4242#artifacts" in text
    assert "20250101T000000Z-pr" in text and f"{len(summary.encode()):,} bytes" in text
    body = text[1000:].split("\n\n---\n**Summary truncated**")[0]
    assert body.endswith("|\n") and summary.startswith(body)  # cut at a line end


def test_a_full_summary_file_gets_nothing_more(tmp_path: Path) -> None:
    step_summary = tmp_path / "step.md"
    step_summary.write_bytes(b"x" * github.STEP_SUMMARY_LIMIT_BYTES)
    github.publish(_report([]), _run_dir(tmp_path, "# more\n"),
                   env={**ACTIONS_ENV, "GITHUB_STEP_SUMMARY": str(step_summary)}, out=io.StringIO())
    assert step_summary.stat().st_size == github.STEP_SUMMARY_LIMIT_BYTES


def test_annotations_errors_at_or_above_fail_on_warnings_below_at_most_ten_each(tmp_path: Path) -> None:
    alerts = [_alert(i, "critical" if i % 2 else "high") for i in range(14)]
    alerts += [_alert(100 + i, "medium", trigger="ARTIF-002") for i in range(3)]
    out = io.StringIO()
    github.publish(_report(alerts), _run_dir(tmp_path, "# x\n"), env=ACTIONS_ENV, out=out)
    lines = out.getvalue().splitlines()
    errors = [line for line in lines if line.startswith("::error ")]
    warnings = [line for line in lines if line.startswith("::warning ")]
    assert len(errors) == 10 and len(warnings) == 3
    assert all("critical" in line for line in errors[:7])  # most severe first
    assert "5 more fired triggers" in errors[-1]  # 14 errors: 9 shown + a count of the other 5


def test_annotation_text_cannot_inject_workflow_commands(tmp_path: Path) -> None:
    evil = _alert(1, "critical", nodeid="tests/torch/test_x.py::test_y")
    evil.summary = "boom\n::add-mask::oops\r\n100%, title:x"
    out = io.StringIO()
    github.publish(_report([evil]), _run_dir(tmp_path, "# x\n"), env=ACTIONS_ENV, out=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("::error file=tests/torch/test_x.py,title=FAIL-001 (critical)%3A Integration workflow failure::")
    assert "boom%0A::add-mask::oops%0D%0A100%25, title:x" in lines[0]


def test_harness_run_writes_the_job_summary_and_annotations_itself(tmp_path: Path, monkeypatch, capsys) -> None:
    """The run flow's hook: inside Actions a plain `harness run` is all the workflow needs."""
    step_summary = tmp_path / "step-summary.md"
    for key, value in {**ACTIONS_ENV, "GITHUB_STEP_SUMMARY": str(step_summary), "TINY_FAIL_INTEGRATION": "1"}.items():
        monkeypatch.setenv(key, value)
    catalog = make_project(tmp_path / "project")
    code = harness_main("run", "--cadence", "pr", "--catalog", str(catalog), "--reports-dir", str(tmp_path / "r"),
                        "--progress", "none", "--no-history", "--json")
    captured = capsys.readouterr()
    assert code == 1
    run_dir = next((tmp_path / "r").glob("*-pr"))
    assert step_summary.read_text(encoding="utf-8") == (run_dir / "summary.md").read_text(encoding="utf-8")
    errors = [line for line in captured.err.splitlines() if line.startswith("::error ")]
    assert len(errors) == 1 and "PARITY-001" in errors[0] and "file=tests/test_integration.py" in errors[0]
    assert "::error" not in captured.out  # stdout stays the --json summary
