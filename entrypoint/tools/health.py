"""Health: does the program answer its own HTTP probes (`/healthz`, `/startupz`, `/readyz`)?

Where it differs: PID 1 itself asks `check`, after the drop, for sd_notify's READY and WATCHDOG
(only when a NOTIFY_SOCKET was given); `status` asks it too.

Cheapest first, and never a hang: a `stat` of supervisord's control socket and a read of the crash
guard's state file (`common/guardstate`) answer at once, without any request, when the program is
not running nor about to run (held, refused, in backoff, stopped); otherwise one plain HTTP request
to 127.0.0.1:port, connect, send and answer under one deadline (`timeout_s`, 3 s by default).
supervisord itself is never asked: its XML-RPC client (`common/control`, http.client, xmlrpc) would cost
more to import than the whole check, and the state file already says what it would.

Which programs have the probes is learnt from their answer, endpoint by endpoint, not from the
profile. The gateway gained them at different releases (`/healthz` and `/readyz` first, `/startupz`
with 2026.8.1), which the profile's generations (keyed on what each reads from its environment)
cannot say; a wrong "has probes" would be a check that never passes, and so a kubelet restarting a
healthy gateway forever. Learning it from the answer cannot weaken the check of a gateway that has
them: a program that has a probe answers it with its JSON (the gateway routes its probes before
anything else), and the fallback needs a complete answer that is not that JSON: an older
generation's Control UI page on every path, or a program that closes the connection without HTTP.
A program that does not answer at all (a stuck event loop: the kernel still accepts connections
for a SIGSTOPped process) fails, whatever its generation.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import stat
import sys
import time
from dataclasses import dataclass
from typing import Any

from ..common import guardstate, rundir, text
from ..common.exits import Exit
from ..common.guardstate import Snapshot, State

DEFAULT_TIMEOUT_S = 3.0
SAID_MAX = 300  # characters kept of what the program says in its answer
LINE_MAX = 1000  # of the whole line a check prints
_MAX_ANSWER = 64 * 1024  # a probe's JSON is a few hundred bytes; HTML needs only its headers
USAGE = "usage: health [--startup | --ready] [--timeout SECONDS]"


@dataclass(frozen=True)
class Probe:
    name: str
    path: str
    passed: str  # the word for a passing answer: live, started, ready
    meaning: str  # what the fallback stands for when the program lacks the endpoint


PROBES = {
    probe.name: probe
    for probe in (
        Probe("live", "/healthz", "live", "liveness"),
        Probe("startup", "/startupz", "started", "started"),
        Probe("ready", "/readyz", "ready", "ready"),
    )
}


class _NoAnswer(Exception):
    """The program gave no complete answer in time: the check fails with this reason."""


@dataclass(frozen=True)
class _Answer:
    json_type: bool  # Content-Type says JSON
    body: bytes


def check(
    run_dir: str, program: str, port: int, probe: str = "live", timeout_s: float = DEFAULT_TIMEOUT_S
) -> tuple[bool, str]:
    """(passed, one line saying why) for `probe` ("live", "startup" or "ready") of `program`."""
    endpoint = PROBES[probe]
    snapshot = _snapshot(run_dir, program)
    why_not = _not_running(run_dir, program, snapshot, time.time())
    if why_not is not None:
        return False, why_not
    where = f"{endpoint.path} on port {port}"
    try:
        answer = _request(port, endpoint.path, timeout_s)
    except _NoAnswer as error:
        return False, str(error) + (f"; {program} pid {snapshot.pid}" if snapshot and snapshot.pid else "")
    lacks = f"this {program} has no {endpoint.path}: {endpoint.meaning}"
    if answer is None:
        return True, f"port {port} accepts connections ({lacks} by TCP connect only)"
    judged = _verdict(endpoint, answer)
    if judged is None:
        return True, f"port {port} answers HTTP ({lacks} by its HTTP answer only)"
    passed, said = judged
    # The program's own words (a pending reason, failing checks) may hold anything: one line.
    said = text.one_line(said, SAID_MAX)
    if passed:
        return True, f"{program} {said}{_running(snapshot)} ({where})"
    return False, f"{program} {said} ({where})"


def _snapshot(run_dir: str, program: str) -> Snapshot | None:
    snapshot = guardstate.read(run_dir)
    return snapshot if snapshot is not None and snapshot.program in (None, program) else None


def _not_running(run_dir: str, program: str, snapshot: Snapshot | None, now: float) -> str | None:
    """Why no request is worth making, or None. supervisord removes its socket when it exits: a
    state file without one is an earlier run's (the init is booting, or has stopped)."""
    socket_path = os.path.join(run_dir, rundir.SUPERVISOR_SOCKET)
    try:
        is_socket = stat.S_ISSOCK(os.stat(socket_path).st_mode)
    except OSError:
        is_socket = False
    if not is_socket:
        return f"supervisord not running (no {socket_path}): the init is booting, or has stopped"
    if snapshot is None or snapshot.state not in guardstate.NOT_RUNNING:
        return None
    said = snapshot.describe(program)  # the guard's own words: held, in backoff, stopped, ...
    if snapshot.state in (State.BACKOFF, State.WAITING) and snapshot.restart_at is not None:
        said += f", restart in {max(0.0, snapshot.restart_at - now):.1f}s"
    if snapshot.state == State.HELD:
        said += f"; {snapshot.how_to_leave or guardstate.leave_hold_hint(program)}"
    return said


def _not_connected(port: int, timeout_s: float, error: OSError) -> str:
    if isinstance(error, TimeoutError):
        return f"port {port} did not accept a connection within {timeout_s:g}s"
    if isinstance(error, ConnectionRefusedError):
        return f"port {port} closed (not listening)"
    return f"port {port} unreachable ({os.strerror(error.errno or errno.EIO)})"


