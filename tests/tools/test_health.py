"""health.check against a scripted supervisord: the right verdict, one short reason, and fast."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from entrypoint.tools import health
from tests.supervised import free_port

from .fakes import black_hole, fake_supervisor, listening

BOUND_S = 0.2  # the bound: the HEALTHCHECK answers in under 200 ms


def timed_check(run_dir: Path, port: int) -> tuple[bool, str, float]:
    started = time.monotonic()
    healthy, reason = health.check(str(run_dir), "gateway", port)
    elapsed = time.monotonic() - started
    assert elapsed < BOUND_S, f"health took {elapsed * 1000:.0f} ms: {reason}"
    assert "\n" not in reason and reason
    return healthy, reason, elapsed


def write_guard(run_dir: Path, **state: object) -> None:
    (run_dir / "crashguard.json").write_text(json.dumps({"program": "gateway", **state}))


def test_running_and_listening_is_healthy(tmp_path: Path) -> None:
    port = free_port()
    with fake_supervisor(str(tmp_path)), listening(port):
        healthy, reason, _ = timed_check(tmp_path, port)
    assert healthy and reason.startswith("ok:") and "pid 4242" in reason


def test_running_but_port_closed(tmp_path: Path) -> None:
    with fake_supervisor(str(tmp_path)):
        healthy, reason, _ = timed_check(tmp_path, free_port())
    assert not healthy and "closed" in reason


@pytest.mark.parametrize(
    ("statename", "guard", "expected"),
    [
        ("STARTING", {}, "starting"),
        ("EXITED", {"state": "backoff", "delay_s": 4, "restart_at": time.time() + 3}, "backoff 4s"),
        ("STOPPED", {"state": "held", "held_reason": "crash loop: 5 exits"}, "held (crash loop: 5 exits)"),
        ("EXITED", {"state": "refused", "held_reason": "crash loop"}, "refused after a crash loop"),
        ("STOPPED", {"state": "stopped"}, "stopped"),
        ("FATAL", {}, "fatal"),
    ],
)
def test_not_running_says_why(tmp_path: Path, statename: str, guard: dict, expected: str) -> None:
    if guard:
        write_guard(tmp_path, **guard)
    with fake_supervisor(str(tmp_path)) as fake:
        fake.info = {"statename": statename, "pid": 0, "start": 0, "now": 1}
        healthy, reason, _ = timed_check(tmp_path, free_port())
    assert not healthy
    assert expected in reason
    if guard.get("state") == "held":
        assert "supervisorctl start gateway" in reason


def test_no_supervisord(tmp_path: Path) -> None:
    healthy, reason, _ = timed_check(tmp_path, free_port())
    assert not healthy and "supervisord not running" in reason


def test_socket_file_without_a_server(tmp_path: Path) -> None:
    with black_hole(str(tmp_path / "supervisor.sock")) as server:
        server.close()  # the file stays: connection refused
        healthy, reason, _ = timed_check(tmp_path, free_port())
    assert not healthy and "not answering" in reason


def test_a_supervisord_that_never_answers_does_not_hang_the_check(tmp_path: Path) -> None:
    with black_hole(str(tmp_path / "supervisor.sock")):
        healthy, reason, _ = timed_check(tmp_path, free_port())
    assert not healthy and "not answering" in reason


def test_a_slow_supervisord_is_cut_off_within_the_bound(tmp_path: Path) -> None:
    with fake_supervisor(str(tmp_path)) as fake:
        fake.delay_s = 1.0
        healthy, reason, _ = timed_check(tmp_path, free_port())
    assert not healthy and "not answering" in reason


def test_unknown_program(tmp_path: Path) -> None:
    with fake_supervisor(str(tmp_path)):
        healthy, reason = health.check(str(tmp_path), "other", free_port())
    assert not healthy and "does not know other" in reason
