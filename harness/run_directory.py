"""Timestamped report directories, built aside and published with one rename.

A run writes into ``<reports>/.staging/<name>.<pid>/`` and, when everything is in place,
renames it to ``<reports>/<UTC timestamp>-<cadence>/``. A crash leaves only a hidden staging
folder (removed by the next run once its process is gone), never a half report. Names are
reserved with an exclusive lock file, so two runs in the same second get ``...-pr`` and
``...-pr-2``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from harness.process_tree import pid_alive

STAGING = ".staging"
_STAGING_NAME = re.compile(r"^(?P<name>.+)\.(?P<pid>\d+)$")


def _lock_owner(lock: Path) -> int | None:
    try:
        return int(lock.read_text(encoding="ascii").strip() or 0) or None
    except (OSError, ValueError):
        return None


def _reserve(lock: Path, pid: int) -> bool:
    """Create ``lock`` holding ``pid`` in one step (hard link of a written file): another run's
    clean-up must never see the lock empty, take it for abandoned and hand the name out twice."""
    draft = lock.with_name(f"{lock.name}.{pid}.draft")
    draft.write_text(str(pid), encoding="ascii")
    try:
        os.link(draft, lock)
        return True
    except FileExistsError:
        return False
    finally:
        draft.unlink(missing_ok=True)


def clean_stale_staging(reports_dir: Path) -> list[Path]:
    """Remove staging folders and name reservations left by processes that no longer exist."""
    removed = []
    staging = reports_dir / STAGING
    if not staging.is_dir():
        return removed
    for entry in staging.iterdir():
        if entry.name.endswith(".lock"):
            owner = _lock_owner(entry)
            if owner is not None and pid_alive(owner):
                continue
            entry.unlink(missing_ok=True)
            removed.append(entry)
            continue
        match = _STAGING_NAME.match(entry.name)
        if not match or pid_alive(int(match.group("pid"))):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


class RunDirectory:
    """One run's report directory: ``staging`` while being written, ``final`` once published."""

    def __init__(self, reports_dir: Path, cadence: str, started: datetime) -> None:
        self.reports_dir = Path(reports_dir)
        staging_root = self.reports_dir / STAGING
        staging_root.mkdir(parents=True, exist_ok=True)
        clean_stale_staging(self.reports_dir)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        pid = os.getpid()
        for attempt in range(1, 1000):
            name = f"{stamp}-{cadence}" if attempt == 1 else f"{stamp}-{cadence}-{attempt}"
            if (self.reports_dir / name).exists():
                continue
            lock = staging_root / f"{name}.lock"
            if not _reserve(lock, pid):
                continue
            if (self.reports_dir / name).exists():  # published between our check and the lock
                lock.unlink(missing_ok=True)
                continue
            break
        else:  # pragma: no cover - a thousand runs in one second
            raise RuntimeError(f"cannot find a free report directory name for {stamp}-{cadence}")
        self.name = name
        self.lock = lock
        self.staging = staging_root / f"{name}.{pid}"
        self.staging.mkdir()
        self.final = self.reports_dir / name
        self.published = False

    def relative(self, path: Path) -> str:
        """``path`` relative to the run directory when it lies inside it (staging or final)."""
        path = Path(path)
        for root in (self.staging, self.final):
            try:
                return path.resolve().relative_to(root.resolve()).as_posix()
            except ValueError:
                continue
        return str(path)

    def relocate_json(self, paths: Iterable[Path]) -> None:
        """Point the paths JSON files in the run directory recorded into the staging folder (an
        artifact path in pytest.json) at the published folder, so that re-evaluating a published
        report sees the files the run saw. Call it just before :meth:`publish`."""
        staging, final = json.dumps(str(self.staging))[1:-1], json.dumps(str(self.final))[1:-1]
        for path in paths:
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue  # missing or unreadable: the report already says so
            if staging in text:
                scratch = path.with_name(path.name + ".relocating")
                scratch.write_text(text.replace(staging, final), encoding="utf-8")
                os.replace(scratch, path)

    def publish(self) -> Path:
        """Rename staging to its final name (atomic on one filesystem)."""
        if self.final.exists():
            raise FileExistsError(f"{self.final} already exists")
        os.rename(self.staging, self.final)
        self.published = True
        self.lock.unlink(missing_ok=True)
        return self.final

    def discard(self) -> None:
        """Remove the staging folder (used when nothing should be published)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        self.lock.unlink(missing_ok=True)

