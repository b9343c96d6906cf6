"""supervisord's main loop in this process, with a waker beside it, the metrics' listener when
one is asked for, and the crash guard's last words after it.

Where it differs: the waker is a thread of its own.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import threading
import time

from ..common import guardplan, rundir
from ..crashguard import plugin

# prctl(2): the calling thread's name, its `comm` (what `ps` and `top` show).
_PR_SET_NAME = 15


def serve(args: list[str]) -> int:
    """supervisord's process, forked by PID 1 or exec'd as `<init> supervisord ARGS`: the waker,
    then supervisord's own main until it returns, then the crash guard's last words."""
    from supervisor import supervisord as daemon

    # A forked supervisord has PID 1's command line: its name tells them apart in `ps` and `top`.
    # prctl, not a write to /proc/self/comm: since the drop the process is not dumpable, so the
    # kernel shows its /proc files as root's and refuses the write.
    ctypes.CDLL(None).prctl(_PR_SET_NAME, b"supervisord", 0, 0, 0)
    # The run dir is the config's: supervisord's environment is the gateway's, without our settings.
    config = next(
        (args[index + 1] for index, arg in enumerate(args[:-1]) if arg in ("-c", "--configuration")), None
    )
    if config is not None:
        run_dir = os.path.dirname(config)
        start_waker(os.path.join(run_dir, rundir.SUPERVISOR_SOCKET))
        serve_metrics(run_dir)
    try:
        daemon.main(args)
    finally:
        # What supervisord's last events lead to (a stop, a refusal) is written before we end.
        plugin.finish()
    return 0


def serve_metrics(run_dir: str) -> None:
    """The metrics over HTTP, when the init's orders give an address (its modules imported only
    then); whatever happens there, supervisord starts."""
    plan = guardplan.read(run_dir)
    if plan is None or plan.metrics is None or plan.metrics.listen is None:
        return
    from . import listener

    listener.start(run_dir, plan.metrics)


def wake(control_socket: str, timeout_s: float = 0.2) -> bool:
    """Make supervisord act now instead of at the end of its current poll.

    supervisord starts programs, acts on signals and reaps exited ones only between two polls of
    its file descriptors, and with nothing to read a poll lasts a full second: Python retries a
    poll interrupted by a signal (PEP 475). A connection to its control socket ends the poll."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        try:
            client.connect(control_socket)
        except OSError:
            return False
    return True


def start_waker(control_socket: str, within_s: float = 5.0) -> None:
    """Before supervisord's main loop: wake it once its socket listens (the first spawn), then after
    every signal it receives (SIGCHLD of an exited program, SIGTERM to stop), so a start, an exit
    or a `docker stop` is acted on in milliseconds instead of up to 1 s."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    # Python writes each signal's number here when one of supervisord's handlers is due.
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def run() -> None:
        deadline = time.monotonic() + within_s
        while not wake(control_socket) and time.monotonic() < deadline:
            time.sleep(0.01)
        while os.read(read_end, 512):
            wake(control_socket)

    threading.Thread(target=run, name="supervisord-waker", daemon=True).start()
