"""``harness merge RUN_DIR...``: shard run directories -> one report and one rule evaluation.

The shards of one cadence (``harness run --shard i/n``, same commit) are put back together as
if the run had happened on one machine:

- a selector that ran whole in one shard is taken as it is;
- a test-split selector's pytest JSON reports are merged into one (tests in shard order,
  counts added, ``deselected`` recomputed, exit codes combined the way one pytest process
  would have ended) and classified again by the same parser a normal run uses;
- the trigger rules run once over the merged results, with the history (RT-002's consecutive
  runs, calibrated baselines), and the merged run alone is recorded in history.

Times "as if run together": a split selector's pytest session time is the sum of its shards',
its wall time that sum plus the smallest start-up overhead among them (one interpreter start
instead of several); the cadence's budget is compared with the shards' summed wall time.
Each shard's directory is copied under ``shards/<run id>/`` so logs and artifacts stay at hand,
and artifact paths recorded on the shard machines are re-pointed there.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.catalog import Catalog
from harness.errors import ConfigError, HarnessError
from harness.report_model import RunReport, SelectorFiles, SelectorResult, SelectorState, TestRecord

# How one pytest process over all the tests would have exited, given the shards' exit codes:
# an internal error dominates, then usage errors, interruptions/collection errors, failures.
_EXIT_PRIORITY = (3, 4, 2, 1, 6)
# The worst state wins when parts cannot be merged through their JSON (no report from one).
_STATE_PRIORITY = (
    SelectorState.INTERNAL_ERROR, SelectorState.USAGE_ERROR, SelectorState.REPORT_MISSING, SelectorState.TIMEOUT,
    SelectorState.INTERRUPTED, SelectorState.COLLECTION_ERROR, SelectorState.TRUNCATED,
    SelectorState.REPORT_INVALID, SelectorState.WARNINGS_EXCEEDED, SelectorState.FAILED, SelectorState.SETUP_ERROR,
    SelectorState.FLAKY, SelectorState.DID_NOT_RUN, SelectorState.NO_TESTS, SelectorState.SKIPPED, SelectorState.PASSED,
)
_SUMMARY_SUMS = ("passed", "failed", "error", "skipped", "xfailed", "xpassed", "rerun", "total")


@dataclass
class Shard:
    directory: Path
    report: RunReport
    index: int
    count: int

    @property
    def folder(self) -> str:
        """Where the shard's directory is copied in the merged run (run ids of shards may be equal)."""
        return f"shards/{self.index}-of-{self.count}"


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Each argument is a run directory (it holds report.json) or a folder searched for them
    (what ``actions/download-artifact`` leaves: one sub-folder per shard artifact)."""
    found: list[Path] = []
    for path in paths:
        path = Path(path)
        if (path / "report.json").is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise HarnessError(f"{path}: not a run directory (no report.json) and not a folder of them")
        inside = sorted(p.parent for p in path.rglob("report.json")
                        if not any(part.startswith(".") or part == "shards" for part in p.relative_to(path).parts[:-1]))
        # In a folder, only shard runs count (a reports folder also holds whole and merged runs).
        inside = [run for run in inside if _is_shard_report(run / "report.json")]
        if not inside:
            raise HarnessError(f"{path}: no shard run directory (report.json with run.shard) inside")
        found.extend(inside)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique


def _is_shard_report(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text(encoding="utf-8")).get("run", {}).get("shard"))
    except (OSError, ValueError, AttributeError):
        return True  # let load_shards say what is wrong with it


def load_shards(directories: list[Path]) -> list[Shard]:
    """Read and check the shard reports: one cadence, one commit, every shard of 1..n once."""
    shards = []
    for directory in directories:
        path = directory / "report.json"
        try:
            report = RunReport.model_validate_json(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{path}: not a harness report.json: {str(exc).splitlines()[0]}") from None
        spec = report.run.shard
        match = re.match(r"^(\d+)/(\d+)$", spec or "")
        if not match:
            raise HarnessError(f"{path}: run {report.run.id} is not a shard (run.shard is empty); "
                               "merge takes the directories of `harness run --shard I/N`")
        shards.append(Shard(directory, report, int(match.group(1)), int(match.group(2))))
    if not shards:
        raise HarnessError("nothing to merge: name the shard run directories")
    first = shards[0]
    for shard in shards[1:]:
        for what, mine, theirs in (
            ("cadence", shard.report.run.cadence, first.report.run.cadence),
            ("shard count", shard.count, first.count),
            ("git commit", shard.report.run.git.sha, first.report.run.git.sha),
        ):
            if mine != theirs:
                raise HarnessError(f"{shard.directory}: {what} {mine} differs from {first.directory}'s {theirs}; "
                                   "only shards of one run can be merged")
    indices = sorted(s.index for s in shards)
    duplicates = sorted({i for i in indices if indices.count(i) > 1})
    missing = sorted(set(range(1, first.count + 1)) - set(indices))
    if duplicates:
        raise HarnessError(f"shard {', '.join(f'{i}/{first.count}' for i in duplicates)} given more than once")
    if missing:
        raise HarnessError(f"shard {', '.join(f'{i}/{first.count}' for i in missing)} missing: a merged verdict "
                           "needs every shard (a shard whose job died has no report to merge)")
    return sorted(shards, key=lambda s: s.index)


# -- relocating what the shards recorded -------------------------------------------------------


def relocate(value: Any, run_id: str, new_base: Path) -> Any:
    """A path recorded inside a shard's run directory (staging or final), re-pointed at its copy."""
    if not isinstance(value, str):
        return value
    pattern = re.compile(rf"^.*?[/\\](?:\.staging[/\\]{re.escape(run_id)}\.\d+|{re.escape(run_id)})(?=[/\\]|$)")
    match = pattern.match(value)
    if not match:
        return value
    rest = value[match.end():].lstrip("/\\")
    return str(new_base / rest) if rest else str(new_base)


