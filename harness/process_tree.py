"""Start, wait for and stop a selector's whole process tree: the one mechanism for the runner
and ``harness reproduce``.

Each program runs under ``harness/process_guard.py`` in its own session: the guard is a child
subreaper that the kernel signals when the harness dies (SIGKILL included), and it kills every
process below it then, when pytest exits, or when asked. ``os.wait4`` on the guard gives pytest's
exit status and the CPU time of the whole tree (the guard reaps every descendant).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from harness import process_guard

GUARD = Path(process_guard.__file__).resolve()


class StartError(OSError):
    """The program under the guard could not be started (errno and message say why)."""


@dataclass(frozen=True)
class Finished:
    """How a guarded process ended: ``returncode`` as subprocess reports it (negative: killed
    by that signal) and the CPU seconds (user + system) of its whole tree."""

    returncode: int
    cpu_s: float


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (one owned by another user counts): stale lock files
    and staging folders name the process that made them."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def parent_death_preexec(signum: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel send ``signum`` to the child when the thread that
    started it exits (Linux; ``None`` elsewhere). Resolved before any fork, so the child only
    calls a ready function pointer."""
    prctl = process_guard._prctl()
    if prctl is None:
        return None

    def set_signal() -> None:
        prctl(process_guard.PR_SET_PDEATHSIG, int(signum), 0, 0, 0)

    return set_signal


_GUARD_PREEXEC = parent_death_preexec(signal.SIGTERM)


def start_guarded(argv: list[str], *, cwd: Path, env: dict[str, str], stdout: IO | int | None,
                  stderr: IO | int | None) -> subprocess.Popen:
    """Start ``argv`` under a guard in a new session; returns once the program runs.

    Call it from a thread that lives as long as the process (the parent-death signal follows
    the starting thread). Raises ``StartError`` when the program could not start, ``OSError``
    when the guard could not (a missing ``cwd``).
    """
    read_fd, write_fd = os.pipe()
    try:
        process = subprocess.Popen(  # noqa: S603 - argv list, never a shell
            [sys.executable, "-I", "-S", str(GUARD), str(write_fd), str(os.getpid()), "--", *argv],
            cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
            start_new_session=True, pass_fds=(write_fd,),
            preexec_fn=_GUARD_PREEXEC,  # noqa: PLW1509 - no locks taken, see parent_death_preexec
        )
    except OSError:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd, "rb") as status:
        line = status.readline().decode("utf-8", "replace").strip()
    if line == "ok":
        return process
    wait_tree(process)
    if line.startswith("error "):
        _, number, message = (line.split(" ", 2) + [""])[:3]
        raise StartError(int(number) if number.isdigit() else 0, message)
    raise StartError(0, "the process guard exited before starting it")


def wait_tree(process: subprocess.Popen) -> Finished:
    """Wait for a guarded process; its status and the CPU time of its whole tree (``wait4``'s
    rusage counts every descendant the guard reaped). Call it from one thread only, and use
    neither ``Popen.wait`` nor ``Popen.poll`` on the same process."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return Finished(returncode=process.returncode, cpu_s=round(usage.ru_utime + usage.ru_stime, 3))


def interrupt_tree(process: subprocess.Popen) -> None:
    """SIGINT to the whole group: pytest writes its partial report; the guard ignores it."""
    _signal_group(process, signal.SIGINT)


def kill_tree(process: subprocess.Popen) -> None:
    """Ask the guard to SIGKILL everything below it (it then ends as its pytest did)."""
    try:
        os.kill(process.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def kill_group(process: subprocess.Popen) -> None:
    """The last resort, for a guard that no longer answers: SIGKILL to the whole group."""
    _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# Stopping a tree: SIGINT first (pytest writes a partial, "interrupted" report), then the guard's
# tear-down, then SIGKILL to the group, each step this many seconds after the previous one.
STOP_STEPS = (interrupt_tree, kill_tree, kill_group)


def stop_tree(process: subprocess.Popen, finished: Callable[[], bool], grace_s: float) -> None:
    """Stop a guarded process from a thread that is not the one waiting for it, step by step
    (``STOP_STEPS``, ``grace_s`` apart) until ``finished()`` says the waiting thread saw it end."""
    for step in STOP_STEPS:
        if finished():
            return
        step(process)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and not finished():
            time.sleep(0.05)
