"""Supervise mode: render a supervisord config into the run dir and run supervisord as our child.

supervisord gives operators `supervisorctl` and process-group stops; the restart policy is not
its own (`autorestart=false`): the crash guard, an event listener run from this same program,
owns it, because supervisord alone restarts a long-running crasher forever and gives up on
instant ones by racing its 1 s loop.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..common import log, rundir
from ..common.plans import Program, RestartPolicy
from . import reaper

_LOG = log.get("supervise")

LISTENER_NAME = "crashguard"
# Past the program's own stop timeout, how long supervisord gets to finish before we kill it.
_SUPERVISOR_GRACE_S = 3.0
# The signals operators send to PID 1 that supervisord has a meaning for.
FORWARDED = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2})


@dataclass(frozen=True)
class Layout:
    """Where supervisord's files live: all in the run dir, never in /tmp (world-writable)."""

    run_dir: str

    def path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    @property
    def config(self) -> str:
        return self.path(rundir.SUPERVISOR_CONFIG)

    @property
    def socket(self) -> str:
        return self.path(rundir.SUPERVISOR_SOCKET)


def _value(text: str) -> str:
    # supervisord's config parser interpolates %(ENV_X)s: a literal % must be doubled.
    return text.replace("%", "%%")


def _command(argv: tuple[str, ...]) -> str:
    # supervisord splits `command=` with shlex, so shlex quoting round-trips any argv.
    return _value(shlex.join(argv))


def render(
    program: Program,
    policy: RestartPolicy,
    layout: Layout,
    self_command: tuple[str, ...],
    *,
    autostart: bool,
) -> str:
    """The whole supervisord.conf. Secrets never go in here: the program inherits them from
    supervisord's environment, which is ours."""
    stop_wait = max(1, round(policy.stop_timeout_s))
    sections = {
        "unix_http_server": {
            "file": layout.socket,
            # Only the owner (the target user) and root may drive supervisord.
            "chmod": "0700",
        },
        "supervisord": {
            "nodaemon": "true",
            # supervisord would copy its own log to stdout in nodaemon mode; its state changes
            # are reported as JSON by the crash guard instead, and its log stays in the run dir.
            "silent": "true",
            "logfile": layout.path("supervisord.log"),
            "logfile_maxbytes": "1MB",
            "logfile_backups": "1",
            "loglevel": "info",
            "pidfile": layout.path("supervisord.pid"),
            "childlogdir": layout.run_dir,
            # Defaults (1024/200) make supervisord refuse to start under a lower rlimit as non-root.
            "minfds": "64",
            "minprocs": "16",
        },
        "rpcinterface:supervisor": {
            "supervisor.rpcinterface_factory": "supervisor.rpcinterface:make_main_rpcinterface"
        },
        "supervisorctl": {"serverurl": f"unix://{layout.socket}"},
        f"program:{program.name}": {
            "command": _command(program.argv),
            "directory": program.cwd,
            "autostart": str(autostart).lower(),
            "autorestart": "false",
            # startsecs=0: every start is RUNNING at once and every exit an EXITED event for the
            # crash guard; startretries=0: a spawn error goes FATAL instead of supervisord's own loop.
            "startsecs": "0",
            "startretries": "0",
            "stopsignal": "TERM",
            "stopasgroup": "true",
            "killasgroup": "true",
            "stopwaitsecs": str(stop_wait),
            # Straight to the container's streams, unchanged; a pipe cannot be rotated (maxbytes=0).
            "stdout_logfile": "/dev/stdout",
            "stdout_logfile_maxbytes": "0",
            "stderr_logfile": "/dev/stderr",
            "stderr_logfile_maxbytes": "0",
            # The crash guard keeps the last stderr lines to explain a refusal.
            "stderr_events_enabled": "true",
        },
        f"eventlistener:{LISTENER_NAME}": {
            "command": _command((*self_command, LISTENER_NAME)),
            "events": "PROCESS_STATE,PROCESS_LOG_STDERR,TICK_5",
            # Never drop a state event because the gateway was chatty on stderr.
            "buffer_size": "1024",
            "autorestart": "true",
            "startsecs": "0",
            "stderr_logfile": "/dev/stderr",
            "stderr_logfile_maxbytes": "0",
        },
    }
    lines = ["; Rendered by the init at every boot: edits here are lost at the next start."]
    for section, options in sections.items():
        lines.append(f"\n[{section}]")
        lines.extend(f"{key}={value}" for key, value in options.items())
    return "\n".join(lines) + "\n"


