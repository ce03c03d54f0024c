"""``harness evaluate`` on JUnit XML: the same states and triggers as the pytest JSON report of the
same session, what JUnit lacks said in the output, unsafe XML refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sample_projects import harness_main, make_project

from harness.errors import ConfigError
from harness.junit_report import detect_format, nodeid_of, parse_junit_text

TESTS = '''\
import pytest

def test_ok(record_property):
    record_property("amplitude_ssim", 0.91)

def test_run_pytorch_train_save_load_infer():
    raise RuntimeError("decoder output shape mismatch: expected (4, 64, 64)")

@pytest.fixture
def broken():
    raise RuntimeError("fixture setup broke")

def test_setup_error(broken):
    pass

@pytest.mark.skip(reason="no torch here")
def test_skipped():
    pass

@pytest.mark.xfail(reason="known gap")
def test_expected_failure():
    assert False

class TestGroup:
    def test_inner(self):
        assert 1 == 2, "inner values differ"
'''


def _pytest(project: Path, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "junit_family=xunit1",
                    *args], cwd=project, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def both_formats(tmp_path: Path) -> tuple[Path, Path, Path]:
    """One pytest session written as JUnit XML and as pytest-json-report."""
    catalog = make_project(tmp_path / "project")
    project = tmp_path / "project"
    (project / "tests" / "test_mixed.py").write_text(TESTS, encoding="utf-8")
    _pytest(project, "tests/test_mixed.py", f"--junitxml={tmp_path / 'junit.xml'}", "--json-report",
            f"--json-report-file={tmp_path / 'report.json'}")
    return catalog, tmp_path / "junit.xml", tmp_path / "report.json"


def _evaluate(capsys: pytest.CaptureFixture, catalog: Path, report: Path, *extra: str) -> tuple[int, dict]:
    code = harness_main("evaluate", str(report), "--selector", "integration", "--catalog", str(catalog),
                        "--no-history", "--json", *extra)
    return code, json.loads(capsys.readouterr().out)


def _alerts(result: dict) -> set[tuple[str, str | None]]:
    return {(alert["trigger"], alert["nodeid"]) for alert in result["alerts"]}


def test_junit_is_classified_like_the_json_report_of_the_same_session(both_formats, capsys) -> None:
    catalog, junit, report = both_formats
    code_json, from_json = _evaluate(capsys, catalog, report)
    code_xml, from_xml = _evaluate(capsys, catalog, junit)
    assert from_xml["format"] == "junit" and from_json["format"] == "pytest-json"
    assert code_xml == code_json == 1
    assert from_xml["state"] == from_json["state"] == "failed"
    for outcome in ("passed", "failed", "error", "skipped", "xfailed"):
        assert from_xml["counts"][outcome] == from_json["counts"][outcome], outcome
    assert from_xml["counts"]["error"] == 1 and from_xml["counts"]["failed"] == 2
    assert _alerts(from_xml) == _alerts(from_json)
    assert ("PARITY-001", "tests/test_mixed.py::test_run_pytorch_train_save_load_infer") in _alerts(from_xml)
    assert any(nodeid == "tests/test_mixed.py::TestGroup::test_inner" for _, nodeid in _alerts(from_xml))
    assert from_json["lacks"] == []
    lacks = " ".join(from_xml["lacks"])
    assert "no collected/deselected counts" in lacks and "no process exit code" in lacks
    assert "no artifacts or figures" not in lacks  # record_property wrote <properties>


def test_text_output_says_what_junit_lacks(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    catalog = make_project(tmp_path / "project")
    xml = tmp_path / "other-ci.xml"
    xml.write_text('<?xml version="1.0"?>\n<testsuite name="java" tests="2" time="1.5">'
                   '<testcase classname="org.lab.PtychoTest" name="reconstructs" time="1.0"/>'
                   '<testcase classname="org.lab.PtychoTest" name="loads" time="0.5"/></testsuite>', encoding="utf-8")
    assert harness_main("evaluate", str(xml), "--selector", "integration", "--catalog", str(catalog), "--no-history") == 0
    out = capsys.readouterr().out
    assert "integration: passed (2 passed)" in out
    assert "not evaluated: JUnit XML without <properties>: no artifacts or figures recorded" in out


def test_nodeids_from_file_attribute_dotted_classname_and_other_languages() -> None:
    from xml.etree.ElementTree import fromstring

    assert nodeid_of(fromstring('<testcase classname="tests.torch.test_x.TestA" name="test_b" file="tests/torch/test_x.py"/>')) \
        == "tests/torch/test_x.py::TestA::test_b"
    assert nodeid_of(fromstring('<testcase classname="tests.torch.test_x.TestA" name="test_b"/>')) \
        == "tests/torch/test_x.py::TestA::test_b"
    assert nodeid_of(fromstring('<testcase classname="tests.test_y" name="test_c[1-2]"/>')) == "tests/test_y.py::test_c[1-2]"
    assert nodeid_of(fromstring('<testcase classname="org.lab.PtychoTest" name="loads"/>')) == "org.lab.PtychoTest::loads"


def test_a_collection_error_is_its_own_state(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    catalog = make_project(tmp_path / "project")
    project = tmp_path / "project"
    (project / "tests" / "test_broken.py").write_text("import no_such_module_here\n", encoding="utf-8")
    _pytest(project, "tests/test_broken.py", f"--junitxml={tmp_path / 'junit.xml'}", "--json-report",
            f"--json-report-file={tmp_path / 'report.json'}")
    code, result = _evaluate(capsys, catalog, tmp_path / "junit.xml")
    _, from_json = _evaluate(capsys, catalog, tmp_path / "report.json")
    assert code == 1 and result["state"] == from_json["state"] == "collection_error"
    assert result["reason"] == from_json["reason"]  # "collection failed: tests/test_broken.py: ModuleNotFoundError..."
    assert _alerts(result) == _alerts(from_json) and result["alerts"]


@pytest.mark.parametrize("xml, problem", [
    ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
     '<testsuite><testcase name="&lol2;"/></testsuite>', "refused unsafe XML"),
    ('<?xml version="1.0"?><!DOCTYPE t [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
     '<testsuite><testcase name="&xxe;"/></testsuite>', "refused unsafe XML"),
    ('<testsuite><testcase name="a">', "not well-formed XML"),
    ('<report><testcase name="a"/></report>', "the root element is <report>, expected <testsuites> or <testsuite>"),
])
def test_unsafe_or_broken_xml_is_refused_with_the_file_named(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                             xml: str, problem: str) -> None:
    catalog = make_project(tmp_path / "project")
    path = tmp_path / "bad.xml"
    path.write_text(xml, encoding="utf-8")
    assert harness_main("evaluate", str(path), "--selector", "integration", "--catalog", str(catalog),
                        "--no-history") == 2
    err = capsys.readouterr().err
    assert f"{path}: {problem}" in err and "root:" not in err  # never the content of /etc/passwd


def test_format_is_detected_and_a_wrong_forced_format_is_a_usage_error(both_formats, capsys) -> None:
    catalog, junit, report = both_formats
    assert detect_format(junit.read_text()) == "junit" and detect_format(report.read_text()) == "pytest-json"
    assert harness_main("evaluate", str(junit), "--format", "pytest-json", "--selector", "integration",
                        "--catalog", str(catalog), "--no-history") == 2
    assert "--format pytest-json given, but the file is XML" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="neither JUnit XML"):
        detect_format("plain text")
    parsed = parse_junit_text(junit.read_text(), "junit.xml")
    assert parsed.has_properties and parsed.report.summary.total == 6
