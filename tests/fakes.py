"""Test doubles: a supervisord that answers XML-RPC on a unix socket with whatever the test says,
a socket that accepts connections and never answers, one that answers too slowly, a TCP port that
listens and never accepts, one that answers every request with the bytes a test gives, and a
stand-in gateway (tests/standins) run on a free port that a test can stop and continue."""

from __future__ import annotations

import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from xmlrpc.server import SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler

from tests.conftest import REPO
from tests.supervised import free_port


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)
    disable_nagle_algorithm = False  # TCP_NODELAY does not exist on unix sockets

    def address_string(self) -> str:  # unix sockets have no client address
        return "unix"

    def log_message(self, *args: Any) -> None:
        pass


class _UnixXMLRPCServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer, SimpleXMLRPCDispatcher):
    daemon_threads = True
    logRequests = False

    def __init__(self, path: str) -> None:
        SimpleXMLRPCDispatcher.__init__(self, allow_none=True, encoding=None)
        socketserver.UnixStreamServer.__init__(self, path, _Handler)


class FakeSupervisor:
    """`supervisor.getProcessInfo` answers from `self.info`; calls are recorded."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.info: dict[str, Any] = {"statename": "RUNNING", "pid": 4242, "start": 1000, "now": 1010}
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.delay_s = 0.0
        self.server = _UnixXMLRPCServer(path)
        self.server.register_function(self._get_process_info, "supervisor.getProcessInfo")
        self.server.register_function(self._start_process, "supervisor.startProcess")
        self.server.register_function(self._shutdown, "supervisor.shutdown")
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.daemon = True
        self.thread.start()

    def _get_process_info(self, name: str) -> dict[str, Any]:
        self.calls.append(("getProcessInfo", (name,)))
        if self.delay_s:
            time.sleep(self.delay_s)
        if name != "gateway":
            import xmlrpc.client

            raise xmlrpc.client.Fault(10, f"BAD_NAME: {name}")
        return {"name": name, "stop": 0, "exitstatus": 0, "spawnerr": "", **self.info}

    def _start_process(self, name: str, wait: bool) -> bool:
        self.calls.append(("startProcess", (name, wait)))
        return True

    def _shutdown(self) -> bool:
        self.calls.append(("shutdown", ()))
        return True

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if os.path.exists(self.path):
            os.unlink(self.path)


@contextmanager
def fake_supervisor(run_dir: str) -> Iterator[FakeSupervisor]:
    fake = FakeSupervisor(os.path.join(run_dir, "supervisor.sock"))
    try:
        yield fake
    finally:
        fake.close()


@contextmanager
def black_hole(path: str) -> Iterator[socket.socket]:
    """A unix socket that is listening (connect succeeds) but never reads nor answers."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    try:
        yield server
    finally:
        server.close()
        os.unlink(path)


@contextmanager
def trickle(path: str, byte_every_s: float = 0.05) -> Iterator[None]:
    """A unix socket that reads the request, then answers one byte every `byte_every_s`: every
    single receive is quick, the whole answer never comes."""
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n" + b"X-Slow: " + b"." * 1000
    with answering(path, answer, byte_every_s):
        yield


@contextmanager
def listening(port: int) -> Iterator[socket.socket]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)
    try:
        yield server
    finally:
        server.close()


@contextmanager
def answering(address: int | str, answer: bytes, byte_every_s: float = 0.0) -> Iterator[None]:
    """127.0.0.1:`address` (a port), or the unix socket at `address` (a path), reads each request,
    writes `answer` (a byte at a time, `byte_every_s` apart, when given) and closes the connection."""
    if isinstance(address, int):
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", address))
    else:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(address)
    server.listen(16)
    server.settimeout(0.05)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with connection:
                try:
                    connection.recv(65536)
                    pieces = [bytes([byte]) for byte in answer] if byte_every_s else [answer]
                    for piece in pieces:
                        if done.is_set():
                            break
                        connection.sendall(piece)
                        time.sleep(byte_every_s)
                except OSError:
                    continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(5)
        server.close()
        if isinstance(address, str):
            os.unlink(address)


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    port: int

    def pause(self) -> None:
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)


def listens(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def gateway(variant: str, *options: str) -> Iterator[Gateway]:
    """tests/standins/`variant`.py on a free port, once it listens."""
    port = free_port()
    script = REPO / "tests" / "standins" / f"{variant}.py"
    process = subprocess.Popen(
        [sys.executable, str(script), "--port", str(port), *options], stdout=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 10
        while not listens(port):
            assert time.monotonic() < deadline and process.poll() is None, f"{variant} never listened"
            time.sleep(0.02)
        yield Gateway(process, port)
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.kill()
        process.wait()
