"""The gateway's contract with its supervisor (issue 11), against the real openclaw 2026.9.6.

One container serves the scenarios that leave the gateway healthy behind them (restarts it asks
for, a stuck event loop, a burst of kills); the others get their own. Docker's health check runs
every 2 s here (the image's own command), so "unhealthy within three probes" shows in seconds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import Engine, Stack, docker

pytestmark = pytest.mark.e2e

PROBES = {
    "test": ["CMD", "/usr/local/bin/moltbot-init", "health"],
    "interval": "2s",
    "timeout": "5s",
    "retries": 3,
    "start_period": "1s",
}
REQUESTED_RESTARTS = 6


def gateway_pid(stack: Stack) -> int | None:
    status = stack.exec("supervisorctl", "status", "gateway").stdout
    match = re.search(r"RUNNING\s+pid (\d+)", status)
    return int(match.group(1)) if match else None


def healthz(stack: Stack) -> bool:
    try:
        status, body = stack.http_get("/healthz", timeout=2)
    except OSError:
        return False
    return status == 200 and body.lstrip().startswith("{") and json.loads(body).get("status") == "live"


def signal_gateway(stack: Stack, name: str, pid: int | None) -> None:
    assert pid is not None
    sent = stack.exec("sh", "-c", f"kill -{name} {pid}")  # the image has no kill(1): the shell's
    assert sent.returncode == 0, sent.stderr


def next_gateway_or_refusal(stack: Stack, old: int) -> int | str | None:
    """After a kill: the next gateway's pid, "refused" once the guard refuses, else None."""
    if stack.events("crash_loop_refused"):
        return "refused"
    pid = gateway_pid(stack)
    return pid if pid not in (None, old) else None


def wait_new_gateway(stack: Stack, old_pid: int | None, timeout: float = 180) -> int:
    """A gateway with another pid that answers its /healthz."""

    def answered() -> int | None:
        pid = gateway_pid(stack)
        return pid if pid and pid != old_pid and healthz(stack) else None

    return stack.wait_for(f"a gateway other than pid {old_pid} to answer", answered, timeout, interval=1)


