"""sd_notify: tell systemd (`Type=notify`) or podman (`--sdnotify=container`) how the boot goes.

Where it differs: from the start of the boot (the phases' `STATUS=`, before the privilege drop) to
its end (`tick` from the PID-1 loop, while supervisord runs).

- `STATUS=` at each boot phase (`Readiness.status`), whenever the crash guard's state changes, and
  while the program starts, what it says it waits for (its startup probe's `pendingReason`);
- `READY=1` once, when the program first says it has started (`check("startup")`: `/startupz`
  says `started`; a program without that probe, once its port accepts a connection);
- `WATCHDOG=1` every `WATCHDOG_USEC / 2` while the program says it is live (`check("live")`:
  `/healthz`; none while it fails, so the service manager's watchdog acts on a program that
  stopped answering, a stuck one included);
- `STOPPING=1` when the init starts stopping.

The checks (`tools/health`, given by `wiring`) are bounded; the program is not asked at all while
the crash guard's state says it is not running.

`from_environ` removes `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` from the environment so
that no child (supervisord, the program) ever talks to the service manager in the init's name.
The `sdnotify` package connects the socket (abstract ones, `@name`, too), created with `debug=True`
so that errors reach us (by default it swallows them); its `notify` is replaced by one that sends
UTF-8, which is sd_notify's protocol (the package encodes Latin-1, and raises UnicodeEncodeError
for an arrow or an emoji in the program's words). A `STATUS=` is one line of valid text, at most
`STATUS_MAX_BYTES`; nothing a send can raise leaves `send`: an unreachable socket is reported once
as a warning, then retried quietly.
"""

from __future__ import annotations

import collections
import os
import socket
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import sdnotify

from ..common import guardstate, log, text

_logger = log.get("notify")
# systemd reads a notification into a buffer of PIPE_BUF (4096) bytes; a STATUS= line is read by
# people in `systemctl status`: a sentence, not a page.
STATUS_MAX_BYTES = 1024
_CHECK_EVERY_S = 0.25  # startup checks while waiting for READY
_RECHECK_UNHEALTHY_S = 1.0  # liveness checks while it fails after READY
# The probes `check` is asked for (named as `tools/health` names them).
STARTUP = "startup"
LIVE = "live"


class _Notifier(sdnotify.SystemdNotifier):
    """sdnotify's notifier, connected to an address we give (it reads os.environ otherwise)."""

    def __init__(self, address: str) -> None:  # deliberately not calling super().__init__
        self.debug = True
        target = "\0" + address[1:] if address.startswith("@") else address
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.connect(target)
        except OSError:
            sock.close()
            raise
        self.socket = sock

    def notify(self, state: str) -> None:
        """One datagram, UTF-8 (the package's own sends Latin-1). Raises what the socket raises."""
        assert self.socket is not None
        self.socket.sendall(text.encoded(state, 4096))

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None


def _watchdog_interval(usec: str | None, pid: str | None) -> float | None:
    """Half of WATCHDOG_USEC, or None when the watchdog is off or meant for another process."""
    if not usec:
        return None
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2 / 1_000_000 if value > 0 else None


