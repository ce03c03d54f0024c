"""Configuration mistakes are one line naming the file and the field, exit 2, never a traceback:
files that are not UTF-8, an ``env`` that is not a table, cadence names that are paths, a
catalog ``root`` that does not exist."""

from __future__ import annotations

import pytest
from sample_projects import SampleProject, catalog_text

from harness.cli import main

LATIN1 = "# caf\xe9\n".encode("latin-1")


@pytest.fixture
def project(tmp_path) -> SampleProject:
    project = SampleProject(tmp_path)
    project.write("tests/test_ok.py", "def test_ok(): pass\n")
    return project


def _one_line(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err
    return err


def _run(project: SampleProject, catalog: str = "catalog.toml", *extra: str) -> int:
    return main(["run", "--cadence", "pr", "--catalog", str(project.root / catalog), "--reports-dir",
                 str(project.reports), "--no-history", "--progress", "plain", *extra])


@pytest.mark.parametrize("edit, needles", [
    (lambda text: text.replace('title = "one"', 'title = "one"\nenv = "FOO=1"'),
     ["catalog.toml: selectors.one.env: expected a table of variables", "found str"]),
    (lambda text: text.replace("version = 1", 'version = 1\n[defaults]\nenv = ["FOO=1"]'),
     ["catalog.toml: defaults.env: expected a table of variables", "found list"]),
    (lambda text: text.replace("[cadences.pr]", '[cadences."../../evil"]'),
     ["catalog.toml: cadences.../../evil: expected a name", "not a path"]),
    (lambda text: text.replace("[cadences.pr]", '[cadences."a/b"]'), ["catalog.toml: cadences.a/b: expected a name"]),
    (lambda text: text.replace('root = "."', 'root = "no-such-folder"'),
     ["catalog.toml: root: 'no-such-folder' is not a directory"]),
])
def test_catalog_mistakes(project, capsys, edit, needles):
    text = catalog_text({"one": {"args": ["tests/test_ok.py"]}})
    project.write("catalog.toml", edit(text))
    _one_line(capsys, _run(project), *needles)
    assert not project.reports.exists() or not any(p for p in project.reports.iterdir() if not p.name.startswith("."))


def test_a_catalog_that_is_not_utf8(project, capsys):
    (project.root / "catalog.toml").write_bytes(catalog_text({"one": {"args": ["tests/test_ok.py"]}}).encode() + LATIN1)
    _one_line(capsys, _run(project), "catalog.toml: not UTF-8 text (byte 0xe9")


def test_rules_routes_and_quarantine_that_are_not_utf8(project, capsys, monkeypatch):
    project.catalog({"one": {"args": ["tests/test_ok.py"]}})
    rules = project.root / "rules.yaml"
    rules.write_bytes(b"version: 1\n" + LATIN1)
    _one_line(capsys, main(["rules", "--rules", str(rules), "--catalog", str(project.root / "catalog.toml")]),
              "rules.yaml: not UTF-8 text")
    routes = project.root / "routes.yaml"
    routes.write_bytes(b"version: 1\n" + LATIN1)
    monkeypatch.setenv("HARNESS_HISTORY", str(project.root / "history.sqlite"))
    _one_line(capsys, main(["alerts", "routes", "--routes", str(routes)]), "routes.yaml: not UTF-8 text")
    quarantine = project.root / "quarantine.yaml"
    quarantine.write_bytes(b"quarantine: []\n" + LATIN1)
    _one_line(capsys, main(["quarantine", "list", "--file", str(quarantine), "--catalog", str(project.root / "catalog.toml")]),
              "quarantine.yaml: not UTF-8 text (byte 0xe9")


def test_changed_files_and_reports_that_are_not_utf8(project, capsys):
    project.catalog({"one": {"args": ["tests/test_ok.py"]}})
    changes = project.root / "changes.txt"
    changes.write_bytes(b"src/a.py\n" + LATIN1)
    _one_line(capsys, _run(project, "catalog.toml", "--changed-files", str(changes)), "--changed-files", "not UTF-8")
    report = project.root / "pytest.json"
    report.write_bytes(b'{"x": "' + LATIN1 + b'"}')
    _one_line(capsys, main(["evaluate", str(report), "--selector", "one", "--catalog",
                            str(project.root / "catalog.toml")]), "pytest.json", "not UTF-8")
