"""Append escalation entries to ``docs/fix_plan.md`` under the owning initiative (brief §3.5 step 4).

The ledger is only ever appended to. Each append takes an exclusive ``fcntl`` lock on the file,
re-reads it, inserts the entry at the end of the initiative's "Attempts history" (creating the
section when missing) and replaces the file atomically (temporary file, fsync, rename): a crash
leaves the old or the new ledger, never half of one, and two concurrent appends both land. The
rename gives the path a new inode, so a waiter that locked the old one notices and retries.
"""

from __future__ import annotations

import fcntl
import os
import re
import tempfile
from pathlib import Path

ATTEMPTS_HEADING = "### Attempts history"
DEFAULT_HEADER = (
    "# Fix plan — escalation ledger\n\n"
    "Escalations are appended here by `harness reproduce` (brief §3.5), one entry per attempt, under the\n"
    "owning initiative. Entries are only ever appended.\n"
)
_SECTION = re.compile(r"^## \[(?P<name>[^\]]+)\]", re.MULTILINE)


def _section_bounds(text: str, initiative: str) -> tuple[int, int] | None:
    """(start, end) of the ``## [INITIATIVE]`` section, end being the next ``## `` heading or EOF."""
    starts = [(m.start(), m.group("name").strip()) for m in _SECTION.finditer(text)]
    for index, (start, name) in enumerate(starts):
        if name == initiative:
            following = re.compile(r"^## ", re.MULTILINE).search(text, start + 3)
            return start, (following.start() if following else len(text))
    return None


def insert_entry(text: str, initiative: str, entry: str) -> str:
    """``text`` with ``entry`` appended to the initiative's attempts history; nothing else changes
    (the section, or its ``### Attempts history`` heading, is created when missing)."""
    entry = entry.strip("\n")
    if not text.strip():
        text = DEFAULT_HEADER
    bounds = _section_bounds(text, initiative)
    if bounds is None:
        return f"{text.rstrip(chr(10))}\n\n## [{initiative}]\n\n{ATTEMPTS_HEADING}\n\n{entry}\n"
    start, end = bounds
    section = text[start:end]
    heading = re.search(rf"^{re.escape(ATTEMPTS_HEADING)}[ \t]*$", section, re.MULTILINE)
    if heading is None:
        block, rest = section.rstrip("\n") + f"\n\n{ATTEMPTS_HEADING}", ""
    else:
        # The attempts list runs to the next ### heading inside the section, or to its end.
        following = re.compile(r"^### ", re.MULTILINE).search(section, heading.end())
        cut = following.start() if following else len(section)
        block, rest = section[:cut].rstrip("\n"), section[cut:]
    new_section = f"{block}\n\n{entry}\n"
    if rest:
        new_section += "\n" + rest
    if end < len(text):
        new_section = new_section.rstrip("\n") + "\n\n"
    return text[:start] + new_section + text[end:]


def append_entry(ledger: Path, initiative: str, entry: str) -> None:
    """Append under an exclusive lock with an atomic rewrite (see the module docstring)."""
    ledger = Path(ledger)
    ledger.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(ledger, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(ledger)
            except FileNotFoundError:
                continue  # replaced and removed under us: start again
            if current.st_ino != os.fstat(fd).st_ino:
                continue  # another writer renamed a new file in while we waited for the lock
            with open(fd, "r", encoding="utf-8", closefd=False) as handle:
                text = handle.read()
            updated = insert_entry(text, initiative, entry)
            _atomic_write(ledger, updated, mode=current.st_mode & 0o777)
            return
        finally:
            os.close(fd)  # releases the lock


def _atomic_write(path: Path, text: str, mode: int) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temp, mode or 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