@dataclass(eq=False)
class Readiness:
    """What the init tells the service manager; `tick` is called from the PID-1 loop."""

    address: str
    check: Callable[[str], tuple[bool, str]]  # check(STARTUP) or check(LIVE): (passed, why)
    run_dir: str
    watchdog_interval_s: float | None = None
    ready: bool = field(default=False, init=False)
    stopped: bool = field(default=False, init=False)
    sent: collections.deque[str] = field(  # the last messages sent
        default_factory=lambda: collections.deque(maxlen=100), init=False
    )
    _notifier: _Notifier | None = field(default=None, init=False)
    _warned: bool = field(default=False, init=False)
    _next_check: float = field(default=0.0, init=False)
    _next_watchdog: float = field(default=0.0, init=False)
    _state_seen: tuple[Any, ...] | None = field(default=None, init=False)
    _guard_state: guardstate.State | None = field(default=None, init=False)
    _last_status: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._connect()

    @classmethod
    def from_environ(
        cls,
        environ: MutableMapping[str, str],
        check: Callable[[str], tuple[bool, str]],
        run_dir: str,
    ) -> Readiness | None:
        """Take NOTIFY_SOCKET (and the watchdog variables) out of `environ` (and of os.environ)."""
        address = environ.pop("NOTIFY_SOCKET", None)
        usec = environ.pop("WATCHDOG_USEC", None)
        pid = environ.pop("WATCHDOG_PID", None)
        if environ is not os.environ:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                os.environ.pop(name, None)
        if not address:
            return None
        return cls(address, check, run_dir, _watchdog_interval(usec, pid))

    # -- sending ----------------------------------------------------------------------------------
    def _connect(self) -> bool:
        if self._notifier is not None:
            return True
        try:
            self._notifier = _Notifier(self.address)
        except Exception as error:  # an address the kernel refuses, of any kind: said once
            self._warn(error)
            return False
        return True

    def _warn(self, error: Exception) -> None:
        if self._warned:
            return
        self._warned = True
        log.event(
            _logger,
            "warning",
            "notify_socket_unreachable",
            "cannot reach NOTIFY_SOCKET; service manager notifications are not delivered",
            notify_socket=self.address,
            error=text.one_line(str(error)),
        )

    def send(self, message: str) -> bool:
        """Send one message; whatever fails (the socket, the message), PID 1 goes on."""
        if not self._connect():
            return False
        assert self._notifier is not None
        try:
            self._notifier.notify(message)
        except Exception as error:  # PID 1 outlives its service manager's socket, whatever the text
            self._warn(error)
            self._notifier.close()
            self._notifier = None  # reconnect on the next message
            return False
        self.sent.append(message)
        return True

    # -- what the init calls ----------------------------------------------------------------------
    def status(self, said: str) -> None:
        """`STATUS=` with `said` as one line of valid text (the program's words may be anything)."""
        line = text.encoded(text.one_line(said, STATUS_MAX_BYTES), STATUS_MAX_BYTES).decode("utf-8")
        if line != self._last_status:
            self._last_status = line
            self.send(f"STATUS={line}")

    def tick(self, now: float) -> None:
        if self.stopped:
            return
        self._follow_guard()
        if not self.ready:
            if now < self._next_check:
                return
            self._next_check = now + _CHECK_EVERY_S
            if self._guard_state in guardstate.NOT_RUNNING:
                return  # held, in backoff, stopped: no need to ask the program 4 times a second
            started, reason = self._asked(STARTUP)
            self.status(reason)  # what it waits for while it starts; then that it has started
            if started:
                self.ready = True
                self.send("READY=1")
                self._next_watchdog = now
            return
        if self.watchdog_interval_s and now >= self._next_watchdog:
            live, _reason = self._asked(LIVE)
            if live:
                self.send("WATCHDOG=1")
                self._next_watchdog = now + self.watchdog_interval_s
            else:
                self._next_watchdog = now + min(_RECHECK_UNHEALTHY_S, self.watchdog_interval_s)

    def _asked(self, probe: str) -> tuple[bool, str]:
        """`check(probe)`, which the program answers: whatever its answer does, it is a failed check
        here, never an exception in PID 1's loop."""
        try:
            return self.check(probe)
        except Exception as error:
            return False, f"the {probe} check failed: {error!r}"

    def stopping(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.send("STOPPING=1")

    def _follow_guard(self) -> None:
        """STATUS= when the crash guard's state file changes state (cheap: a stat, then a read)."""
        try:
            info = os.stat(guardstate.path(self.run_dir))
        except OSError:
            return
        key = (info.st_mtime_ns, info.st_ino, info.st_size)
        if key == self._state_seen:
            return
        self._state_seen = key
        snapshot = guardstate.read(self.run_dir)
        if snapshot is not None:
            self._guard_state = snapshot.state
            self.status(snapshot.describe())