def wake(layout: Layout, timeout_s: float = 0.2) -> bool:
    """Make supervisord act now instead of at the end of its current poll.

    supervisord starts programs, acts on signals and reaps exited ones only between two polls of
    its file descriptors, and with nothing to read a poll lasts a full second: Python retries a
    poll interrupted by a signal (PEP 475). A connection to its control socket ends the poll."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout_s)
        try:
            client.connect(layout.socket)
        except OSError:
            return False
    return True


def start_waker(layout: Layout, within_s: float = 5.0) -> None:
    """Inside supervisord, before its main loop: wake it once its socket listens (the first
    spawn), then after every signal it receives (SIGCHLD of an exited program, SIGTERM to stop),
    so a start, an exit or a `docker stop` is acted on in milliseconds instead of up to 1 s."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    # Python writes each signal's number here when one of supervisord's handlers is due.
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def run() -> None:
        deadline = time.monotonic() + within_s
        while not wake(layout) and time.monotonic() < deadline:
            time.sleep(0.01)
        while os.read(read_end, 512):
            wake(layout)

    threading.Thread(target=run, name="supervisord-waker", daemon=True).start()


def write_config(layout: Layout, text: str) -> None:
    rundir.replace_file(layout.config, text.encode(), mode=0o600)


def clear_markers(layout: Layout) -> None:
    """Markers from a previous run of this container would be read as this run's."""
    for name in (rundir.STOPPING_MARKER, rundir.EXIT_CODE, rundir.GUARD_STATE):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(layout.path(name))


class _Stop:
    """What PID 1 does when asked to stop: tell the crash guard, forward, then keep a deadline."""

    def __init__(self, layout: Layout, pid: int, policy: RestartPolicy, on_stop: Callable[[], None]) -> None:
        self.layout = layout
        self.pid = pid
        self.deadline: float | None = None
        self.budget_s = policy.stop_timeout_s + _SUPERVISOR_GRACE_S
        self.on_stop = on_stop

    @property
    def requested(self) -> bool:
        return self.deadline is not None

    def on_signal(self, signum: int) -> None:
        if signum not in reaper.STOP_SIGNALS or self.requested:
            return
        # The marker first: a gateway that exits by itself from now on must not be restarted.
        try:
            with open(self.layout.path(rundir.STOPPING_MARKER), "w", encoding="ascii") as marker:
                marker.write(f"{signum}\n")
        except OSError as error:
            log.event(_LOG, "warning", "stop_marker_failed", f"cannot mark stopping: {error.strerror}")
        self.deadline = time.monotonic() + self.budget_s
        log.event(_LOG, "info", "stop_requested", "stopping the program", signal=signal.Signals(signum).name)
        self.on_stop()

    def tick(self, now: float) -> None:
        if self.deadline is not None and now > self.deadline:
            log.event(_LOG, "error", "supervisor_kill", "supervisord did not stop in time: killing it")
            os.killpg(self.pid, signal.SIGKILL)
            self.deadline = None


def run(
    program: Program,
    policy: RestartPolicy,
    layout: Layout,
    self_command: tuple[str, ...],
    original_mask: set[int],
    *,
    on_stop: Callable[[], None],
    tick: Callable[[float], None],
) -> int:
    """Run supervisord (already configured) until it exits; return the init's exit code."""
    argv = (*self_command, "supervisord", "-c", layout.config)
    pid = reaper.spawn(argv, program.env, "/", original_mask)
    log.event(_LOG, "info", "supervisor_started", "supervisord started", pid=pid, config=layout.config)
    stop = _Stop(layout, pid, policy, on_stop)

    def on_tick(now: float) -> None:
        stop.tick(now)
        tick(now)

    status = reaper.supervise_child(pid, FORWARDED, on_signal=stop.on_signal, tick=on_tick)
    code = reaper.exit_code(status)
    requested = rundir.read_exit_code(layout.run_dir)
    if requested is not None:
        exit_code = requested
    elif stop.requested:
        exit_code = 0
    else:
        exit_code = code
    level = "info" if exit_code == 0 else "error"
    log.event(
        _LOG, level, "supervisor_exited", "supervisord exited", supervisor_exit_code=code, exit_code=exit_code
    )
    return exit_code
