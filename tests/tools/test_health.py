"""`health` from the outside: stand-in gateways on a real port (with openclaw's probes, with only an
older generation's Control UI page, without HTTP at all), the crash guard's state file as the
crash guard writes it, and supervisord's socket a black hole that would hang any question put to
it: the verdict, the one line that says why, and how long it took."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.tools import health
from tests.conftest import REPO
from tests.fakes import answering, black_hole, gateway, listening
from tests.supervised import free_port

FAST_S = 0.2  # an answer from the state file, or from a gateway that answers at once
SLACK_S = 0.5  # beyond a deadline, on a busy machine


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """A run dir whose supervisord accepts connections and never answers: health must not ask it."""
    with black_hole(str(tmp_path / "supervisor.sock")):
        yield tmp_path


def write_guard(run_dir: Path, **state: object) -> None:
    (run_dir / "crashguard.json").write_text(json.dumps({"program": "gateway", **state}))


def timed(run_dir: Path, port: int, probe: str = "live", timeout_s: float = 3.0) -> tuple[bool, str, float]:
    started = time.monotonic()
    passed, text = health.check(str(run_dir), "gateway", port, probe, timeout_s)
    elapsed = time.monotonic() - started
    assert text and "\n" not in text
    return passed, text, elapsed


def test_the_gateway_s_probes_say_live_then_started_and_ready(run_dir: Path) -> None:
    with gateway("probes", "--starting", "2") as running:
        port = running.port
        live, text, _ = timed(run_dir, port)
        assert live and text == f"gateway live (/healthz on port {port})"
        started, text, _ = timed(run_dir, port, "startup")
        assert not started and text == f"gateway starting: startup-sidecars (/startupz on port {port})"
        ready, text, _ = timed(run_dir, port, "ready")
        assert not ready and text == f"gateway not ready: failing startup-sidecars (/readyz on port {port})"
        deadline = time.monotonic() + 5
        while not timed(run_dir, port, "startup")[0]:
            assert time.monotonic() < deadline, "never started"
            time.sleep(0.1)
        assert timed(run_dir, port, "startup")[:2] == (True, f"gateway started (/startupz on port {port})")
        assert timed(run_dir, port, "ready")[:2] == (True, f"gateway ready (/readyz on port {port})")


def test_a_ready_probe_that_fails_names_what_fails(run_dir: Path) -> None:
    with gateway("probes", "--failing", "channel:telegram", "--failing", "agent-database:main") as running:
        assert timed(run_dir, running.port, "startup")[0]
        ready, text, _ = timed(run_dir, running.port, "ready")
    assert not ready
    assert text.startswith("gateway not ready: failing channel:telegram, agent-database:main (/readyz")


def test_the_running_gateway_s_pid_and_uptime_come_from_the_guard_s_state(run_dir: Path) -> None:
    write_guard(run_dir, state="running", pid=4242, running_since=time.time() - 62)
    with gateway("probes") as running:
        live, text, _ = timed(run_dir, running.port)
    assert live and text.startswith("gateway live, pid 4242, up 62s (/healthz")


def test_a_draining_gateway_is_live_but_no_longer_started(run_dir: Path) -> None:
    with gateway("probes", "--term-delay", "3") as running:
        running.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        assert timed(run_dir, running.port)[0]
        started, text, _ = timed(run_dir, running.port, "startup")
    assert not started and text.startswith("gateway draining (/startupz")


@pytest.mark.parametrize(
    ("variant", "how"),
    [("control_ui", "answers HTTP"), ("healthy", "accepts connections")],
    ids=["older-generation", "no-http"],
)
def test_a_gateway_without_probes_falls_back_and_says_so_plainly(
    run_dir: Path, variant: str, how: str
) -> None:
    by = "by its HTTP answer only" if how == "answers HTTP" else "by TCP connect only"
    with gateway(variant) as running:
        port = running.port
        results = {probe: timed(run_dir, port, probe)[:2] for probe in ("live", "startup", "ready")}
    assert results == {
        "live": (True, f"port {port} {how} (this gateway has no /healthz: liveness {by})"),
        "startup": (True, f"port {port} {how} (this gateway has no /startupz: started {by})"),
        "ready": (True, f"port {port} {how} (this gateway has no /readyz: ready {by})"),
    }


@pytest.mark.parametrize("variant", ["probes", "control_ui", "healthy"])
def test_a_stopped_gateway_fails_within_the_bound_and_passes_again_once_continued(
    run_dir: Path, variant: str
) -> None:
    """SIGSTOP: the kernel still accepts connections, nothing answers; the fallback of an older
    generation never stands in for an answer that did not come."""
    with gateway(variant) as running:
        assert timed(run_dir, running.port)[0]
        running.pause()
        live, text, elapsed = timed(run_dir, running.port, timeout_s=0.5)
        assert not live and 0.5 <= elapsed < 0.5 + SLACK_S
        assert text == (
            f"port {running.port} accepts connections but gave no answer to /healthz within 0.5s "
            "(stuck or overloaded)"
        )
        running.resume()
        assert timed(run_dir, running.port)[0]


HINT = "; fix the cause, then run `supervisorctl start gateway` (or restart the container)"
IN_1000_S = "in 1000 s"  # a time 1000 s after the test writes the state file (not after collection)


@pytest.mark.parametrize(
    ("guard", "begins", "ends"),
    [
        ({"state": "held", "held_reason": "crash loop: 5 exits"}, "gateway held: crash loop: 5 exits", HINT),
        (
            {"state": "held", "held_reason": "lease", "retry_at": IN_1000_S},
            "gateway held: lease; tried once more at ",
            HINT,
        ),
        ({"state": "refused", "held_reason": "crash loop"}, "gateway refused: crash loop", ""),
        ({"state": "backoff", "delay_s": 4, "restart_at": IN_1000_S}, "gateway in backoff 4s", "s"),
        ({"state": "stopped"}, "gateway stopped", ""),
        (
            {"state": "waiting", "waiting_for": "the owner lease", "restart_at": IN_1000_S},
            "gateway waiting for the owner lease, restart in ",
            "s",
        ),
        ({"state": "handoff"}, "gateway exited; asking it whether it requested this restart", ""),
    ],
    ids=["held", "held-with-retry", "refused", "backoff", "stopped", "waiting", "handoff"],
)
def test_a_gateway_the_guard_does_not_run_fails_at_once_without_any_request(
    run_dir: Path, guard: dict, begins: str, ends: str
) -> None:
    """Said in the crash guard's words (`Snapshot.describe`), with when it starts again and how to
    leave hold; no request: the gateway's port listens and never accepts, a request would wait."""
    port = free_port()
    with listening(port) as port_socket:
        write_guard(
            run_dir,
            **{key: time.time() + 1000 if value == IN_1000_S else value for key, value in guard.items()},
        )
        for probe in ("live", "startup", "ready"):
            passed, text, elapsed = timed(run_dir, port, probe)
            assert not passed and text.startswith(begins) and text.endswith(ends) and elapsed < FAST_S
        port_socket.setblocking(False)
        with pytest.raises(BlockingIOError):
            port_socket.accept()  # nobody connected


