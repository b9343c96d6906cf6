"""PID 1's duties, as tini does them: start the child, forward signals, reap every zombie,
report the child's exit code.

Where it differs: `spawn` and `fork` also run briefly in the child they make, before it execs or
goes on in this program's code.

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
import sys
import threading
import time
from collections.abc import Callable, Mapping

from ..common import log, procfs
from ..common.exits import Exit, by_signal

_LOG = log.get("reaper")

# Everything that can be caught. SIGKILL and SIGSTOP cannot be blocked at all.
WAITED = frozenset(range(1, 32)) - {signal.SIGKILL, signal.SIGSTOP}
# What a one-off child receives: everything but the reaping signal and job control, which would
# stop a process that has no terminal to be resumed from.
FORWARDED_TO_COMMAND = WAITED - {signal.SIGCHLD, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
_PYTHON_IGNORED = (signal.SIGPIPE, signal.SIGXFSZ)
# What a Python program finds at its start, where an exec'd one finds SIG_DFL everywhere.
_PYTHON_START: Mapping[int, Callable[[int, object], object] | int] = {
    signal.SIGINT: signal.default_int_handler,
    **dict.fromkeys(_PYTHON_IGNORED, signal.SIG_IGN),
}


def ignored_at_start() -> frozenset[int]:
    """The signals whoever started us ignores (as `nohup` does SIGHUP, a job-control shell SIGTTIN
    and SIGTTOU for a background job): the child must ignore them too, as it would without an init
    in between (tini passes them on the same way). Asked before any handler of ours is installed.
    SIGCHLD is ours (the reaping); SIGPIPE and SIGXFSZ are left out: Python ignores those itself,
    so their origin is unknowable."""
    return frozenset(
        signum
        for signum in WAITED - {signal.SIGCHLD, *_PYTHON_IGNORED}
        if signal.getsignal(signum) == signal.SIG_IGN
    )


def current_mask() -> set[int]:
    """The signals blocked now (before `block_signals`: the mask we were started with)."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, ())


def block_signals() -> set[int]:
    """Block every catchable signal; return the mask to give back to children."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, WAITED)


def exit_code(wait_status: int) -> int:
    """The shell's convention: the exit code, or 128+N for a child killed by signal N."""
    code = os.waitstatus_to_exitcode(wait_status)
    return by_signal(-code) if code < 0 else code


def spawn(
    argv: tuple[str, ...],
    env: Mapping[str, str],
    cwd: str,
    original_mask: set[int],
    ignored: frozenset[int],
    *,
    take_terminal: bool = False,
) -> int:
    """Fork and exec `argv` in its own process group with the original signal mask and the signals
    the caller ignored still ignored; return its pid.

    When exec fails the child itself logs why and exits 127 (not found) or 126 (not executable),
    the codes a shell uses, which then pass through as the init's own.
    """
    pid = os.fork()
    if pid:
        return pid
    code: int = Exit.NOT_EXECUTABLE
    try:
        _leave(cwd, take_terminal)
        # Python ignores SIGPIPE and SIGXFSZ for itself, and an ignored signal stays ignored
        # across execve: a `yes | head` in the child would never end.
        _reset_signals(original_mask, ignored, {})
        os.execvpe(argv[0], list(argv), dict(env))
    except OSError as error:
        missing = error.errno in (errno.ENOENT, errno.ENOTDIR)
        code = Exit.NOT_FOUND if missing else Exit.NOT_EXECUTABLE
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


