"""``harness run --shard i/n`` and ``harness merge``: three shards merged give the unsharded verdict.

The end-to-end test runs the tiny project's weekly cadence (a test-split suite with a failing
test, a failing integration test, two passing selectors) once whole and once as three shards,
merges the shards and compares gate, alerts (fingerprints included), states, counts and test
outcomes. The harness runs in-process (``harness.cli.main``); pytest runs in subprocesses.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sample_projects import make_project

from harness import cli
from harness.catalog import RuntimeSpec, Selector
from harness.errors import HarnessError
from harness.history import HistoryStore
from harness.merge import combined_exit, merge_pytest_json, relocate
from harness.shard import ShardSpec, assign, chunk_bounds, narrow, parse_shard


def _selector(name: str, baseline: float | None = None, shard_by: str = "selector") -> Selector:
    return Selector(name=name, title=name, args=("tests/",), owner="o", shard_by=shard_by,
                    runtime=RuntimeSpec(baseline_s=baseline))


# -- the deterministic slicing -----------------------------------------------------------------


def test_parse_shard_accepts_i_of_n_only() -> None:
    assert parse_shard("2/3") == ShardSpec(2, 3) and str(parse_shard(" 1 / 4 ")) == "1/4"
    for bad in ("0/3", "4/3", "3", "a/b", "", "1/0"):
        with pytest.raises(HarnessError, match="expected I/N"):
            parse_shard(bad)


@pytest.mark.parametrize("total", [0, 1, 2, 3, 7, 13, 100])
@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_test_chunks_cover_every_test_exactly_once_in_order(total: int, count: int) -> None:
    chunks = [chunk_bounds(total, ShardSpec(i, count)) for i in range(1, count + 1)]
    covered = [item for start, end in chunks for item in range(start, end)]
    assert covered == list(range(total))
    sizes = [end - start for start, end in chunks]
    assert max(sizes) - min(sizes) <= 1


def test_selectors_are_dealt_longest_first_and_the_same_way_every_time() -> None:
    selectors = [_selector("a", 10), _selector("b", 50), _selector("c", 30), _selector("d", 25), _selector("e")]
    placed = assign(selectors, 2)
    assert placed == assign(list(reversed(selectors)), 2)  # order of the input does not matter
    assert placed == {"b": 1, "c": 2, "d": 2, "a": 1, "e": 2}  # 50+10 vs 30+25+1
    split = _selector("suite", shard_by="test")
    everything = [*selectors, split]
    runs = [narrow(everything, {}, ShardSpec(i, 3)) for i in (1, 2, 3)]
    for run, skipped in runs:
        assert "suite" in {s.name for s in run}
        assert {s.name for s in run} | set(skipped) == {s.name for s in everything}
    whole = [name for run, _ in runs for name in (s.name for s in run) if name != "suite"]
    assert sorted(whole) == ["a", "b", "c", "d", "e"]  # each whole selector in exactly one shard
    assert runs[0][1]["c"] == f"shard {assign(selectors, 3)['c']}/3 runs it"


# -- merging pytest JSON -----------------------------------------------------------------------


def test_pytest_json_of_slices_merges_like_one_process() -> None:
    def doc(exitcode: int, tests: list[tuple[str, str]], collected: int = 5) -> dict:
        summary = {"collected": collected, "total": len(tests)}
        for _, outcome in tests:
            summary[outcome] = summary.get(outcome, 0) + 1
        if collected - len(tests):
            summary["deselected"] = collected - len(tests)
        return {"exitcode": exitcode, "duration": 1.0, "created": 5.0, "summary": summary,
                "tests": [{"nodeid": n, "outcome": o} for n, o in tests], "collectors": []}

    merged = merge_pytest_json([
        doc(1, [("t::a", "passed"), ("t::b", "failed")]),
        doc(0, [("t::c", "passed"), ("t::d", "skipped")]),
        doc(0, [("t::e", "passed")]),
        doc(5, []),  # an empty slice says nothing about the suite
    ])
    assert merged["exitcode"] == 1
    assert [t["nodeid"] for t in merged["tests"]] == ["t::a", "t::b", "t::c", "t::d", "t::e"]
    assert merged["summary"] == {"passed": 3, "failed": 1, "skipped": 1, "total": 5, "collected": 5}
    assert merged["duration"] == 4.0
    assert combined_exit([0, 5, 5]) == 0 and combined_exit([5, 5]) == 5 and combined_exit([0, 2, 1]) == 2
    assert combined_exit([None, None]) is None


def test_artifact_paths_are_repointed_from_staging_or_final_run_directories(tmp_path: Path) -> None:
    run = "20250101T000000Z-weekly"
    new = tmp_path / "shards" / "2-of-3"
    staged = f"/ci/work/reports/.staging/{run}.4242/selectors/integration/tmp/ckpt/last.ckpt"
    final = f"/ci/work/reports/{run}/selectors/integration/tmp/a.png"
    assert relocate(staged, run, new) == str(new / "selectors/integration/tmp/ckpt/last.ckpt")
    assert relocate(final, run, new) == str(new / "selectors/integration/tmp/a.png")
    assert relocate("/elsewhere/a.png", run, new) == "/elsewhere/a.png"
    assert relocate(0.93, run, new) == 0.93


# -- end to end --------------------------------------------------------------------------------


def _harness(*args: str) -> int:
    return cli.main(list(args))


def _verdict(report_path: Path) -> dict:
    report = json.loads(report_path.read_text(encoding="utf-8"))
    return {
        "gate": (report["gate"]["passed"], report["gate"]["exit_code"], sorted(report["gate"]["blocking"])),
        "alerts": sorted((a["trigger"], a["severity"], a["selector"], a["nodeid"], a["fingerprint"])
                         for a in report["alerts"]),
        "selectors": {
            s["name"]: (s["state"], {k: v for k, v in s["counts"].items()},
                        sorted((t["nodeid"], t["outcome"]) for t in s["tests"]))
            for s in report["selectors"]
        },
    }


def test_three_shards_merged_give_the_unsharded_verdict(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    monkeypatch.setenv("TINY_FAIL_INTEGRATION", "1")
    monkeypatch.setenv("TINY_FAIL_SUITE", "1")
    catalog = make_project(tmp_path / "project")
    text = catalog.read_text().replace('args = ["tests/suite/"]\n', 'args = ["tests/suite/"]\nshard_by = "test"\n')
    catalog.write_text(text)
    common = ["--catalog", str(catalog), "--progress", "none", "--jobs", "2"]

    assert _harness("run", "--cadence", "weekly", "--reports-dir", str(tmp_path / "whole"), *common) == 1
    for index in (1, 2, 3):
        code = _harness("run", "--cadence", "weekly", "--shard", f"{index}/3",
                        "--reports-dir", str(tmp_path / f"shard{index}"), *common)
        assert code in (0, 1)
        assert not (tmp_path / f"shard{index}" / "history.sqlite").exists()  # the merge records history
    merged_reports = tmp_path / "merged"
    # Run directories named one by one, or a folder holding them (what download-artifact leaves).
    code = _harness("merge", str(next((tmp_path / "shard1").glob("*-weekly"))), str(tmp_path / "shard2"),
                    str(tmp_path / "shard3"), "--catalog", str(catalog), "--reports-dir", str(merged_reports))
    assert code == 1
    capsys.readouterr()

    whole = _verdict(next((tmp_path / "whole").glob("*-weekly/report.json")))
    merged_path = next(merged_reports.glob("*-weekly/report.json"))
    merged = _verdict(merged_path)
    assert merged == whole
    # The comparison is not vacuous: both carry the two failures and the split suite's 13 tests.
    assert {a[0] for a in whole["alerts"]} >= {"PARITY-001"} and len(whole["alerts"]) >= 2
    assert whole["selectors"]["torch_full"][1]["total"] == 13
    assert whole["selectors"]["torch_full"][1]["collected"] == 13

    # Every shard ran a real slice of the split suite (no shard ran it whole).
    for index in (1, 2, 3):
        shard = json.loads(next((tmp_path / f"shard{index}").glob("*-weekly/report.json")).read_text())
        assert shard["run"]["shard"] == f"{index}/3"
        suite = next(s for s in shard["selectors"] if s["name"] == "torch_full")
        assert 0 < suite["counts"]["total"] < 13 and suite["counts"]["deselected"] == 13 - suite["counts"]["total"]

    report = json.loads(merged_path.read_text())
    assert len(report["run"]["merged_from"]) == 3
    assert (merged_path.parent / "shards" / "2-of-3" / "report.json").is_file()
    assert (merged_path.parent / "index.html").exists() is False and (merged_reports / "index.html").is_file()
    with HistoryStore.open(merged_reports / "history.sqlite", create=False) as store:
        assert store.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 1  # one run, not three

    # A merge with a shard missing, or of a run that is not a shard, is refused in one line.
    assert _harness("merge", str(tmp_path / "shard1"), str(tmp_path / "shard3"), "--catalog", str(catalog),
                    "--reports-dir", str(tmp_path / "nope")) == 2
    assert "shard 2/3 missing" in capsys.readouterr().err
    whole_run = next((tmp_path / "whole").glob("*-weekly"))
    assert _harness("merge", str(whole_run), "--catalog", str(catalog), "--reports-dir", str(tmp_path / "nope")) == 2
    assert "is not a shard" in capsys.readouterr().err
    assert _harness("merge", str(tmp_path / "whole"), "--catalog", str(catalog),
                    "--reports-dir", str(tmp_path / "nope")) == 2  # a folder of whole runs has no shard in it
    assert "no shard run directory" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists() or not [p for p in (tmp_path / "nope").iterdir() if p.name[0] != "."]
