"""The guard program between the harness and each selector's pytest (see harness.process_tree).

The harness never starts pytest directly: it starts this small guard (its own session and
process group) which starts pytest. The guard is a child subreaper (``PR_SET_CHILD_SUBREAPER``),
so whatever pytest leaves behind (a CLI under a killed test, a daemon that called ``setsid``) is
reparented to it rather than to PID 1, and it gets SIGTERM from the kernel when the harness dies
(``PR_SET_PDEATHSIG``), even when the harness was killed with SIGKILL and could do nothing itself.
On that signal, on SIGHUP, or as soon as pytest has exited, it kills every process below it,
reaps them, and ends the way pytest ended (same exit code or same signal), so the harness's
``os.wait4`` on the guard sees pytest's status and the CPU time of the whole tree.

SIGINT sent to the group reaches pytest (which then writes its partial report) and is ignored by
the guard.

The guard runs as ``python -I -S process_guard.py`` and imports nothing but the standard library,
so it starts in a few milliseconds whichever interpreter runs the tests.
"""

from __future__ import annotations

import os
import signal
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36

# Python ignores these at start-up; the program under the guard gets the usual defaults.
_RESET_TO_DEFAULT = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGPIPE", "SIGXFSZ", "SIGINT", "SIGTERM", "SIGHUP")) if s is not None
)


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


# -- the guard process ----------------------------------------------------------------------------


def _live_descendants(root: int) -> list[int]:
    """Every live (not zombie) process below ``root``, parents before children, read from /proc
    (no CONFIG_PROC_CHILDREN needed)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may contain spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) < 2 or fields[0] in (b"Z", b"X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found: list[int] = []
    queue = [root]
    while queue:
        for pid in children.get(queue.pop(0), []):
            found.append(pid)
            queue.append(pid)
    return found


def _kill_everything_below(me: int, patience_s: float = 5.0) -> None:
    """SIGKILL the whole tree below the guard, again until nothing is left alive: a process
    forked while its parent was being killed is reparented to the guard (subreaper) and found on
    the next pass. Reaping is left to the guard's main loop, which records pytest's status."""
    deadline = time.monotonic() + patience_s
    while True:
        pids = _live_descendants(me)
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.01)


def _end_like(status: int) -> None:
    """Exit with the child's exit code, or die of the signal that killed it."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        prctl = _prctl()
        if prctl is not None:
            prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # the child's SIGABRT must not leave a core of the guard
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
        os.kill(os.getpid(), signum)
        os._exit(128 + signum)  # a signal whose default is not to terminate
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 1)


def guard_main(argv: list[str]) -> None:
    """``process_guard.py STATUS_FD PARENT_PID -- PROGRAM ARGS...``: see the module docstring.
    One line goes to STATUS_FD: ``ok`` once PROGRAM runs, ``error ERRNO MESSAGE`` if it could not
    start (the harness turns that into the selector's start error)."""
    status_fd, parent = int(argv[1]), int(argv[2])
    command = argv[4:]
    me = os.getpid()
    prctl = _prctl()
    tearing_down = False

    def tear_down(signum: int, frame: object) -> None:
        nonlocal tearing_down
        tearing_down = True
        _kill_everything_below(me)

    signal.signal(signal.SIGTERM, tear_down)
    signal.signal(signal.SIGHUP, tear_down)
    signal.signal(signal.SIGINT, lambda signum, frame: None)  # meant for pytest, which gets it too
    if prctl is not None:
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the harness died before the parent-death signal was armed
        os.write(status_fd, b"error 0 the harness exited while the selector was starting\n")
        os._exit(1)
    try:
        child = os.posix_spawnp(command[0], command, dict(os.environ), setsigdef=_RESET_TO_DEFAULT, setsigmask=())
    except OSError as exc:
        os.write(status_fd, f"error {exc.errno or 0} {exc.strerror or exc}\n".encode())
        os._exit(127)
    if tearing_down:  # the signal came while the program was being started: it goes too
        _kill_everything_below(me)
    os.write(status_fd, b"ok\n")
    os.close(status_fd)

    child_status: int | None = None
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if pid == child:
            child_status = status
            # pytest is done: whatever it left running goes now, not when the harness ends.
            _kill_everything_below(me)
    if child_status is None:  # unreachable: the loop only ends once every child was reaped
        os._exit(1)
    _end_like(child_status)


if __name__ == "__main__":
    guard_main(sys.argv)