def _relocated_tests(tests: list[TestRecord], run_id: str, new_base: Path) -> list[TestRecord]:
    return [test.model_copy(update={"user_properties": {k: relocate(v, run_id, new_base)
                                                        for k, v in test.user_properties.items()}})
            for test in tests]


# -- merging one selector ----------------------------------------------------------------------


def combined_exit(codes: list[int | None]) -> int | None:
    known = [code for code in codes if code is not None]
    if not known:
        return None
    for code in _EXIT_PRIORITY:
        if code in known:
            return code
    if any(code < 0 for code in known):
        return min(known)
    if all(code == 5 for code in known):
        return 5
    return 0


def merge_pytest_json(documents: list[dict[str, Any]]) -> dict[str, Any]:
    """One pytest-json-report document for the tests of several processes over one suite."""
    merged = dict(documents[0])
    merged["tests"] = [test for doc in documents for test in doc.get("tests") or []]
    merged["warnings"] = [w for doc in documents for w in doc.get("warnings") or []]
    collectors: dict[str, dict] = {}
    for doc in documents:
        for collector in doc.get("collectors") or []:
            key = collector.get("nodeid", "")
            if key not in collectors or collector.get("outcome") == "failed":
                collectors[key] = collector
    if any("collectors" in doc for doc in documents):
        merged["collectors"] = list(collectors.values())
    merged["duration"] = round(sum(float(doc.get("duration") or 0) for doc in documents), 6)
    merged["created"] = min(float(doc.get("created") or 0) for doc in documents)
    # The shards whose slice was empty (exit 5) say nothing about the suite when others ran tests.
    codes = [doc.get("exitcode") for doc in documents]
    if any(code != 5 for code in codes):
        codes = [code for code in codes if code != 5]
    merged["exitcode"] = combined_exit(codes)
    summary: dict[str, int] = {}
    for key in _SUMMARY_SUMS:
        value = sum(int((doc.get("summary") or {}).get(key) or 0) for doc in documents)
        if value:
            summary[key] = value
    collected = max(int((doc.get("summary") or {}).get("collected") or 0) for doc in documents)
    summary["collected"] = collected
    deselected = max(0, collected - summary.get("total", 0))
    if deselected:
        summary["deselected"] = deselected
    summary.setdefault("total", 0)
    merged["summary"] = summary
    return merged


def _worst(states: list[SelectorState]) -> SelectorState:
    return min(states, key=lambda state: _STATE_PRIORITY.index(state) if state in _STATE_PRIORITY else -1)


