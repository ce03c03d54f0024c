"""JUnit XML in: another CI's test results, classified with the same states and rules.

The XML is read as the pytest-json-report model (``harness.pytest_report.PytestJsonReport``) so
that one classification (``classify``) and one rules engine apply to both formats. Parsed with
``defusedxml``: an entity declaration (billion laughs), an external entity or a DTD fetch is
refused, never expanded.

What JUnit does not carry, and is therefore never invented (``lacks`` says it in the output):

* collected / deselected counts: a session cut short looks complete (``truncated`` is never
  detected); the process exit code (unless ``--exit-code`` is given);
* per-stage durations: a test's ``time`` is taken as its call duration;
* artifacts and figures, unless the tests wrote ``<properties>`` (pytest's ``record_property``
  does, with ``junit_family=xunit1``); without them ARTIF-001/002 and the figure rules are skipped.

Mapping (pytest's ``--junitxml`` and the common xUnit dialects): ``<failure>`` is ``failed``,
``<error>`` is ``error`` (pytest's "failed on setup/teardown" names the stage; its "collection
failure" is a failed collector), ``<skipped type="pytest.xfail">`` is ``xfailed``, other
``<skipped>`` is ``skipped``, ``<flakyFailure>``/``<rerunFailure>`` without a final failure is
``rerun``. Node ids: ``file::Class::name`` from the ``file`` attribute or a dotted ``classname``
whose module part looks like a pytest module (``test_*``/``*_test``), else ``classname::name``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from xml.etree.ElementTree import Element, ParseError

from harness.errors import ConfigError
from harness.pytest_report import PytestJsonReport, parse_report_text

Format = Literal["junit", "pytest-json"]
_CRASH_LINE = re.compile(r"^(?P<path>[^\s:][^:\n]*\.py):(?P<line>\d+): (?P<message>.*)$", re.MULTILINE)
_STAGE = re.compile(r"failed on (setup|teardown)", re.IGNORECASE)


@dataclass
class JUnitReport:
    report: PytestJsonReport
    has_properties: bool
    lacks: list[str] = field(default_factory=list)
    suites: int = 0


def detect_format(text: str, source: str = "<report>") -> Format:
    """``junit`` when the text is XML, ``pytest-json`` when it is a JSON object."""
    head = text.lstrip("\ufeff \t\r\n")[:1]
    if head == "<":
        return "junit"
    if head == "{":
        return "pytest-json"
    raise ConfigError(f"{source}: neither JUnit XML (starts with '<') nor a pytest-json-report file (a JSON object)")


def _local(tag: object) -> str:
    """The tag without an XML namespace (some producers namespace their JUnit)."""
    return str(tag).rsplit("}", 1)[-1]


def _children(element: Element, name: str) -> list[Element]:
    return [child for child in element if _local(child.tag) == name]


def nodeid_of(case: Element) -> str:
    name = case.get("name") or "<unnamed>"
    classname = case.get("classname") or ""
    file = case.get("file")
    if file:
        file = file.replace("\\", "/")
        module = file[:-3].replace("/", ".") if file.endswith(".py") else None
        classes = classname[len(module) + 1:] if module and classname.startswith(module + ".") else ""
        return "::".join(part for part in (file, *classes.split("."), name) if part)
    parts = classname.split(".") if classname else []
    for index, part in enumerate(parts):
        if part.startswith("test_") or part.endswith("_test"):
            path = "/".join(parts[: index + 1]) + ".py"
            return "::".join([path, *parts[index + 1:], name])
    return f"{classname}::{name}" if classname else name


def _seconds(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value else 0.0
    except ValueError:
        return 0.0


def _crash(message: str | None, text: str | None) -> dict[str, Any]:
    """pytest's failure text ends with ``path.py:LINE: Error``: that is the crash location."""
    found = list(_CRASH_LINE.finditer(text or ""))
    crash: dict[str, Any] = {"message": (message or "").strip() or (found[-1].group("message") if found else "")}
    if found:
        crash["path"], crash["lineno"] = found[-1].group("path"), int(found[-1].group("line"))
    return crash


def _properties(case: Element) -> list[dict[str, str]]:
    return [{prop.get("name") or "": prop.get("value") if prop.get("value") is not None else (prop.text or "")}
            for block in _children(case, "properties") for prop in _children(block, "property") if prop.get("name")]