def fork(
    main: Callable[[], int],
    env: Mapping[str, str],
    cwd: str,
    original_mask: set[int],
    ignored: frozenset[int],
) -> int:
    """Fork a child that goes on in this program's code, set up as `spawn` sets up one that execs
    this program again: its own process group, `cwd`, the environment `env`, the signals as a
    Python program finds them at its start (the caller's ignored ones still ignored) and the
    original mask. The child runs `main()` and exits with what it returns; return its pid.

    Only where `alone()`: a lock another thread held at the fork would stay held in the child."""
    pid = os.fork()
    if pid:
        return pid
    code: int = Exit.SOFTWARE
    try:
        _leave(cwd, take_terminal=False)
        _close_inherited()
        os.environ.clear()  # unsetenv too: what the child execs sees only `env`
        os.environ.update(env)
        # Our handlers (PID 1's stop flag) would run in the child; exec would have reset them.
        _reset_signals(original_mask, ignored, _PYTHON_START)
        code = main()
    except SystemExit as leaving:  # sys.exit() in `main`: its code, as the interpreter would
        code = leaving.code if isinstance(leaving.code, int) else 0 if leaving.code is None else 1
    except BaseException as error:  # as __main__ does: one JSON line, never a traceback
        log.event(_LOG, "error", "init_crashed", f"unexpected error: {error!r}", error=type(error).__name__)
    finally:
        # Never return into the parent's code; os._exit flushes nothing, so flush what is buffered.
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def alone() -> bool:
    """Whether the calling thread is this process's only one, as the kernel counts them (threads a
    library started included); Python's own count where /proc is not mounted."""
    threads = procfs.thread_count()
    return threading.active_count() == 1 if threads is None else threads == 1


def _close_inherited() -> None:
    """In a forked child: close what an exec would, every descriptor above stderr that is
    close-on-exec (Python opens all of its own so): PID 1's files and sockets, the service
    manager's among them, are not the child's. The objects that own them stay unused, and
    unfinalized, in the parent's frames, which the child never returns to."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:  # no /proc: they stay open, unused
        return
    for fd in map(int, names):
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed already
            if fd > 2 and not os.get_inheritable(fd):
                os.close(fd)


def _leave(cwd: str, take_terminal: bool) -> None:
    """In a forked child: leave PID 1's process group (for the terminal too) and its cwd."""
    # Own process group: a Ctrl-C on the terminal or a kill of our group is not doubled by our
    # own forwarding.
    os.setpgid(0, 0)
    if take_terminal:
        # Make the child the terminal's foreground group (interactive `docker run -it`); this is
        # allowed only because SIGTTOU is still blocked at this point.
        os.tcsetpgrp(0, os.getpgrp())
    os.chdir(cwd)


def _reset_signals(
    original_mask: set[int],
    ignored: frozenset[int],
    start: Mapping[int, Callable[[int, object], object] | int],
) -> None:
    """Every disposition as the program starting in this child should find it (`start`, SIG_DFL
    for the rest), what our caller ignored still ignored (tini and gosu do the same), then the
    original mask: dispositions first, while every signal is still blocked."""
    for signum in WAITED:
        signal.signal(signum, signal.SIG_IGN if signum in ignored else start.get(signum, signal.SIG_DFL))
    signal.pthread_sigmask(signal.SIG_SETMASK, original_mask)


def reap(main_pid: int) -> tuple[int | None, int]:
    """Collect every exited child; return `main_pid`'s wait status if it exited, and how many
    others were collected (orphans the kernel gave PID 1: the zombies an init is there for)."""
    main_status, others = None, 0
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return main_status, others
        if pid == 0:
            return main_status, others
        if pid == main_pid:
            main_status = status
        else:
            others += 1


def supervise_child(
    pid: int,
    forward: frozenset[int],
    *,
    on_signal: Callable[[int], None] | None = None,
    tick: Callable[[float], None] | None = None,
    on_reaped: Callable[[int], None] | None = None,
    tick_interval_s: float = 0.25,
) -> int:
    """Run PID 1's loop until `pid` exits; return its wait status. `on_reaped(n)`: n orphans were
    reaped."""
    while True:
        info = signal.sigtimedwait(WAITED, tick_interval_s)
        if info is None or info.si_signo == signal.SIGCHLD:
            status, orphans = reap(pid)
            if orphans and on_reaped is not None:
                on_reaped(orphans)
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
