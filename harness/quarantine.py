"""Quarantined tests: code-reviewed data in ``alerts/quarantine.yaml`` (node id, owner, reason, expiry).

A quarantined test still runs and is reported (its alerts say "[quarantined]", the run's notes
count the quarantined tests and how they did), but its alerts do not fail the gate. On its
expiry date the entry stops protecting the test (the gate counts it again) and QUAR-001 alerts
its owner until the entry is renewed or removed; a quarantined test that passed its last runs
is proposed for release (QUAR-002). ``harness quarantine add|list|remove`` edits the file.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from harness.errors import ConfigError, read_config_text

HEADER = """\
# Quarantined tests (harness/quarantine.py): they still run and are reported, but their alerts
# do not fail the gate until `expires`. Edit with `harness quarantine add|list|remove`; changes
# go through code review like any other file.
"""
NODEID = re.compile(r"^[^\s:]+\.py(::[^\s:]+)+$")


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    nodeid: str
    owner: str = Field(min_length=1)
    reason: str = Field(min_length=1)
    expires: date
    added: date | None = None

    @field_validator("nodeid")
    @classmethod
    def _nodeid(cls, value: str) -> str:
        if not NODEID.match(value):
            raise ValueError(f"{value!r} is not a pytest node id (path/to/test_x.py::test_name)")
        return value

    @field_validator("owner", "reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value.strip()

    def expired(self, today: date) -> bool:
        return today > self.expires


class QuarantineFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    quarantine: list[Entry] = Field(default_factory=list)


def today() -> date:
    return datetime.now(UTC).date()


def default_path(rules_path: Path) -> Path:
    """Beside the rules file: ``alerts/quarantine.yaml``."""
    return Path(rules_path).parent / "quarantine.yaml"


def load(path: Path) -> QuarantineFile:
    """The quarantine file (empty when there is none); errors name the file and the entry."""
    import yaml

    from harness.catalog import format_validation_error
    from harness.yaml_loader import safe_load

    path = Path(path)
    if not path.exists():
        return QuarantineFile()
    text = read_config_text(path, "quarantine")
    try:
        raw = safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'quarantine' list")
    try:
        loaded = QuarantineFile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(path, exc)) from None
    seen: set[str] = set()
    for entry in loaded.quarantine:
        if entry.nodeid in seen:
            raise ConfigError(f"{path}: {entry.nodeid} is quarantined twice")
        seen.add(entry.nodeid)
    return loaded


def save(path: Path, data: QuarantineFile) -> None:
    """Write atomically (a reviewer diffs it: sorted by node id, one block per entry)."""
    import os
    import tempfile

    import yaml

    entries = sorted(data.quarantine, key=lambda e: e.nodeid)
    body = {"version": 1, "quarantine": [
        {k: (v.isoformat() if isinstance(v, date) else v) for k, v in e.model_dump().items() if v is not None}
        for e in entries]}
    text = HEADER + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".quarantine-", suffix=".yaml")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_nodeid_exists(nodeid: str, root: Path, known: set[str] | None = None) -> None:
    """A node id names a test file under ``root`` and a test function in it (or history knows it)."""
    if known and nodeid in known:
        return
    path, _, rest = nodeid.partition("::")
    file = Path(root) / path
    if not file.is_file():
        raise ConfigError(f"{nodeid}: unknown node id (no file {path} under {root})")
    name = rest.split("::")[-1].split("[")[0]
    if not re.search(rf"^\s*(async\s+)?def\s+{re.escape(name)}\s*\(", file.read_text(encoding="utf-8", errors="replace"), re.M):
        raise ConfigError(f"{nodeid}: unknown node id (no test function {name} in {path})")


def add(path: Path, nodeid: str, owner: str, reason: str, expires: str, root: Path, known: set[str] | None = None,
        on: date | None = None) -> Entry:
    """Add or renew an entry; past dates, blank owners or reasons and unknown tests are errors."""
    on = on or today()
    try:
        when = date.fromisoformat(expires)
    except ValueError:
        raise ConfigError(f"--expires {expires}: expected a date YYYY-MM-DD") from None
    if when < on:
        raise ConfigError(f"--expires {expires}: the date is in the past (today is {on.isoformat()})")
    try:
        entry = Entry(nodeid=nodeid, owner=owner, reason=reason, expires=when, added=on)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "entry"
        raise ConfigError(f"--{field}: {first['msg']}") from None
    check_nodeid_exists(nodeid, root, known)
    data = load(path)
    data.quarantine = [e for e in data.quarantine if e.nodeid != nodeid] + [entry]
    save(path, data)
    return entry


def remove(path: Path, nodeid: str) -> Entry:
    data = load(path)
    found = next((e for e in data.quarantine if e.nodeid == nodeid), None)
    if found is None:
        raise ConfigError(f"{nodeid}: not quarantined in {path}")
    data.quarantine = [e for e in data.quarantine if e.nodeid != nodeid]
    save(path, data)
    return found


# -- in a run -------------------------------------------------------------------------------


_CACHE: dict[tuple[str, int], QuarantineFile] = {}


def for_rules(rules: Any) -> QuarantineFile:
    """The quarantine beside the rules file (read again only when the file changed)."""
    path = default_path(rules.path)
    try:
        stamp = path.stat().st_mtime_ns
    except OSError:
        return QuarantineFile()
    key = (str(path), stamp)
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load(path)
    return _CACHE[key]


def apply(alerts: list, result: Any, rules: Any, notes: list[str], on: date | None = None) -> None:
    """Mark the alerts of actively quarantined tests (evidence ``quarantined``, summary prefix)
    so ``blocking`` passes them over, and count the quarantined tests of this result in the notes."""
    data = for_rules(rules)
    if not data.quarantine:
        return
    on = on or today()
    active = {e.nodeid: e for e in data.quarantine if not e.expired(on)}
    outcomes = {t.nodeid: t.outcome for t in result.tests}
    for alert in alerts:
        entry = active.get(alert.nodeid or "")
        if entry is None or alert.trigger.startswith("QUAR-"):
            continue
        alert.evidence["quarantined"] = {"owner": entry.owner, "reason": entry.reason, "expires": entry.expires.isoformat()}
        if not alert.summary.startswith("[quarantined]"):
            alert.summary = f"[quarantined] {alert.summary}"
    mine = [nodeid for nodeid in active if nodeid in outcomes]
    if mine:
        failed = sum(outcomes[n] in ("failed", "error") for n in mine)
        notes.append(f"{result.name}: {len(mine)} quarantined test(s) ran, {failed} failed, "
                     f"{len(mine) - failed} passed; not blocking the gate ({default_path(rules.path).name})")


def is_quarantined(alert: Any) -> bool:
    return bool(alert.evidence.get("quarantined"))


def quarantine_alerts(trigger: Any, selector: Any, result: Any, ctx: Any, on: date | None = None) -> list:
    """QUAR-001 (an entry expired: the test is armed again) and QUAR-002 (a quarantined test
    passed its last ``passes`` runs: propose its release), for the tests of this result."""
    from harness.rule_engine import fingerprint
    from harness.report_model import Alert

    cond = trigger.when.quarantine
    data = for_rules(ctx.rules)
    on = on or today()
    outcomes = {t.nodeid: t.outcome for t in result.tests if t.kind == "test"}
    alerts = []
    for entry in data.quarantine:
        if entry.nodeid not in outcomes:
            continue
        if cond.state == "expired":
            if not entry.expired(on):
                continue
            summary = (f"{entry.nodeid}: quarantine expired on {entry.expires.isoformat()} "
                       f"({entry.reason}); its failures fail the gate again: fix it, renew or remove the entry")
        else:
            if entry.expired(on):
                continue
            from harness.flaky import test_histories

            rows = test_histories(ctx.history, result.name, cond.passes - 1).get(entry.nodeid, [])
            recent = [row[3] for row in rows][-(cond.passes - 1):] + [outcomes[entry.nodeid]]
            if len(recent) < cond.passes or any(outcome != "passed" for outcome in recent):
                continue
            summary = (f"{entry.nodeid}: passed its last {cond.passes} runs while quarantined ({entry.reason}); "
                       f"propose release: harness quarantine remove {entry.nodeid}")
        evidence = {"selector": result.name, "nodeid": entry.nodeid, "owner": entry.owner, "reason": entry.reason,
                    "expires": entry.expires.isoformat(), "sla": trigger.sla}
        alerts.append(Alert(trigger=trigger.id, title=trigger.title, severity=trigger.severity, owner=entry.owner,
                            sla=trigger.sla, fingerprint=fingerprint(trigger.id, result.name, entry.nodeid, "quarantine"),
                            selector=result.name, nodeid=entry.nodeid, summary=summary, evidence=evidence))
    return alerts
