"""PID 1's duties, as tini does them: spawn the child, forward signals, reap every zombie,
report the child's exit code.

Every catchable signal is *blocked* and collected with sigtimedwait(2) instead of being handled:
the kernel drops signals that PID 1 has no handler for, but keeps blocked ones pending, and a
synchronous wait has no re-entrancy to reason about. The child gets the original mask back before
exec, or it would start with every signal blocked (an inherited mask survives execve).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable, Mapping

from ..common import log

_LOG = log.get("reaper")

# Everything that can be caught. SIGKILL and SIGSTOP cannot be blocked at all.
WAITED = frozenset(range(1, 32)) - {signal.SIGKILL, signal.SIGSTOP}
# What a one-off child receives: everything but the reaping signal and job control, which would
# stop a process that has no terminal to be resumed from.
FORWARDED_TO_COMMAND = WAITED - {signal.SIGCHLD, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
_PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)

EXIT_NOT_FOUND = 127
EXIT_NOT_EXECUTABLE = 126


def block_signals() -> set[int]:
    """Block every catchable signal; return the mask to give back to children."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)


def exit_code(wait_status: int) -> int:
    """The shell's convention: the exit code, or 128+N for a child killed by signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def spawn(
    argv: tuple[str, ...],
    env: Mapping[str, str],
    cwd: str,
    original_mask: set[int],
    *,
    take_terminal: bool = False,
) -> int:
    """Fork and exec `argv` in its own process group with the original signal mask; return its pid.

    When exec fails the child itself logs why and exits 127 (not found) or 126 (not executable),
    the codes a shell uses, which then pass through as the init's own.
    """
    pid = os.fork()
    if pid:
        return pid
    code = EXIT_NOT_EXECUTABLE
    try:
        # Own process group: a Ctrl-C on the terminal or a kill of our group is not doubled by
        # our own forwarding.
        os.setpgid(0, 0)
        if take_terminal:
            # Make the child the terminal's foreground group (interactive `docker run -it`); this
            # is allowed only because SIGTTOU is still blocked at this point.
            os.tcsetpgrp(0, os.getpgrp())
        os.chdir(cwd)
        # Python ignores SIGPIPE and SIGXFSZ for itself, and an ignored signal stays ignored
        # across execve: a `yes | head` in the child would never end. Defaults back, then the mask.
        for signum in _PYTHON_IGNORED:
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, original_mask)
        os.execvpe(argv[0], list(argv), dict(env))
    except OSError as error:
        missing = error.errno in (errno.ENOENT, errno.ENOTDIR)
        code = EXIT_NOT_FOUND if missing else EXIT_NOT_EXECUTABLE
        log.event(
            _LOG,
            "error",
            "command_not_found" if missing else "command_not_executable",
            f"cannot run {argv[0]}: {error.strerror}",
            command=argv[0],
            errno=error.errno,
            exit_code=code,
        )
    finally:
        os._exit(code)  # never return into the parent's code from a forked child


def reap(main_pid: int) -> int | None:
    """Collect every exited child (orphans included); return `main_pid`'s wait status if it exited."""
    main_status = None
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return main_status
        if pid == 0:
            return main_status
        if pid == main_pid:
            main_status = status


def supervise_child(
    pid: int,
    forward: frozenset[int],
    *,
    on_signal: Callable[[int], None] | None = None,
    tick: Callable[[float], None] | None = None,
    tick_interval_s: float = 0.25,
) -> int:
    """Run PID 1's loop until `pid` exits; return its wait status."""
    while True:
        info = signal.sigtimedwait(WAITED, tick_interval_s)
        if info is None or info.si_signo == signal.SIGCHLD:
            status = reap(pid)
            if status is not None:
                return status
            if tick is not None:
                tick(time.monotonic())
            continue
        signum = info.si_signo
        if signum in forward:
            # ProcessLookupError: it exited already and its SIGCHLD is on the way.
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        if on_signal is not None:
            on_signal(signum)