def test_a_backoff_says_when_the_gateway_starts_again(run_dir: Path) -> None:
    write_guard(run_dir, state="backoff", delay_s=4, restart_at=time.time() + 2.5, exits=[{"epoch": 1.0}])
    passed, text, _ = timed(run_dir, free_port())
    assert not passed and text.startswith("gateway in backoff 4s after 1 recent exits, restart in 2.")


def test_a_starting_gateway_is_asked(run_dir: Path) -> None:
    write_guard(run_dir, state="starting", pid=12)
    with gateway("probes") as running:
        assert timed(run_dir, running.port)[0]


def test_without_supervisord_nothing_is_asked(tmp_path: Path) -> None:
    """No control socket: the init is booting or has stopped; an earlier state file is stale."""
    write_guard(tmp_path, state="running", pid=12)
    port = free_port()
    with listening(port) as port_socket:
        passed, text, elapsed = timed(tmp_path, port)
        port_socket.setblocking(False)
        with pytest.raises(BlockingIOError):
            port_socket.accept()
    assert not passed and elapsed < FAST_S
    assert (
        text
        == f"supervisord not running (no {tmp_path}/supervisor.sock): the init is booting, or has stopped"
    )


def test_a_closed_port(run_dir: Path) -> None:
    port = free_port()
    passed, text, elapsed = timed(run_dir, port)
    assert not passed and text == f"port {port} closed (not listening)" and elapsed < FAST_S


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"


