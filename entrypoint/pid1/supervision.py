"""PID 1's side of supervisord: the standby forked at the boot's start and its hand-over, the
config rendered at every boot, supervisord run as PID 1's child, and the stop deadline.

Where it differs: `Standby.fork` runs as root, right after the settings are read, before the boot
(the standby's own life is in `supervisord/standby`).

supervisord gives operators `supervisorctl` and process-group stops; the restart policy is not
its own (`autorestart=false`): the crash guard, loaded into supervisord's process from its config,
owns it, because supervisord alone restarts a long-running crasher forever and gives up on instant
ones by racing its 1 s loop. supervisord runs in a child forked from PID 1: this program is not
started a second time. The child is forked at the start of the boot (a `Standby`), so that it
imports supervisord and the crash guard while PID 1 boots.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shlex
import signal
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..common import handover, log, rundir
from ..common.exits import Exit
from ..common.plans import Program, RestartPolicy
from . import reaper

_LOG = log.get("supervise")

# A standby is ready within a fraction of a second of its fork; one that is not after this long is
# stuck (a machine that stalls it this long stalls everything): PID 1 makes supervisord's process
# without it.
READY_TIMEOUT_S = 10.0
# The signals operators send to PID 1 that supervisord has a meaning for.
FORWARDED = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2})


class Standby:
    """PID 1's handle on supervisord's process, forked at the start of the boot, before the boot's
    own modules are imported: the child becomes the target user at once, imports what supervisord
    and the crash guard run on while PID 1 boots (on another CPU, and without the boot's modules in
    its memory), then waits for its orders (`common/handover`), which PID 1 gives once the boot is
    done (`hand_over`). When the boot ends the container instead, PID 1's exit closes its end of
    their socket, and the standby, reading the end of file, ends without a word."""

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid = pid
        self._channel: socket.socket | None = channel

    @classmethod
    def fork(cls, life: Callable[[socket.socket], int], ignored: frozenset[int]) -> Standby | None:
        """Fork the standby, which lives `life(channel)` (its end of the socket pair) and exits with
        what it returns. None when the kernel refuses the fork now (EAGAIN: a pids limit): PID 1
        then forks supervisord's process after the boot."""
        ours, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        os.set_inheritable(its.fileno(), True)  # the fork closes what an exec would close
        # Neither process' cyclic collector walks what they share from here on: a full
        # collection writes to every object it visits, and each page written is copied.
        gc.freeze()
        mask = reaper.current_mask()
        with its:
            try:
                pid = reaper.fork(lambda: life(its), dict(os.environ), "/", mask, ignored)
            except OSError:
                ours.close()
                return None
        return cls(pid, ours)

    def hand_over(self, env: Mapping[str, str], config: str) -> bool:
        """Wait until the standby is ready, then give it its orders; False when it ended without
        being ready (it could not become the user, or import) or is stuck (it is then ended)."""
        if self._channel is None:
            return False
        try:
            handover.give(self._channel, handover.Orders(config, env), READY_TIMEOUT_S)
        except OSError:  # a timeout too
            self.cancel()
            return False
        self._channel = None  # closed by `give`: its end of file completes the orders
        return True

    def cancel(self) -> None:
        """End a standby that got no orders, now (a no-op once it got them)."""
        if self._channel is None:
            return
        self._channel.close()
        self._channel = None
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)  # it holds nothing yet: no file, no child
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


