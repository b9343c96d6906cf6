"""sd_notify against a real unix datagram socket bound by the test: with scripted checks, and with
the real ones against a stand-in gateway."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.pid1 import notify
from entrypoint.tools import health
from tests.fakes import black_hole, gateway


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
    """What the program says, per probe; the probes asked, in order."""

    def __init__(self) -> None:
        self.started = False
        self.live = False
        self.starting_reason = "gateway starting: startup-sidecars"
        self.asked: list[str] = []

    @property
    def calls(self) -> int:
        return len(self.asked)

    def __call__(self, probe: str) -> tuple[bool, str]:
        self.asked.append(probe)
        if probe == notify.STARTUP:
            return self.started, "gateway started" if self.started else self.starting_reason
        return self.live, "gateway live" if self.live else "port 1 closed"


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


def test_order_status_while_starting_ready_once_started_watchdog_while_live_stopping(
    receiver: Receiver, tmp_path: Path
) -> None:
    check = Check()
    environ = {"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "10000000"}  # 10 s: ping every 5 s
    readiness = notify.Readiness.from_environ(environ, check, str(tmp_path))
    assert readiness is not None
    readiness.status("boot: prepare")
    readiness.status("boot: prepare")  # unchanged: not repeated
    readiness.status("boot: credentials")
    readiness.tick(100.0)
    readiness.tick(100.1)  # too soon for another check
    assert check.asked == ["startup"]
    readiness.tick(100.3)  # it still says the same: no new line
    check.starting_reason = "gateway starting: channels"
    readiness.tick(100.6)
    assert receiver.messages() == [
        "STATUS=boot: prepare",
        "STATUS=boot: credentials",
        "STATUS=gateway starting: startup-sidecars",
        "STATUS=gateway starting: channels",
    ]
    check.live = True  # live is not started: no READY yet
    readiness.tick(100.9)
    assert receiver.messages() == [] and not readiness.ready
    check.started = True
    readiness.tick(101.2)
    assert receiver.messages() == ["STATUS=gateway started", "READY=1"]
    assert check.asked == ["startup"] * 5
    readiness.tick(101.5)  # the first liveness check comes with the next tick
    assert receiver.messages() == ["WATCHDOG=1"]
    readiness.tick(104.0)
    assert receiver.messages() == []
    readiness.tick(106.6)
    assert receiver.messages() == ["WATCHDOG=1"]
    check.live = False
    readiness.tick(112.0)  # not live: no ping, asked again a second later
    readiness.tick(112.5)
    assert receiver.messages() == []
    check.live = True
    readiness.tick(113.0)
    assert receiver.messages() == ["WATCHDOG=1"]
    assert check.asked[5:] == ["live"] * 4  # after READY, only liveness
    readiness.stopping()
    readiness.stopping()
    readiness.tick(200.0)
    assert receiver.messages() == ["STOPPING=1"]


def test_ready_is_sent_once(receiver: Receiver, tmp_path: Path) -> None:
    check = Check()
    check.started = check.live = True
    readiness = notify.Readiness.from_environ({"NOTIFY_SOCKET": receiver.address}, check, str(tmp_path))
    assert readiness is not None
    for step in range(20):
        readiness.tick(float(step))
    assert receiver.messages() == ["STATUS=gateway started", "READY=1"]
    assert check.asked == ["startup"]  # no watchdog asked for: no liveness checks either


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
        "STATUS=gateway starting: startup-sidecars",  # running, so asked whether it has started
        "STATUS=gateway in backoff 2s after 2 recent exits",
        "STATUS=gateway held: crash loop: 5 exits within 300s",
    ]


def test_an_unreachable_socket_warns_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check = Check()
    check.started = True
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
    check.started = True
    readiness.tick(20.0)
    assert check.asked == ["startup"] and readiness.ready


def test_the_order_against_a_gateway_that_starts_then_stops_answering(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The real checks (`tools/health`) against a stand-in with openclaw's probes, over a real
    datagram socket: STATUS while /startupz says starting, READY once it says started, WATCHDOG
    while /healthz answers, none while the gateway is stopped (SIGSTOP), again once continued."""
    with black_hole(str(tmp_path / "supervisor.sock")), gateway("probes", "--starting", "2") as running:

        def check(probe: str) -> tuple[bool, str]:
            return health.check(str(tmp_path), "gateway", running.port, probe, 0.3)

        environ = {"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "200000"}  # ping every 0.1 s
        readiness = notify.Readiness.from_environ(environ, check, str(tmp_path))
        assert readiness is not None

        def run_for(seconds: float) -> list[str]:
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                readiness.tick(time.monotonic())
                time.sleep(0.05)
            return receiver.messages()

        starting = run_for(0.5)
        assert starting == [f"STATUS=gateway starting: startup-sidecars (/startupz on port {running.port})"]
        started = run_for(2.0)
        assert started[:2] == [f"STATUS=gateway started (/startupz on port {running.port})", "READY=1"]
        assert check("startup")[0]
        assert set(started[2:]) == {"WATCHDOG=1"} and len(started) >= 4
        running.pause()
        assert run_for(1.5) == []
        running.resume()
        assert "WATCHDOG=1" in run_for(1.0)
        readiness.stopping()
    assert receiver.messages() == ["STOPPING=1"]


HOSTILE_WORDS = [
    "Config invalid → gateway.bind: ✗ 🚀",  # Latin-1 has neither
    "配置无效: 网关 (שגיאה\u200f)",
    "bad \x00 byte \x1b[31m red \udcff\udcfe and \ud800",
    "two\nlines\nREADY=1",  # a newline would start another assignment
    "z" * (4 << 20),
]


@pytest.mark.parametrize("said", HOSTILE_WORDS, ids=["arrows-emoji", "cjk-rtl", "controls", "lines", "4-mib"])
def test_a_status_in_the_program_s_words_arrives_as_one_valid_utf8_line(
    receiver: Receiver, tmp_path: Path, said: str
) -> None:
    """sd_notify's protocol is UTF-8 (the sdnotify package sends Latin-1 and raised on these)."""
    readiness = notify.Readiness.from_environ({"NOTIFY_SOCKET": receiver.address}, Check(), str(tmp_path))
    assert readiness is not None
    readiness.status(f"gateway held: it rejected its configuration: {said}")
    readiness.send("READY=1")
    raw = []
    while True:
        try:
            raw.append(receiver.sock.recv(65536))
        except BlockingIOError:
            break
    assert len(raw) == 2 and raw[1] == b"READY=1"  # the status did not inject a READY of its own
    status = raw[0].decode("utf-8")  # strict
    assert status.startswith("STATUS=gateway held: ") and "\n" not in status and "\x00" not in status
    assert len(raw[0]) <= len(b"STATUS=") + notify.STATUS_MAX_BYTES


def test_nothing_a_send_raises_leaves_send(tmp_path: Path) -> None:
    """A socket that went away, a message it refuses: a warning once, PID 1 goes on."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as gone:
        gone.bind(str(tmp_path / "gone.sock"))
        readiness = notify.Readiness.from_environ(
            {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}, Check(), str(tmp_path)
        )
    assert readiness is not None
    (tmp_path / "gone.sock").unlink()
    assert readiness.send("STATUS=one \udcff") is False
    assert readiness.send("STATUS=two") is False


def test_a_check_that_raises_is_a_failed_check_not_an_end_of_pid_1(
    receiver: Receiver, tmp_path: Path
) -> None:
    def broken(probe: str) -> tuple[bool, str]:
        raise ValueError("the program answered something no parser expected")

    readiness = notify.Readiness.from_environ({"NOTIFY_SOCKET": receiver.address}, broken, str(tmp_path))
    assert readiness is not None
    readiness.tick(100.0)
    assert not readiness.ready
    assert receiver.messages() == [
        "STATUS=the startup check failed: ValueError('the program answered something no parser expected')"
    ]