def test_a_probe_s_answer_cut_short_fails_and_is_never_taken_for_a_fallback(run_dir: Path) -> None:
    port = free_port()
    with answering(port, JSON_HEAD + b'Content-Length: 30\r\n\r\n{"ok": true, "st'):
        passed, text, _ = timed(run_dir, port)
    assert not passed and text == f"port {port} gave an incomplete answer (16 of 30 bytes) to /healthz"


def test_an_answer_that_trickles_is_cut_off_at_the_deadline(run_dir: Path) -> None:
    port = free_port()
    body = b'{"ok": true, "status": "live"}'
    answer = JSON_HEAD + b"Content-Length: %d\r\n\r\n" % len(body) + body
    with answering(port, answer, byte_every_s=0.05):
        passed, text, elapsed = timed(run_dir, port, timeout_s=0.5)
    assert not passed and 0.5 <= elapsed < 0.5 + SLACK_S
    assert text.startswith(f"port {port} accepts connections but gave an incomplete answer to /healthz")


@pytest.mark.parametrize(
    ("answer", "passed", "expected"),
    [
        (JSON_HEAD + b'\r\n{"ok": true, "status": "live"}', True, "gateway live"),  # to the end
        (JSON_HEAD + b'\r\n{"ok": false, "status": "live"}', False, "gateway live but not ok (/healthz"),
        (JSON_HEAD + b'\r\n{"error": "not found"}', True, "answers HTTP (this gateway has no /healthz"),
        (JSON_HEAD + b"\r\nnot json", True, "answers HTTP (this gateway has no /healthz"),
        (b"SSH-2.0-not-http\r\n", True, "accepts connections (this gateway has no /healthz"),
    ],
    ids=["json-to-eof", "json-says-not-ok", "other-json", "unreadable-json", "not-http"],
)
def test_what_a_complete_answer_means(run_dir: Path, answer: bytes, passed: bool, expected: str) -> None:
    port = free_port()
    with answering(port, answer):
        result = timed(run_dir, port)
    assert result[0] is passed and expected in result[1], result


def run_health(run_dir: Path, port: int, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MOLTBOT_RUN_DIR": str(run_dir),
        "MOLTBOT_GATEWAY_PORT": str(port),
    }
    return subprocess.run(
        [sys.executable, "-m", "entrypoint", "health", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_the_command_prints_one_line_and_exits_0_or_1(run_dir: Path) -> None:
    with gateway("probes", "--starting", "30") as running:
        live = run_health(run_dir, running.port)
        started = run_health(run_dir, running.port, "--startup", "--timeout", "0.5")
        ready = run_health(run_dir, running.port, "--ready", "--timeout=2")
    assert (live.returncode, live.stdout) == (0, f"ok: gateway live (/healthz on port {running.port})\n")
    assert started.returncode == 1
    assert (
        started.stdout == f"failing: gateway starting: startup-sidecars (/startupz on port {running.port})\n"
    )
    assert ready.returncode == 1 and ready.stdout.startswith("failing: gateway not ready")
    assert live.stderr == started.stderr == ready.stderr == ""


@pytest.mark.parametrize("args", [["--bogus"], ["--timeout"], ["--timeout", "soon"], ["--timeout", "0"]])
def test_a_wrong_argument_is_a_usage_error(run_dir: Path, args: list[str]) -> None:
    result = run_health(run_dir, free_port(), *args)
    assert result.returncode == 64 and result.stdout == ""
    assert result.stderr.startswith("health: ") and health.USAGE in result.stderr


def test_health_imports_no_http_or_xmlrpc_client_nor_a_name_resolver(run_dir: Path) -> None:
    """PID 1 imports it for sd_notify, the HEALTHCHECK runs it every few seconds: both keep it lean,
    also once a probe was asked (connecting to an address needs no resolver and no IDNA codec)."""
    heavy = ("http", "xmlrpc", "email", "ssl", "concurrent", "psutil", "supervisor", "encodings.idna")
    code = (
        "import sys; from entrypoint.tools import health; "
        f"print(health.check({str(run_dir)!r}, 'gateway', {free_port()}, 'live', 1.0)[1]); "
        f"print([name for name in sys.modules if name in {heavy!r} or name.split('.')[0] in {heavy!r}])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
    )
    asked, imported = result.stdout.splitlines()
    assert "closed (not listening)" in asked, result.stderr
    assert imported == "[]", result.stdout + result.stderr
