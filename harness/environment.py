"""Capture the environment of a run: host, git revision, package versions, ``env.txt``.

Versions come from package metadata (torch and tensorflow are never imported here). ``env.txt``
follows brief §3.5 step 2: ``python -V``, ``pip show torch lightning``, the CPU model and count.
"""

from __future__ import annotations

import inspect
import os
import platform
import shutil
import socket
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

from harness import __version__
from harness.report_model import GitInfo, HostInfo

VERSION_PACKAGES = ("torch", "lightning", "tensorflow", "tensorflow-cpu", "numpy", "pytest", "pytest-json-report", "pytest-timeout")
PIP_SHOW_PACKAGES = ("torch", "lightning", "tensorflow-cpu", "tensorflow")


def _run(argv: list[str], cwd: Path | None = None, timeout: float = 30,
         env: Mapping[str, str] | None = None) -> tuple[int, str]:
    try:
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,  # noqa: S603
                              env=None if env is None else dict(env))
    except (OSError, subprocess.TimeoutExpired) as exc:
        return -1, str(exc)
    return done.returncode, (done.stdout + done.stderr).strip()


def cpu_model() -> str | None:
    """The CPU model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def host_info() -> HostInfo:
    """This machine. ``host_key`` groups runtime history: ``$HARNESS_HOST``, else CPU model x count
    (stable across CI runners of one class, unlike their host names)."""
    model = cpu_model()
    count = os.cpu_count()
    key = os.environ.get("HARNESS_HOST") or f"{model or platform.machine()} x{count}"
    return HostInfo(hostname=socket.gethostname(), host_key=key, platform=platform.platform(), cpu_model=model, cpu_count=count)


def git_info(root: Path) -> GitInfo:
    """HEAD's sha and branch, and whether the tree has uncommitted changes (None outside git)."""
    if shutil.which("git") is None:
        return GitInfo()
    code, sha = _run(["git", "rev-parse", "HEAD"], cwd=root)
    if code != 0:
        return GitInfo()
    _, branch = _run(["git", "rev-parse", "--abbrev-ref", "HEAD"], cwd=root)
    code, status = _run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root)
    branch = os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME") or branch
    return GitInfo(sha=sha, branch=branch or None, dirty=bool(status) if code == 0 else None)


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version(), "harness": __version__}
    for name in VERSION_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def describe_packages(names: list[str], full: bool = False) -> str:
    """``pip show``'s main fields from package metadata (and, with ``full``, every installed
    package as ``name==version``). Self-contained: its source also runs under another interpreter.
    ``pip show`` itself scans every installed distribution and took 16 s on the shared 2-core machine."""
    import re
    from importlib import metadata

    blocks = []
    for name in names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            blocks.append(f"WARNING: Package(s) not found: {name}")
            continue
        meta = dist.metadata
        requires = sorted({m.group(0) for r in (dist.requires or []) if "extra ==" not in r
                           for m in [re.match(r"[A-Za-z0-9_.-]+", r)] if m})
        blocks.append("\n".join([
            f"Name: {meta['Name']}", f"Version: {dist.version}", f"Summary: {meta.get('Summary', '')}",
            f"Location: {dist.locate_file('')}", f"Requires: {', '.join(requires)}",
        ]))
    text = "\n---\n".join(blocks)
    if full:
        installed = sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())
        text += "\n\n$ pip freeze (from package metadata)\n" + "\n".join(installed)
    return text


def _packages_of(python: str, full: bool, env: Mapping[str, str], cwd: Path) -> str:
    """describe_packages() as ``python`` sees it with ``env`` in ``cwd`` (where pytest runs: its
    folder is on the tests' ``sys.path``), asked of that interpreter itself (a subprocess running
    the function's own source). Never answered in this process: two virtual environments built on
    one base Python share its resolved binary, and the harness's packages are not the tests'."""
    source = inspect.getsource(describe_packages)
    call = f"{source}\nprint(describe_packages({list(PIP_SHOW_PACKAGES)!r}, {full!r}))"
    return _run([python, "-c", call], cwd=cwd if cwd.is_dir() else None, timeout=60, env=env)[1]


def env_text(python: str, root: Path, full: bool = False, git: GitInfo | None = None,
             env: Mapping[str, str] | None = None) -> str:
    """The contents of ``env.txt`` (brief §3.5 step 2); ``full`` adds every installed package (weekly).
    ``git``: the revision when the caller has already asked git (else it is asked here). ``env``:
    the variables the interpreter is asked with (default: a selector's, without the selector's
    own); never the harness's secrets, whose values are redacted from the text all the same."""
    from harness.selector_env import SecretRedactor, interpreter_environment

    env = interpreter_environment(python) if env is None else env
    sections = []
    _, version = _run([python, "-V"], env=env)
    sections.append(f"$ python -V\n{version}")
    shown = _packages_of(python, full, env, root)
    sections.append(f"$ pip show {' '.join(PIP_SHOW_PACKAGES)} (from package metadata)\n{shown}")
    if shutil.which("lscpu"):
        _, cpu = _run(["lscpu"])
        wanted = [line for line in cpu.splitlines() if line.startswith(("Model name", "CPU(s)"))]
        sections.append("$ lscpu | grep -E 'Model name|CPU\\(s\\)'\n" + "\n".join(wanted))
    else:
        sections.append(f"# CPU\nModel name: {cpu_model()}\nCPU(s): {os.cpu_count()}")
    sections.append(f"# platform\n{platform.platform()}\nhost: {socket.gethostname()}")
    git = git if git is not None else git_info(root)
    sections.append(f"# git\nsha: {git.sha}\nbranch: {git.branch}\ndirty: {git.dirty}")
    text, _ = SecretRedactor().redact(("\n\n".join(sections) + "\n").encode("utf-8", errors="replace"))
    return text.decode("utf-8")
