"""sd_notify against a real unix datagram socket bound by the test."""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.pid1 import notify


class Receiver:
    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address

    def messages(self) -> list[str]:
        received = []
        while True:
            try:
                received.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return received


@pytest.fixture(params=["path", "abstract"])
def receiver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Receiver]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify.sock")
        sock.bind(address)
    else:
        name = f"init-test-{uuid.uuid4().hex}"
        sock.bind("\0" + name)
        address = "@" + name
    sock.setblocking(False)
    yield Receiver(sock, address)
    sock.close()


class Check:
    def __init__(self) -> None:
        self.healthy = False
        self.calls = 0

    def __call__(self) -> tuple[bool, str]:
        self.calls += 1
        return self.healthy, "ok" if self.healthy else "port closed"


def test_from_environ_takes_the_variables_out(receiver: Receiver, tmp_path: Path) -> None:
    environ = {"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "2000000", "KEEP": "1"}
    readiness = notify.Readiness.from_environ(environ, Check(), str(tmp_path))
    assert readiness is not None
    assert environ == {"KEEP": "1"}
    assert readiness.watchdog_interval_s == 1.0


def test_from_environ_removes_them_from_the_process_environment_too(
    receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", receiver.address)
    monkeypatch.setenv("WATCHDOG_PID", "1")
    environ = dict(os.environ)
    notify.Readiness.from_environ(environ, Check(), str(tmp_path))
    assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_PID" not in os.environ


def test_no_socket_no_readiness(tmp_path: Path) -> None:
    assert notify.Readiness.from_environ({}, Check(), str(tmp_path)) is None


def test_watchdog_for_another_pid_is_ignored(receiver: Receiver, tmp_path: Path) -> None:
    environ = {"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "999999"}
    readiness = notify.Readiness.from_environ(environ, Check(), str(tmp_path))
    assert readiness is not None and readiness.watchdog_interval_s is None


def test_order_status_ready_only_when_healthy_watchdog_stopping(receiver: Receiver, tmp_path: Path) -> None:
    check = Check()
    environ = {"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "10000000"}  # 10 s: ping every 5 s
    readiness = notify.Readiness.from_environ(environ, check, str(tmp_path))
    assert readiness is not None
    readiness.status("boot: prepare")
    readiness.status("boot: prepare")  # unchanged: not repeated
    readiness.status("boot: credentials")
    readiness.tick(100.0)
    readiness.tick(100.1)  # too soon for another check
    assert check.calls == 1
    readiness.tick(100.3)
    assert receiver.messages() == ["STATUS=boot: prepare", "STATUS=boot: credentials"]
    check.healthy = True
    readiness.tick(100.6)
    assert receiver.messages() == ["READY=1", "WATCHDOG=1"]
    readiness.tick(103.0)
    assert receiver.messages() == []
    readiness.tick(105.7)
    assert receiver.messages() == ["WATCHDOG=1"]
    check.healthy = False
    readiness.tick(111.0)  # unhealthy: no ping
    assert receiver.messages() == []
    readiness.stopping()
    readiness.stopping()
    readiness.tick(200.0)
    assert receiver.messages() == ["STOPPING=1"]


def test_ready_is_sent_once(receiver: Receiver, tmp_path: Path) -> None:
    check = Check()
    check.healthy = True
    readiness = notify.Readiness.from_environ({"NOTIFY_SOCKET": receiver.address}, check, str(tmp_path))
    assert readiness is not None
    for step in range(20):
        readiness.tick(float(step))
    assert receiver.messages() == ["READY=1"]


def test_crash_guard_state_changes_become_status_lines(receiver: Receiver, tmp_path: Path) -> None:
    readiness = notify.Readiness.from_environ({"NOTIFY_SOCKET": receiver.address}, Check(), str(tmp_path))
    assert readiness is not None
    state = tmp_path / "crashguard.json"

    def write(**fields: object) -> None:
        temporary = tmp_path / "tmp.json"
        temporary.write_text(json.dumps({"program": "gateway", **fields}))
        temporary.replace(state)

    write(state="running", pid=12, restarts=0)
    readiness.tick(1.0)
    write(state="backoff", delay_s=2, exits=[{"epoch": 1.0, "exit_code": 1}, {"epoch": 1.5, "exit_code": 1}])
    readiness.tick(2.0)
    readiness.tick(3.0)  # unchanged
    write(state="held", held_reason="crash loop: 5 exits within 300s")
    readiness.tick(4.0)
    assert receiver.messages() == [
        "STATUS=gateway running (pid 12, 0 restarts)",
        "STATUS=gateway in backoff 2s after 2 recent exits",
        "STATUS=gateway held: crash loop: 5 exits within 300s",
    ]


def test_an_unreachable_socket_warns_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check = Check()
    check.healthy = True
    with caplog.at_level(logging.WARNING):
        readiness = notify.Readiness.from_environ(
            {"NOTIFY_SOCKET": str(tmp_path / "missing.sock")}, check, str(tmp_path)
        )
        assert readiness is not None
        readiness.status("boot")
        readiness.tick(1.0)
        readiness.stopping()
    warnings = [r for r in caplog.records if getattr(r, "event", "") == "notify_socket_unreachable"]
    assert len(warnings) == 1


def test_a_receiver_that_appears_later_gets_the_messages(tmp_path: Path) -> None:
    address = str(tmp_path / "late.sock")
    readiness = notify.Readiness(address, Check(), str(tmp_path))
    assert not readiness.send("STATUS=lost")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(1)
    try:
        assert readiness.send("STATUS=delivered")
        assert sock.recv(100) == b"STATUS=delivered"
    finally:
        sock.close()


def test_no_health_checks_while_the_guard_holds_the_program(receiver: Receiver, tmp_path: Path) -> None:
    check = Check()
    readiness = notify.Readiness.from_environ({"NOTIFY_SOCKET": receiver.address}, check, str(tmp_path))
    assert readiness is not None
    (tmp_path / "crashguard.json").write_text(json.dumps({"program": "gateway", "state": "held"}))
    for step in range(10):
        readiness.tick(float(step))
    assert check.calls == 0
    (tmp_path / "crashguard.json").write_text(
        json.dumps({"program": "gateway", "state": "running", "pid": 3})
    )
    check.healthy = True
    readiness.tick(20.0)
    assert check.calls == 1 and readiness.ready
