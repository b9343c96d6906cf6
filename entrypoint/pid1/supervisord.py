"""Supervise mode: render a supervisord config into the run dir and run supervisord as our child.

Who runs it: the init as PID 1, as the target user, after the boot (`render`, `run`, the stop
deadline), and as root at the boot's start (`Standby.fork`, after the settings are read); the
standby, `serve` and the waker it starts run inside supervisord's process, as the target user.

supervisord gives operators `supervisorctl` and process-group stops; the restart policy is not
its own (`autorestart=false`): the crash guard, loaded into supervisord's process from its config
(`crashguard/plugin`), owns it, because supervisord alone restarts a long-running crasher forever
and gives up on instant ones by racing its 1 s loop. supervisord runs in a child forked from PID 1:
this program is not started a second time. The child is forked at the start of the boot (a
`Standby`): it becomes the target user at once, imports supervisord and the crash guard while
PID 1 boots, then waits for its orders (the config, the environment) once the boot is done.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import importlib
import json
import os
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..common import log, rundir
from ..common.plans import Program, RestartPolicy
from . import reaper

_LOG = log.get("supervise")

# Imported by supervisord from its config, by name (frozen, every module of ours is bundled).
RPC_INTERFACE_FACTORY = f"{__package__}.rpcinterface:make_rpcinterface"
CRASH_GUARD_FACTORY = f"{__package__.rpartition('.')[0]}.crashguard.plugin:make_rpcinterface"
# prctl(2): the calling thread's name, its `comm` (what `ps` and `top` show).
_PR_SET_NAME = 15
# Past the program's own stop timeout, how long supervisord gets to finish before we kill it.
_SUPERVISOR_GRACE_S = 3.0
# What supervisord's process imports before it can start the program: supervisord, the parts it
# imports as its config is read and its servers made, and the interfaces its config names.
_SUPERVISORD_MODULES = (
    "supervisor.supervisord",
    "supervisor.rpcinterface",
    "supervisor.process",
    "supervisor.web",
    RPC_INTERFACE_FACTORY.partition(":")[0],
    CRASH_GUARD_FACTORY.partition(":")[0],
)
# A standby is ready within a fraction of a second of its fork; one that is not after this long is
# stuck (a machine that stalls it this long stalls everything): PID 1 makes supervisord's process
# without it.
_READY_TIMEOUT_S = 10.0
_READY = b"r"
# The signals operators send to PID 1 that supervisord has a meaning for.
FORWARDED = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2})
# A standby that could not become the user or import supervisord (PID 1 forks supervisord's
# process again after the boot).
EXIT_STANDBY_FAILED = 70


class Standby:
    """supervisord's process, forked by PID 1 at the start of the boot, before the boot's own
    modules are imported: it becomes the target user at once, then imports what supervisord and the
    crash guard run on while PID 1 boots (on another CPU, and without the boot's modules in its
    memory), then waits for its orders. PID 1 gives them once the boot is done (`hand_over`). When
    the boot ends the container instead, PID 1's exit closes its side of their socket, and the
    standby, reading the end of file, ends without a word.

    On a socket pair: the standby says it is ready (one byte, once its imports are done; its end
    closed instead when it cannot go on), then PID 1 sends its orders, one JSON object: the config's
    path and supervisord's environment (the program's, with its token: it never touches a file)."""

    def __init__(self, pid: int, channel: socket.socket) -> None:
        self.pid = pid
        self._channel: socket.socket | None = channel

    @classmethod
    def fork(
        cls, serve: Callable[[str], int], become_user: Callable[[], bool], ignored: frozenset[int]
    ) -> Standby | None:
        """Fork the standby; `become_user()` is its first step (False: it cannot, and ends). None
        when the kernel refuses the fork now (EAGAIN: a pids limit): PID 1 forks after the boot."""
        ours, its = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        os.set_inheritable(its.fileno(), True)  # the fork closes what an exec would close
        # Neither process' cyclic collector walks what they share from here on: a full
        # collection writes to every object it visits, and each page written is copied.
        gc.freeze()
        mask = reaper.current_mask()
        with its:
            try:
                pid = reaper.fork(
                    lambda: _stand_by(its, serve, become_user), dict(os.environ), "/", mask, ignored
                )
            except OSError:
                ours.close()
                return None
        return cls(pid, ours)

    def hand_over(self, env: Mapping[str, str], config: str) -> bool:
        """Wait until the standby is ready, then give it its orders; False when it ended without
        being ready (it could not become the user, or import) or is stuck (it is then ended)."""
        if self._channel is None:
            return False
        orders = json.dumps({"config": config, "env": dict(env)}).encode()
        try:
            self._channel.settimeout(_READY_TIMEOUT_S)
            if self._channel.recv(1) != _READY:
                raise ConnectionResetError("the standby ended")
            self._channel.sendall(orders)
        except OSError:  # a timeout too
            self.cancel()
            return False
        self._channel.close()  # its end of file: the orders are complete
        self._channel = None
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


def _stand_by(channel: socket.socket, serve: Callable[[str], int], become_user: Callable[[], bool]) -> int:
    """The standby's life (in the forked child): the user, the imports, the orders, supervisord."""
    try:
        if not become_user():
            return EXIT_STANDBY_FAILED
        for name in _SUPERVISORD_MODULES:
            importlib.import_module(name)
    except Exception:  # PID 1 then makes supervisord's process after the boot, which meets the
        # same fault (a user that cannot read the program) where the boot reports it
        return EXIT_STANDBY_FAILED
    try:
        with channel:
            channel.sendall(_READY)
            received = b"".join(iter(lambda: channel.recv(65536), b""))
    except OSError:  # PID 1 ended it meanwhile
        return 0
    if not received:
        return 0  # cancelled: the boot ended the container
    orders = json.loads(received)
    os.environ.clear()  # unsetenv too: the program supervisord starts sees only these
    os.environ.update(orders["env"])
    return serve(orders["config"])


