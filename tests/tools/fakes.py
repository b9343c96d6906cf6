"""Test doubles: a supervisord that answers XML-RPC on a unix socket with whatever the test says,
and a socket that accepts connections and never answers."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from xmlrpc.server import SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler


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
def listening(port: int) -> Iterator[socket.socket]:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", port))
    server.listen(16)
    try:
        yield server
    finally:
        server.close()