def _test_entry(case: Element, nodeid: str) -> tuple[dict[str, Any], bool]:
    """One pytest-json-report test entry, and whether the case is a failed collector instead."""
    duration = _seconds(case.get("time"))
    failure = (_children(case, "failure") or [None])[0]
    error = (_children(case, "error") or [None])[0]
    skipped = (_children(case, "skipped") or [None])[0]
    reruns = _children(case, "flakyFailure") + _children(case, "rerunFailure") + _children(case, "flakyError")
    stages: dict[str, Any] = {"setup": {"duration": 0.0, "outcome": "passed"},
                              "call": {"duration": duration, "outcome": "passed"},
                              "teardown": {"duration": 0.0, "outcome": "passed"}}
    outcome = "passed"
    if failure is not None or error is not None:
        node = failure if failure is not None else error
        assert node is not None
        message, text = node.get("message"), node.text or ""
        if error is not None and failure is None and "collection failure" in (message or "").lower():
            return {"nodeid": nodeid, "longrepr": text or message or "collection failure"}, True
        stage = "call"
        if error is not None and failure is None:
            found = _STAGE.search(message or "")
            stage = found.group(1).lower() if found else "call"
        outcome = "failed" if failure is not None and stage == "call" else "error"
        stages[stage].update({"outcome": "failed", "crash": _crash(message, text), "longrepr": text or message or ""})
    elif skipped is not None:
        reason = skipped.get("message") or skipped.text or ""
        xfail = (skipped.get("type") or "") == "pytest.xfail"
        outcome = "xfailed" if xfail else "skipped"
        stages["call" if xfail else "setup"].update({"outcome": "skipped", "longrepr": reason,
                                                     "crash": {"message": reason}})
    elif reruns:
        outcome = "rerun"
    entry = {"nodeid": nodeid, "outcome": outcome, "user_properties": _properties(case), **stages}
    line = case.get("line")
    if line and line.isdigit():
        entry["lineno"] = int(line)
    return entry, False


def parse_junit_text(text: str, source: str = "<report>") -> JUnitReport:
    """JUnit XML text as a pytest-json-report model; a ConfigError names the file and the problem."""
    from defusedxml import ElementTree as SafeElementTree
    from defusedxml.common import DefusedXmlException

    try:
        root = SafeElementTree.fromstring(text.encode("utf-8"), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise ConfigError(f"{source}: refused unsafe XML ({type(exc).__name__}: DTDs and entities are not "
                          "allowed in JUnit XML)") from None
    except ParseError as exc:
        raise ConfigError(f"{source}: not well-formed XML ({exc}); truncated?") from None
    if _local(root.tag) not in ("testsuites", "testsuite"):
        raise ConfigError(f"{source}: the root element is <{_local(root.tag)}>, expected <testsuites> or <testsuite>")
    suites = [root] if _local(root.tag) == "testsuite" else [s for s in root.iter() if _local(s.tag) == "testsuite"]
    tests: list[dict[str, Any]] = []
    collectors: list[dict[str, Any]] = []
    counts = dict.fromkeys(("passed", "failed", "error", "skipped", "xfailed", "xpassed", "rerun"), 0)
    has_properties = False
    for case in (c for c in root.iter() if _local(c.tag) == "testcase"):
        nodeid = nodeid_of(case)
        entry, is_collector = _test_entry(case, nodeid)
        if is_collector:
            # pytest names a module that failed to import by its dotted name; its node id is the file.
            name = case.get("name") or ""
            module = case.get("file") or (name.replace(".", "/") + ".py" if name and "/" not in name else name)
            collectors.append({"nodeid": module, "outcome": "failed", "result": [], "longrepr": entry["longrepr"]})
            continue
        has_properties = has_properties or bool(entry["user_properties"])
        counts[entry["outcome"]] += 1
        tests.append(entry)
    total = len(tests)
    top_time = root.get("time")
    duration = _seconds(top_time) if top_time else sum(_seconds(s.get("time")) for s in suites
                                                     if s is root or s.get("time"))
    exitcode = 2 if collectors else 1 if counts["failed"] or counts["error"] else 5 if total == 0 else 0
    summary = {"total": total, "collected": total, "deselected": 0, **{k: v for k, v in counts.items() if v}}
    data = {"created": None, "duration": duration, "exitcode": exitcode, "root": None, "summary": summary,
            "collectors": collectors, "tests": tests}
    import json

    report = parse_report_text(json.dumps(data), source=source)
    lacks = [
        "JUnit XML has no collected/deselected counts: a session cut short looks complete (truncated is not detected)",
        "JUnit XML has one duration per test (taken as the call; no setup/teardown split)",
    ]
    if not has_properties:
        lacks.append("JUnit XML without <properties>: no artifacts or figures recorded, so ARTIF-001/002 and "
                     "the figure rules are not evaluated")
    return JUnitReport(report=report, has_properties=has_properties, lacks=lacks, suites=len(suites))


def load_any(path: Path, fmt: str = "auto") -> tuple[PytestJsonReport, Format, JUnitReport | None]:
    """A report file in either format (``fmt``: auto, junit or pytest-json); the JUnitReport too
    when it was JUnit (for what it lacks)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: report file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text (a JUnit XML or pytest JSON report)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read report: {exc.strerror}") from None
    detected = detect_format(text, str(path))
    chosen: Format = detected if fmt == "auto" else fmt  # type: ignore[assignment]
    if chosen != detected:
        raise ConfigError(f"{path}: --format {fmt} given, but the file is {'XML' if detected == 'junit' else 'JSON'} "
                          f"(use --format {detected} or auto)")
    if chosen == "junit":
        junit = parse_junit_text(text, str(path))
        return junit.report, chosen, junit
    return parse_report_text(text, source=str(path)), chosen, None