def merge_selector(name: str, parts: list[tuple[Shard, SelectorResult]], target: Path) -> SelectorResult:
    """One SelectorResult from its shard parts; files written under ``target/selectors/<name>/``."""
    from harness.pytest_report import classify, read_for_classification

    out = target / "selectors" / name
    out.mkdir(parents=True, exist_ok=True)
    relocated = []
    for shard, result in parts:
        tests = _relocated_tests(result.tests, shard.report.run.id, target / shard.folder)
        relocated.append((shard, result.model_copy(update={"tests": tests})))
    if len(relocated) == 1:
        shard, result = relocated[0]
        files = result.files
        if files is not None:
            prefix = f"{shard.folder}/"
            files = SelectorFiles(
                pytest_json=prefix + files.pytest_json if files.pytest_json else None,
                stdout=prefix + files.stdout, stderr=prefix + files.stderr, basetemp=prefix + files.basetemp,
            )
        out.rmdir()
        return result.model_copy(update={"files": files})

    # Several shards ran slices of this selector: logs concatenated, JSON merged and re-classified.
    for stream in ("stdout", "stderr"):
        with open(out / f"{stream}.log", "wb") as handle:
            for shard, result in relocated:
                handle.write(f"===== harness merge: shard {shard.index}/{shard.count} ({shard.report.run.id}) "
                             f"=====\n".encode())
                source = getattr(result.files, stream, None) if result.files else None
                if source and (shard.directory / source).is_file():
                    handle.write((shard.directory / source).read_bytes())
                handle.write(b"\n")
    documents, missing = [], []
    for shard, result in relocated:
        json_path = shard.directory / result.files.pytest_json if result.files and result.files.pytest_json else None
        if json_path is None or not json_path.is_file():
            missing.append(f"shard {shard.index}/{shard.count}: {result.state.value}")
            continue
        documents.append(_relocated_document(json.loads(json_path.read_text(encoding="utf-8")), shard, target))
    results = [result for _, result in relocated]
    timed_out = any(r.state == SelectorState.TIMEOUT for r in results)
    interrupted = any(r.state == SelectorState.INTERRUPTED for r in results)
    merged_json = None
    if documents and not missing:
        merged_json = out / "pytest.json"
        merged_json.write_text(json.dumps(merge_pytest_json(documents), indent=1), encoding="utf-8")
        report, problem = read_for_classification(merged_json)
        codes = [r.exit_code for r in results]
        if any(code != 5 for code in codes if code is not None):
            codes = [code for code in codes if code != 5]
        parsed = classify(report, combined_exit(codes), timed_out=timed_out, interrupted=interrupted,
                          missing_reason=problem)
        state, reason, counts, tests = parsed.state, parsed.reason, parsed.counts, parsed.tests
        session_s, tests_s, report_exitcode = parsed.session_s, parsed.tests_s, parsed.report_exitcode
    else:
        state = _worst([r.state for r in results])
        reason = "merged from shards without a report: " + "; ".join(missing)
        counts = results[0].counts.model_copy()
        for other in results[1:]:
            for key in ("total", "passed", "failed", "error", "skipped", "xfailed", "xpassed", "rerun"):
                setattr(counts, key, getattr(counts, key) + getattr(other.counts, key))
        tests = [t for r in results for t in r.tests]
        session_s = tests_s = None
        report_exitcode = combined_exit([r.report_exitcode for r in results])
    walls = [r.wall_s for r in results if r.wall_s is not None]
    sessions = [r.session_s for r in results if r.session_s is not None]
    if session_s is not None and len(sessions) == len(results) and len(walls) == len(results):
        overhead = min(max(0.0, w - s) for w, s in zip(walls, sessions, strict=True))
        wall_s = round(session_s + overhead, 3)
    else:
        wall_s = round(sum(walls), 3) if walls else None
    first = results[0]
    started = [r.started_at for r in results if r.started_at]
    finished = [r.finished_at for r in results if r.finished_at]
    return SelectorResult(
        name=name, title=first.title, owner=first.owner, argv=first.argv, env=first.env, state=state, reason=reason,
        exit_code=combined_exit([r.exit_code for r in results]), report_exitcode=report_exitcode,
        signal=next((r.signal for r in results if r.signal), None),
        started_at=min(started) if started else None, finished_at=max(finished) if finished else None,
        wall_s=wall_s, session_s=None if session_s is None else round(session_s, 3), tests_s=tests_s,
        counts=counts, tests=tests, environment=next((r.environment for r in results if r.environment), None),
        files=SelectorFiles(
            pytest_json=f"selectors/{name}/pytest.json" if merged_json else None,
            stdout=f"selectors/{name}/stdout.log", stderr=f"selectors/{name}/stderr.log",
            basetemp=f"{parts[0][0].folder}/{first.files.basetemp}" if first.files else "",
        ),
    )


def _relocated_document(document: dict[str, Any], shard: Shard, target: Path) -> dict[str, Any]:
    """A shard's pytest JSON with the artifact paths its tests recorded re-pointed at the copy."""
    base = target / shard.folder
    for test in document.get("tests") or []:
        props = test.get("user_properties")
        if isinstance(props, list):
            test["user_properties"] = [
                {k: relocate(v, shard.report.run.id, base) for k, v in item.items()} if isinstance(item, dict) else item
                for item in props
            ]
    return document


