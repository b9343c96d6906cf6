"""The one client of supervisord's control socket (`RUN/supervisor.sock`), XML-RPC over a unix
socket: the contract between supervisord and the programs that drive it.

Who uses it: `status` (by `docker exec`, as root or the target user, while the container runs)
and the crash guard's worker (inside supervisord's process, as a thread, as the target user, once
supervisord is up). Each call opens its own connection and gets one deadline for all of it,
connect, request and answer: a supervisord that is gone, stuck or slow costs a caller `timeout_s`
at most, never a hang.

Errors: `SupervisorUnavailable` when supervisord cannot answer, with a reason fit for one line of
`status`; a `Fault` (supervisord answered, and said no) is raised as is, `fault_name` names it.
"""

from __future__ import annotations

import http.client
import os
import socket
import time
import xmlrpc.client
from typing import Any
from xml.parsers.expat import ExpatError

from . import rundir

Fault = xmlrpc.client.Fault

# What the transport raises when the other end is not a supervisord that answers in time.
_NOT_ANSWERING = (
    OSError,
    http.client.HTTPException,
    xmlrpc.client.ProtocolError,
    xmlrpc.client.ResponseError,
    ExpatError,
    ValueError,
)


class SupervisorUnavailable(Exception):
    """supervisord's control socket is missing, refused, denied or did not answer in time."""


class _DeadlineSocket(socket.socket):
    """A unix stream socket whose every send and receive gets only what is left of one deadline:
    a per-operation timeout alone would let a server that trickles its answer hold a caller
    for as long as it keeps trickling."""

    deadline = 0.0

    def _remaining(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline passed")
        self.settimeout(left)

    def sendall(self, data: bytes | bytearray | memoryview, flags: int = 0) -> None:
        self._remaining()
        super().sendall(data, flags)

    def recv_into(self, buffer: bytearray | memoryview, nbytes: int = 0, flags: int = 0) -> int:
        self._remaining()
        return super().recv_into(buffer, nbytes, flags)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, deadline: float) -> None:
        super().__init__("localhost")
        self._path = path
        self._deadline = deadline

    def connect(self) -> None:
        sock = _DeadlineSocket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.deadline = self._deadline
        try:
            sock.settimeout(max(self._deadline - time.monotonic(), 0.001))
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path
        self.deadline = 0.0  # set before each call

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        # A new connection per call (and per xmlrpc's one retry after a reset), all under the
        # call's deadline.
        self.close()
        connection = _UnixConnection(self._path, self.deadline)
        self._connection = host, connection
        return connection


class Supervisor:
    """supervisord's `supervisor.*` XML-RPC namespace, reduced to the calls the init makes."""

    def __init__(self, run_dir: str, timeout_s: float) -> None:
        self.path = os.path.join(run_dir, rundir.SUPERVISOR_SOCKET)
        self.timeout_s = timeout_s
        self._transport = _UnixTransport(self.path)
        self._proxy = xmlrpc.client.ServerProxy(
            "http://localhost/RPC2", transport=self._transport, allow_none=True
        )

    def process_info(self, program: str) -> dict[str, Any]:
        """`getProcessInfo(program)`: statename, pid, start, stop, now, exitstatus, spawnerr, ..."""
        info = self._call("getProcessInfo", program)
        if not isinstance(info, dict):
            raise SupervisorUnavailable(f"supervisord answered getProcessInfo with {type(info).__name__}")
        return info

    def process_info_or_reason(self, program: str) -> tuple[dict[str, Any] | None, str]:
        """`process_info`, or None and why supervisord cannot tell, in one line for people."""
        try:
            return self.process_info(program), ""
        except SupervisorUnavailable as error:
            return None, str(error)
        except Fault as fault:
            return None, f"supervisord does not know {program} ({fault.faultString})"

    def start_process(self, program: str) -> None:
        """`startProcess(program, wait=False)`: returns once supervisord has taken the request."""
        self._call("startProcess", program, False)

    def shutdown(self) -> None:
        self._call("shutdown")

    def _call(self, method: str, *args: Any) -> Any:
        self._transport.deadline = time.monotonic() + max(self.timeout_s, 0.001)
        try:
            return getattr(self._proxy.supervisor, method)(*args)
        except Fault:
            raise
        except FileNotFoundError:
            raise SupervisorUnavailable(f"supervisord not running (no {self.path})") from None
        except PermissionError:
            raise SupervisorUnavailable(
                f"permission denied on {self.path} (run as root or the program's user)"
            ) from None
        except ConnectionRefusedError:
            raise SupervisorUnavailable("supervisord not answering (connection refused)") from None
        except TimeoutError:
            raise SupervisorUnavailable(
                f"supervisord not answering within {self.timeout_s * 1000:.0f} ms"
            ) from None
        except _NOT_ANSWERING as error:
            raise SupervisorUnavailable(f"supervisord not answering ({error.__class__.__name__})") from None


def fault_name(fault: Fault) -> str:
    """supervisord's name for a fault (`BAD_NAME`, `NO_FILE`, `ALREADY_STARTED`, ...)."""
    # Imported here: supervisor's own table is the authority, and `health` should not pay for it.
    from supervisor.xmlrpc import getFaultDescription

    return str(getFaultDescription(fault.faultCode))