@dataclass(frozen=True)
class Launch:
    """How supervisord's process is made: the standby forked at the boot's start, given its orders;
    else a child forked from PID 1 now; both run `serve(config)` (supervisord's main, with the waker
    and the crash guard in its process). Where a fork is not safe, this same program is exec'd again
    as `<command> supervisord -c CONFIG`, which serves the same way."""

    serve: Callable[[str], int]
    command: tuple[str, ...]
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


def render(program: Program, policy: RestartPolicy, layout: Layout, *, autostart: bool) -> str:
    """The whole supervisord.conf. Secrets never go in here: the program inherits them from
    supervisord's environment, which is ours."""
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
            # supervisord's own interface, but a stop always stops (see rpcinterface.py).
            "supervisor.rpcinterface_factory": RPC_INTERFACE_FACTORY
        },
        "rpcinterface:crashguard": {
            # The crash guard, in supervisord's process; its orders (common/guardplan.py) are in
            # the run dir, written by the init.
            "supervisor.rpcinterface_factory": CRASH_GUARD_FACTORY,
            "run_dir": _value(layout.run_dir),
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
            "stopwaitsecs": str(policy.stop_wait_s),
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


def serve(args: list[str], *, finish: Callable[[], None]) -> int:
    """supervisord's process, forked by PID 1 or exec'd as `<init> supervisord ARGS`: the waker,
    then supervisord's own main until it returns, then `finish`."""
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
        start_waker(Layout(os.path.dirname(config)))
    try:
        daemon.main(args)
    finally:
        finish()
    return 0


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
    launch: Launch,
    original_mask: set[int],
    ignored: frozenset[int],
    *,
    on_stop: Callable[[], None],
    tick: Callable[[float], None],
) -> int:
    """Run supervisord (already configured) until it exits; return the init's exit code."""
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
