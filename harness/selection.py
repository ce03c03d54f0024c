"""Which selectors a run executes: the cadence's list, narrowed by --selector and by changed files.

Path filters are glob patterns on repository-relative POSIX paths (``*`` crosses ``/``, so
``ptycho_torch/*`` covers the whole package). A selector with no filter (its own ``paths``, or
else the cadence's) is always mandatory.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from harness.catalog import Cadence, Catalog, Selector
from harness.errors import HarnessError


@dataclass
class Selection:
    run: list[Selector]
    not_required: dict[str, str] = field(default_factory=dict)


def _git(root: Path, argv: list[str], what: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(  # noqa: S603 - argv list; refs are passed after --end-of-options
            ["git", *argv], cwd=root, capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HarnessError(f"--base {what}: cannot run git: {exc}") from None


def resolve_base(root: Path, base: str) -> str:
    """The commit ``base`` names, as a full SHA; a usage error for anything else.

    The ref reaches git only after ``--end-of-options`` (so ``--output=FILE`` is a ref name, not
    an option), and a ref that names no commit stops the run: an empty list of changed files
    would select nothing and pass the gate without running a test.
    """
    shown = repr(base)
    if not base.strip() or base.startswith("-") or any(ord(c) < 32 for c in base):
        raise HarnessError(f"--base {shown}: expected a git ref (branch, tag or commit), not an option or blank")
    done = _git(root, ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{base}^{{commit}}"], shown)
    sha = done.stdout.strip()
    if done.returncode != 0 or len(sha) < 40:
        raise HarnessError(f"--base {shown}: names no commit in {root} (fetch it first, e.g. "
                           f"`git fetch origin {base}`)")
    return sha


def changed_files_from_git(root: Path, base: str) -> list[str]:
    """Files changed between the merge base of ``base`` and HEAD (what a PR changes)."""
    sha = resolve_base(root, base)
    done = _git(root, ["diff", "--name-only", "--end-of-options", f"{sha}...HEAD"], repr(base))
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"
        raise HarnessError(f"--base {base!r}: git diff failed in {root}: {detail}")
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def changed_files_from_file(path: str) -> list[str]:
    """One path per line; ``-`` reads standard input. Blank lines and ``#`` comments are skipped."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise HarnessError(f"--changed-files {path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise HarnessError(f"--changed-files {path}: not UTF-8 text (offset {exc.start})") from None
    lines = (line.strip() for line in text.splitlines())
    return [line.removeprefix("./") for line in lines if line and not line.startswith("#")]


def matching(patterns: tuple[str, ...], files: list[str]) -> list[str]:
    return [name for name in files if any(fnmatchcase(name, pattern) for pattern in patterns)]


def select(catalog: Catalog, cadence: Cadence, requested: list[str] | None, changed: list[str] | None) -> Selection:
    """The selectors to run, in catalog order of the cadence, and the ones the changes do not require."""
    names = list(cadence.selectors)
    if requested:
        for name in requested:
            catalog.selector(name)  # unknown name -> ConfigError listing the valid ones
            if name not in names and not cadence.any_selector:
                raise HarnessError(
                    f"--selector {name}: not part of cadence {cadence.name!r} "
                    f"({', '.join(names)}); use --cadence manual to run any selector"
                )
        names = [name for name in dict.fromkeys(requested)]
    selection = Selection(run=[])
    for name in names:
        selector = catalog.selectors[name]
        patterns = selector.paths or cadence.paths
        if changed is not None and patterns and not requested:
            hits = matching(patterns, changed)
            if not hits:
                selection.not_required[name] = (
                    f"not required: none of the {len(changed)} changed files matches {', '.join(patterns)}"
                )
                continue
        selection.run.append(selector)
    return selection
