"""Health: is the program RUNNING under supervisord, and does its port accept a connection?

This is the container HEALTHCHECK, so it must answer fast and never hang: one XML-RPC call
(`supervisor.getProcessInfo`) over the control socket and one TCP connect to 127.0.0.1:port share
a single deadline (`timeout_s`, 150 ms by default); every socket has a timeout. When the program is
not running, the crash guard's state file says why (backoff, held after a crash loop, ...).
Only the standard library is used, so the check costs little more than Python's own start.
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import time
import xmlrpc.client
from typing import Any

from ..common import rundir

_MIN_CONNECT_S = 0.03  # the port check always gets at least this much of the budget


class SupervisorUnavailable(Exception):
    """supervisord's control socket is missing, refused, denied or did not answer in time."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__()
        self._path = path
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        return _UnixConnection(self._path, self._timeout)


def rpc(run_dir: str, timeout_s: float) -> xmlrpc.client.ServerProxy:
    """An XML-RPC proxy to supervisord over `RUN/supervisor.sock`, every call bounded by `timeout_s`."""
    transport = _UnixTransport(os.path.join(run_dir, rundir.SUPERVISOR_SOCKET), max(timeout_s, 0.001))
    return xmlrpc.client.ServerProxy("http://localhost/RPC2", transport=transport, allow_none=True)


def process_info(run_dir: str, program: str, timeout_s: float) -> dict[str, Any]:
    """`supervisor.getProcessInfo(program)`; SupervisorUnavailable when supervisord cannot answer.

    An xmlrpc Fault (e.g. BAD_NAME) is raised as is.
    """
    path = os.path.join(run_dir, rundir.SUPERVISOR_SOCKET)
    try:
        return rpc(run_dir, timeout_s).supervisor.getProcessInfo(program)
    except xmlrpc.client.Fault:
        raise
    except FileNotFoundError:
        raise SupervisorUnavailable(f"supervisord not running (no {path})") from None
    except PermissionError:
        raise SupervisorUnavailable(
            f"permission denied on {path} (run as root or the program's user)"
        ) from None
    except ConnectionRefusedError:
        raise SupervisorUnavailable("supervisord not answering (connection refused)") from None
    except TimeoutError:
        raise SupervisorUnavailable(f"supervisord not answering within {timeout_s * 1000:.0f} ms") from None
    except (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError, ValueError) as error:
        raise SupervisorUnavailable(f"supervisord not answering ({error.__class__.__name__})") from None


def port_open(port: int, timeout_s: float, host: str = "127.0.0.1") -> tuple[bool, str]:
    try:
        with socket.create_connection((host, port), timeout=max(timeout_s, 0.001)):
            return True, ""
    except TimeoutError:
        return False, f"port {port} did not accept a connection within {timeout_s * 1000:.0f} ms"
    except OSError as error:
        if error.errno == errno.ECONNREFUSED:
            return False, f"port {port} closed"
        return False, f"port {port} unreachable ({os.strerror(error.errno or 0) or error})"


def guard_state(run_dir: str) -> dict[str, Any] | None:
    return rundir.read_json(run_dir, rundir.GUARD_STATE)


def _not_running_reason(program: str, statename: str, state: dict[str, Any] | None, now: float) -> str:
    guard = (state or {}).get("state")
    reason = (state or {}).get("held_reason")
    if guard == "held":
        return (
            f"{program} held{f' ({reason})' if reason else ''}: run `supervisorctl start {program}` to re-arm"
        )
    if guard == "refused":
        return f"{program} refused after a crash loop{f' ({reason})' if reason else ''}"
    if guard == "backoff" and statename != "STARTING":
        delay = state.get("delay_s") if state else None
        restart_at = state.get("restart_at") if state else None
        remaining = (
            f", restart in {max(0.0, restart_at - now):.1f}s" if isinstance(restart_at, float | int) else ""
        )
        delay_text = f" {delay:g}s" if isinstance(delay, float | int) else ""
        return f"{program} in backoff{delay_text}{remaining}"
    if statename == "STARTING":
        return f"{program} starting"
    if guard == "stopped" and statename in ("STOPPED", "EXITED"):
        return f"{program} stopped"
    return f"{program} {statename.lower() or 'state unknown'}"


def check(run_dir: str, program: str, port: int, timeout_s: float = 0.15) -> tuple[bool, str]:
    """(True, "...") only when `program` is RUNNING and 127.0.0.1:`port` accepts a connection."""
    started = time.monotonic()
    deadline = started + timeout_s
    try:
        info = process_info(run_dir, program, timeout_s)
    except SupervisorUnavailable as error:
        return False, str(error)
    except xmlrpc.client.Fault as fault:
        return False, f"supervisord does not know {program} ({fault.faultString})"
    statename = str(info.get("statename", ""))
    if statename != "RUNNING":
        return False, _not_running_reason(program, statename, guard_state(run_dir), time.time())
    is_open, why = port_open(port, max(deadline - time.monotonic(), _MIN_CONNECT_S))
    pid = info.get("pid")
    if not is_open:
        return False, f"{why} ({program} running, pid {pid}, not accepting connections)"
    uptime = int(info.get("now", 0)) - int(info.get("start", 0))
    return True, f"ok: {program} running, pid {pid}, up {max(uptime, 0)}s, port {port} open"