@dataclass(frozen=True)
class Launch:
    """How supervisord's process is made: the standby forked at the boot's start, given its orders;
    else a child forked from PID 1 now; both run `serve(config)` (supervisord's main, with the waker
    and the crash guard in its process). Where a fork is not safe, this same program is exec'd again
    as `<command> supervisord -c CONFIG`, which serves the same way."""

    serve: Callable[[str], int]
    command: tuple[str, ...]
    # The XML-RPC interfaces supervisord loads from its config: {section name: factory}.
    interfaces: Mapping[str, str]
    standby: Standby | None = None


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
    program: Program, policy: RestartPolicy, layout: Layout, interfaces: Mapping[str, str], *, autostart: bool
) -> str:
    """The whole supervisord.conf, with the XML-RPC `interfaces` ({section name: factory}) it loads.
    Secrets never go in here: the program inherits them from supervisord's environment, which is
    ours."""
    sections: dict[str, dict[str, str]] = {
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
            "logfile": layout.path(rundir.SUPERVISOR_LOG),
            "logfile_maxbytes": "1MB",
            "logfile_backups": "1",
            "loglevel": "info",
            "pidfile": layout.path(rundir.SUPERVISOR_PID),
            "childlogdir": layout.run_dir,
            # Defaults (1024/200) make supervisord refuse to start under a lower rlimit as non-root.
            "minfds": "64",
            "minprocs": "16",
        },
        # Each factory gets the run dir, where the init left the crash guard's orders
        # (common/guardplan.py); supervisord's own interface takes it and ignores it.
        **{
            f"rpcinterface:{name}": {
                "supervisor.rpcinterface_factory": factory,
                "run_dir": _value(layout.run_dir),
            }
            for name, factory in interfaces.items()
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
            "stopwaitsecs": str(policy.stop_clocks.supervisord_s),
            # Straight to the container's streams, unchanged; a pipe cannot be rotated (maxbytes=0).
            "stdout_logfile": "/dev/stdout",
            "stdout_logfile_maxbytes": "0",
            "stderr_logfile": "/dev/stderr",
            "stderr_logfile_maxbytes": "0",
            # The crash guard keeps the last lines of both (they explain a refusal or a hold, and
            # what the program was still doing when its stop timeout ran out).
            "stdout_events_enabled": "true",
            "stderr_events_enabled": "true",
        },
    }
    lines = ["; Rendered by the init at every boot: edits here are lost at the next start."]
    for section, options in sections.items():
        lines.append(f"\n[{section}]")
        lines.extend(f"{key}={value}" for key, value in options.items())
    return "\n".join(lines) + "\n"


def write_config(layout: Layout, text: str) -> None:
    rundir.replace_file(layout.config, text.encode(), mode=0o600)


def clear_markers(layout: Layout) -> None:
    """Markers and figures from a previous run of this container would be read as this run's."""
    for name in (
        rundir.STOPPING_MARKER,
        rundir.EXIT_CODE,
        rundir.GUARD_STATE,
        rundir.ZOMBIES_REAPED,
        rundir.METRICS_TEXTFILE,
    ):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(layout.path(name))


class _Stop:
    """What PID 1 does when asked to stop: tell the crash guard, forward, then keep a deadline."""

    def __init__(self, layout: Layout, pid: int, policy: RestartPolicy, on_stop: Callable[[], None]) -> None:
        self.layout = layout
        self.pid = pid
        self.deadline: float | None = None
        self.budget_s = policy.stop_clocks.pid1_s
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
    launch: Launch,
    original_mask: set[int],
    ignored: frozenset[int],
    *,
    on_stop: Callable[[], None],
    tick: Callable[[float], None],
    on_reaped: Callable[[int], None],
) -> int:
    """Run supervisord (already configured) until it exits; return the init's exit code.
    `on_reaped(n)`: PID 1 reaped n orphans."""
    if launch.standby is not None and launch.standby.hand_over(program.env, layout.config):
        pid, how = launch.standby.pid, "standby"
    elif reaper.alone():
        gc.freeze()  # as `Standby.fork` does
        pid = reaper.fork(lambda: launch.serve(layout.config), program.env, "/", original_mask, ignored)
        how = "fork"
    else:  # a thread of the boot is still alive (the fork would copy its locks, held or not)
        argv = (*launch.command, "supervisord", "-c", layout.config)
        pid = reaper.spawn(argv, program.env, "/", original_mask, ignored)
        how = "exec"
    log.event(
        _LOG,
        "info",
        "supervisor_started",
        f"supervisord started ({how})",
        pid=pid,
        config=layout.config,
        how=how,
    )
    stop = _Stop(layout, pid, policy, on_stop)

    def on_tick(now: float) -> None:
        stop.tick(now)
        tick(now)

    status = reaper.supervise_child(
        pid, FORWARDED, on_signal=stop.on_signal, tick=on_tick, on_reaped=on_reaped
    )
    code = reaper.exit_code(status)
    requested = rundir.read_exit_code(layout.run_dir)
    if requested is not None:
        exit_code = requested
    elif stop.requested:
        exit_code = Exit.OK
    else:
        exit_code = code
    level = "info" if exit_code == 0 else "error"
    log.event(
        _LOG, level, "supervisor_exited", "supervisord exited", supervisor_exit_code=code, exit_code=exit_code
    )
    return exit_code