@pytest.fixture(scope="module")
def running(engine: Engine, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One healthy stack, shared in file order by the scenarios that leave it healthy."""
    from tests.e2e.conftest import LOG_DIR

    stack = Stack(engine, tmp_path_factory.mktemp("supervision"))
    stack.override({"healthcheck": PROBES})
    try:
        stack.up()
        stack.wait_healthy()
        yield stack
    finally:
        stack.save_logs(LOG_DIR, "test_supervision-shared")
        stack.down()


def test_six_restarts_the_gateway_asks_for_are_six_immediate_restarts_never_refused(running: Stack) -> None:
    pid = gateway_pid(running)
    for _ in range(REQUESTED_RESTARTS):
        signal_gateway(running, "USR2", pid)  # the gateway's documented restart signal
        pid = wait_new_gateway(running, pid)
    requested = running.events("gateway_restart_requested")
    assert len(requested) == REQUESTED_RESTARTS, requested
    assert all(line["reason"] for line in requested), requested
    assert running.events("gateway_backoff") == [] and running.events("crash_loop_refused") == []
    assert running.inspect()["RestartCount"] == 0


def test_the_gateway_s_own_restart_command_restarts_it(running: Stack) -> None:
    """`docker exec moltbot moltbot gateway restart`, as upstream's docs say (it finds the gateway
    with lsof, asks it to restart, and waits until the new one answers)."""
    before = gateway_pid(running)
    asked = len(running.events("gateway_restart_requested"))
    restart = running.exec("moltbot", "gateway", "restart", timeout=300)
    assert restart.returncode == 0, restart.stdout + restart.stderr
    assert "No verified gateway process" not in restart.stdout + restart.stderr
    wait_new_gateway(running, before)
    assert len(running.events("gateway_restart_requested")) == asked + 1
    assert running.events("crash_loop_refused") == []


def test_a_stuck_event_loop_turns_unhealthy_within_three_probes_and_recovers(running: Stack) -> None:
    """SIGSTOP: the kernel still completes TCP handshakes on the port, but /healthz is not answered."""
    pid = gateway_pid(running)
    stopped_at = time.time()
    signal_gateway(running, "STOP", pid)
    try:
        running.wait_for("unhealthy", lambda: running.health().get("Status") == "unhealthy", 60)
        failing = [
            probe
            for probe in running.health()["Log"]
            if probe["ExitCode"] != 0 and "/healthz" in probe["Output"]
        ]
        assert failing, running.health()
        # Three probes (interval 2 s, each bounded by health's 3 s) and Docker's own bookkeeping.
        assert time.time() - stopped_at < 3 * (2 + 3) + 10
    finally:
        signal_gateway(running, "CONT", pid)
    resumed_at = time.time()
    running.wait_healthy(since=resumed_at)
    assert gateway_pid(running) == pid  # nothing restarted it behind our back


def test_a_burst_of_kills_is_refused_and_held_then_an_operator_start_brings_it_back(running: Stack) -> None:
    pid = gateway_pid(running)
    kills = 0
    while kills < 6 and isinstance(pid, int):
        on_host = running.host_pid(pid)
        assert on_host is not None
        os.kill(on_host, signal.SIGKILL)  # from the host, as an operator or another tool would
        kills += 1
        outcome = running.wait_for(
            "the next gateway or the refusal",
            lambda old=pid: next_gateway_or_refusal(running, old),
            120,
            interval=0.2,
        )
        pid = outcome if isinstance(outcome, int) else None
    refused = running.events("crash_loop_refused")
    assert len(refused) == 1 and len(refused[0]["exit_codes"]) == kills == 5, (kills, refused)
    running.wait_for("unhealthy", lambda: running.health().get("Status") == "unhealthy", 60)
    state = running.inspect()
    assert state["State"]["Running"] and state["RestartCount"] == 0
    started_at = time.time()
    start = running.exec("supervisorctl", "start", "gateway")
    assert start.returncode == 0 and "started" in start.stdout, start
    running.wait_healthy(since=started_at)


def test_an_oom_kill_in_a_container_with_a_memory_limit_is_named_as_such(stack: Stack) -> None:
    """A gateway that outgrows `--memory`: the kernel's OOM killer, not a crash of its own."""
    # Buffers live outside V8's heap, which the init sizes below the limit: only the kernel stops it.
    hog = "node -e 'const b = []; setInterval(() => { b.push(Buffer.alloc(16 << 20, 1)); }, 20)'"
    stack.override(
        {
            "mem_limit": "256m",
            "memswap_limit": "256m",
            "environment": {"MOLTBOT_GATEWAY_COMMAND": hog, "MOLTBOT_CRASHLOOP_BURST": "1"},
        }
    )
    stack.up()
    named = stack.wait_event("gateway_oom_killed", timeout=120)[0]
    assert named["level"] in ("warning", "error")
    assert named["limit_bytes"] == 256 << 20
    assert named["peak_bytes"] >= 200 << 20
    report = stack.events("startup_report")[0]
    config = next(phase for phase in report["phases"] if phase["name"] == "config")
    assert config["figures"]["heap"] == f"--max-old-space-size={(256 << 20) * 3 // 4 >> 20}"


def test_a_container_removed_with_rm_f_and_recreated_answers_by_itself(stack: Stack) -> None:
    """An unclean end (`docker rm -f`) and a recreate on the same volumes: the gateway's owner lease
    is keyed to the host name, which compose.yml keeps stable, so nobody has to step in."""
    stack.override({"healthcheck": PROBES})
    stack.up()
    stack.wait_healthy()
    token = stack.exec("cat", "/var/lib/moltbot/.moltbot-init/gateway-token").stdout
    docker("rm", "-f", stack.container, check=True)
    recreated_at = stack.up()
    stack.wait_healthy(since=recreated_at, timeout=240)
    assert healthz(stack)
    assert stack.events("crash_loop_refused") == [] and stack.events("gateway_held") == []
    assert stack.exec("cat", "/var/lib/moltbot/.moltbot-init/gateway-token").stdout == token


def test_cap_drop_all_is_answered_with_one_clear_line_and_exit_78(engine: Engine, tmp_path: Path) -> None:
    completed = docker("run", "--rm", "--network", "none", "--cap-drop", "ALL", engine.image, timeout=120)
    assert completed.returncode == 78, completed.stderr
    lines = [json.loads(line) for line in completed.stderr.splitlines() if line.startswith("{")]
    assert [line["event"] for line in lines] == ["capabilities_missing"], completed.stderr
    message = lines[0]["message"]
    assert "CAP_SETGID and CAP_SETUID" in message and "--user 1000:1000" in message
    assert "--cap-add SETUID" in message and "Errno" not in message