def merge_results(shards: list[Shard], catalog: Catalog, target: Path) -> list[SelectorResult]:
    """Every selector of the cadence once, in the cadence's order."""
    names: list[str] = []
    for shard in shards:
        for result in shard.report.selectors:
            if result.name not in names:
                names.append(result.name)
    cadence = catalog.cadences.get(shards[0].report.run.cadence)
    if cadence is not None:
        names = [n for n in cadence.selectors if n in names] + [n for n in names if n not in cadence.selectors]
    merged = []
    for name in names:
        parts = [(shard, result) for shard in shards for result in shard.report.selectors
                 if result.name == name and result.state != SelectorState.NOT_RUN]
        if parts:
            merged.append(merge_selector(name, parts, target))
        else:  # not run in any shard (not required by the changed files, or stopped first)
            reasons = {result.reason for shard in shards for result in shard.report.selectors if result.name == name}
            first = next(result for shard in shards for result in shard.report.selectors if result.name == name)
            shard_reasons = [r for r in reasons if r and not re.match(r"^shard \d+/\d+ runs it$", r)]
            merged.append(first.model_copy(update={"reason": shard_reasons[0] if shard_reasons else first.reason}))
    return merged


# -- the whole merge ---------------------------------------------------------------------------


def merge(shards: list[Shard], catalog: Catalog, rules, reports_dir: Path, history_path: Path | None,  # noqa: ANN001
          fail_on: str = "high") -> tuple[RunReport, Path, list[str]]:
    """Put the shards back together and take the verdict path once over the merged results
    (judge, gate, write and record: ``harness.verdict``); returns (report, directory, warnings).
    ``publish`` follows, as after a normal run."""
    from harness.report_model import RunInfo
    from harness.run_directory import RunDirectory
    from harness.verdict import VerdictBasis, conclude

    first = shards[0].report
    cadence = catalog.cadence(first.run.cadence)
    run_dir = RunDirectory(reports_dir, cadence.name, datetime.now(UTC))
    interrupted = any(s.report.run.interrupted for s in shards)
    # Times as if run together: the budget is compared with the shards' summed wall time.
    basis = VerdictBasis(
        catalog=catalog, rules=rules, cadence=cadence, fail_on=fail_on, host_key=first.run.host.host_key,
        wall_s=round(sum(s.report.run.wall_s for s in shards), 3), reports_dir=reports_dir,
        history_path=history_path, thresholds_mode=None if first.run.thresholds == "catalog" else first.run.thresholds,
        interrupted_exit=130 if interrupted else None, git=first.run.git,
    )
    hosts = sorted({s.report.run.host.host_key for s in shards})
    notes = [f"merged from {len(shards)} shards: " + ", ".join(
        f"{s.index}/{s.count} {s.report.run.id} on {s.report.run.host.hostname}" for s in shards)]
    if len(hosts) > 1:
        notes.append(f"shards ran on different hosts ({', '.join(hosts)}); runtime history is kept under "
                     f"{first.run.host.host_key}")
    for shard in shards:
        notes += [n for n in shard.report.notes if "history disabled" not in n and n not in notes]

    def describe_run(status: str) -> RunInfo:
        return RunInfo(
            id=run_dir.name, cadence=cadence.name,
            started_at=min(s.report.run.started_at for s in shards),
            finished_at=max(s.report.run.finished_at for s in shards), wall_s=basis.wall_s, interrupted=interrupted,
            status=status, catalog=str(catalog.path), rules=str(rules.path), root=str(catalog.root),
            jobs=first.run.jobs, budget_s=cadence.budget_s, thresholds=first.run.thresholds,
            changed_files=first.run.changed_files, harness_version=first.run.harness_version, git=first.run.git,
            host=first.run.host, versions=first.run.versions, merged_from=[s.report.run.id for s in shards],
        )

    try:
        for shard in shards:
            shutil.copytree(shard.directory, run_dir.staging / shard.folder, symlinks=True)
        results = merge_results(shards, catalog, run_dir.staging)
        report, warnings = conclude(results, basis, run_dir, describe_run=describe_run, notes=notes,
                                    json_files=sorted(run_dir.staging.glob("selectors/*/pytest.json")))
    except BaseException:
        if not run_dir.published:
            run_dir.discard()
        raise
    return report, run_dir.final, warnings