def _request(port: int, path: str, timeout_s: float) -> _Answer | None:
    """The program's complete answer to `GET path`; None when it closed the connection without an
    HTTP answer. Raises _NoAnswer for everything else: refused, silent, cut short, too slow."""
    deadline = time.monotonic() + timeout_s
    # A plain connect to the address, not socket.create_connection: that resolves it first with
    # getaddrinfo, whose IDNA codec alone costs a probe more to import than the request takes.
    connection = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        connection.settimeout(max(timeout_s, 0.001))
        connection.connect(("127.0.0.1", port))
    except OSError as error:
        connection.close()
        raise _NoAnswer(_not_connected(port, timeout_s, error)) from None
    received = bytearray()
    with connection:
        try:
            # HTTP/1.0: the answer is never chunked, and the program closes the connection after it.
            connection.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode("ascii"))
            while len(received) < _MAX_ANSWER:
                # One deadline for the whole answer: a program that trickles it is cut off too.
                connection.settimeout(max(deadline - time.monotonic(), 0.001))
                chunk = connection.recv(65536)
                if not chunk:
                    break
                received += chunk
                answer = _parse(received, ended=False)
                if answer is not None:
                    return answer
        except TimeoutError:
            said = "an incomplete answer" if received else "no answer"
            raise _NoAnswer(
                f"port {port} accepts connections but gave {said} to {path} within {timeout_s:g}s "
                "(stuck or overloaded)"
            ) from None
        except (ConnectionResetError, BrokenPipeError):
            if received:
                raise _NoAnswer(f"port {port} reset the connection in the middle of its answer") from None
            return None
    if not received:
        return None
    try:
        return _parse(received, ended=True)
    except _NoAnswer as error:
        raise _NoAnswer(f"port {port} gave {error} to {path}") from None


def _parse(received: bytearray, ended: bool) -> _Answer | None:
    """The answer, once `received` holds all of it that counts; None while more is to come or, at
    the end, when it is not HTTP at all. A JSON answer counts only whole: read in part, it would
    look like no probe's, and a fallback must never stand in for a probe's answer cut short."""
    head, separator, body = bytes(received).partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split(b" ", 2)
    if not separator or len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
        return None
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"json" not in headers.get(b"content-type", b"").lower():
        return _Answer(False, b"")  # an HTML page: its headers say all there is to know
    length = headers.get(b"content-length", b"")
    expected = int(length) if length.isdigit() else None
    if expected is not None and len(body) >= expected:
        return _Answer(True, body[:expected])
    if not ended:
        return None
    if expected is not None:
        raise _NoAnswer(f"an incomplete answer ({len(body)} of {expected} bytes)")
    return _Answer(True, body)


def _verdict(probe: Probe, answer: _Answer) -> tuple[bool, str] | None:
    """(passed, what the program said), or None when the answer is not this probe's JSON. The JSON
    decides, not the status code (the gateway's 200 and 503 only repeat it)."""
    if not answer.json_type:
        return None
    try:
        data: Any = json.loads(answer.body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    if probe.name == "ready":
        if not isinstance(data.get("ready"), bool):
            return None
        if data["ready"]:
            return True, "ready"
        listed = data.get("failing")
        failing = [str(item) for item in listed if item] if isinstance(listed, list) else []
        return False, "not ready" + (f": failing {', '.join(failing)}" if failing else "")
    said = data.get("status")
    if not isinstance(said, str) or not isinstance(data.get("ok"), bool):
        return None
    if data["ok"] and said == probe.passed:
        return True, probe.passed
    if said == probe.passed:
        return False, f"{said} but not ok"
    pending = data.get("pendingReason")  # what a starting gateway waits for (local callers only)
    return False, said + (f": {pending}" if isinstance(pending, str) and pending else "")


def _running(snapshot: Snapshot | None) -> str:
    """`, pid 12, up 62s`, as far as the crash guard's state says."""
    if snapshot is None or not snapshot.pid:
        return ""
    since = snapshot.running_since
    return f", pid {snapshot.pid}" + ("" if since is None else f", up {max(0, int(time.time() - since))}s")


def _options(args: list[str]) -> tuple[str, float]:
    probe, timeout_s = "live", DEFAULT_TIMEOUT_S
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("--startup", "--ready"):
            probe = arg[2:]
        elif arg == "--timeout" or arg.startswith("--timeout="):
            value = arg.partition("=")[2] if "=" in arg else (rest.pop(0) if rest else "")
            try:
                timeout_s = float(value)
            except ValueError:
                raise ValueError(f"--timeout takes seconds, not {value!r}") from None
            if not 0 < timeout_s <= 60:
                raise ValueError(f"--timeout takes 0 < seconds <= 60, not {value}")
        else:
            raise ValueError(f"unknown argument {arg!r}")
    return probe, timeout_s


def main(args: list[str], run_dir: str, program: str, port: int) -> int:
    """`<init> health ...`: one line on stdout, exit 0 when the probe passes, 1 when it fails."""
    if {"-h", "--help"} & set(args):
        print(USAGE)
        return Exit.OK
    try:
        probe, timeout_s = _options(args)
    except ValueError as error:
        print(f"health: {error}\n{USAGE}", file=sys.stderr)
        return Exit.USAGE
    passed, reason = check(run_dir, program, port, probe, timeout_s)
    print(verdict(passed, reason))
    return Exit.OK if passed else Exit.FAILED


def verdict(passed: bool, reason: str) -> str:
    """A check's result as one line for people (`health`, `status`)."""
    return f"{'ok' if passed else 'failing'}: {text.one_line(reason, LINE_MAX)}"
