"""The whole init as PID 1 (unshare --pid --fork --mount-proc), supervising stand-in gateways:
the crash guard's policy, operator actions, stopping, the boot ledger, health and sd_notify.

Timing: delays are asserted from the timestamps of the JSON lines (lower bounds are the policy;
upper bounds are generous, for a loaded 2-core machine). The only tight bound is the one the
issue names: health answers in under 200 ms.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint.common import ledger, rundir
from entrypoint.common.exits import Exit
from entrypoint.tools import health
from tests.supervised import Supervised, epoch, free_port, policy_env, service_manager, standin

pytestmark = pytest.mark.pid1

HEALTH_BOUND_S = 0.2


def timed_health(run: Supervised | Path, port: int) -> tuple[bool, str]:
    run_dir = run if isinstance(run, Path) else run.run_dir
    started = time.monotonic()
    result = health.check(str(run_dir), "gateway", port)
    elapsed = time.monotonic() - started
    assert elapsed < HEALTH_BOUND_S, f"health took {elapsed * 1000:.0f} ms ({result[1]})"
    return result


def accepts(port: int) -> bool:
    """Whether the port accepts a TCP connection now."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def wait_health(run: Supervised, port: int, want: bool, timeout: float = 60, contains: str = "") -> str:
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        healthy, seen = timed_health(run, port)
        if healthy == want and contains in seen:
            return seen
        time.sleep(0.1)
    raise AssertionError(f"health never became {want} ({contains!r}); last: {seen}; events {run.names()}")


Start = Callable[..., Supervised]


# --------------------------------------------------------------------------------------------------
# The crash guard's policy


def test_instant_exit_is_refused_after_exactly_the_burst_with_doubling_delays(supervised: Start) -> None:
    port = free_port()
    run = supervised(
        standin("instant_exit", "--exit-code", 3),
        MOLTBOT_GATEWAY_PORT=str(port),
        **policy_env(initial=0.3, maximum=60, burst=5, window=300),
    )
    refused = run.wait_for("crash_loop_refused", timeout=120)[0]
    starts = run.events("gateway_starting")
    exits = run.events("gateway_exited")
    backoffs = run.events("gateway_backoff")
    assert len(starts) == 5 and len(exits) == 5 and len(backoffs) == 4
    assert [line["delay_s"] for line in backoffs] == [0.3, 0.6, 1.2, 2.4]
    assert [line["exit_code"] for line in exits] == [3] * 5
    assert all(line["expected"] is False for line in exits)
    # Each restart came no sooner than its delay after the exit (and not absurdly later). The exit
    # is dated when supervisord reported it (`exited_at`); its line can be written a little later.
    for exit_line, backoff, start in zip(exits[:4], backoffs, starts[1:], strict=True):
        gap = epoch(start) - epoch({"time": exit_line["exited_at"]})
        assert backoff["delay_s"] - 0.01 <= gap <= backoff["delay_s"] + 5, (gap, backoff)
    assert [line["requested_by"] for line in starts] == ["supervisord"] + ["crash_guard"] * 4
    assert refused["exit_codes"] == [3] * 5 and len(refused["exits"]) == 5
    assert [item["time"] for item in refused["exits"]] == [line["exited_at"] for line in exits]
    assert "instant_exit: exiting with code 3" in refused["stderr_tail"]
    assert refused["action"] == "hold"
    # Nothing more is started; the state says held and health says why, fast.
    run.wait_for("gateway_held")
    state = run.guard_state("held")
    assert state["state"] == "held" and state["restarts"] == 4
    reason = wait_health(run, port, False, contains="held")
    assert "supervisorctl start gateway" in reason
    cli = run.init_command("health")
    assert cli.returncode == 1 and "held" in cli.stdout
    time.sleep(1.5)
    assert len(run.events("gateway_starting")) == 5
    assert run.terminate() == 0
    assert run.non_json_stderr() == [line for line in run.non_json_stderr() if "instant_exit" in line]
    assert ledger.boots(str(run.state_dir / ".moltbot-init" / "boot-ledger.json"))[-1]["outcome"] == "stopped"


def test_flapping_gateway_is_refused_although_each_run_outlives_startsecs(supervised: Start) -> None:
    port = free_port()
    run = supervised(
        standin("flapping", "--run", 3, "--port", port),
        MOLTBOT_GATEWAY_PORT=str(port),
        **policy_env(initial=0.2, burst=3, window=120),
    )
    wait_health(run, port, True, timeout=60)
    refused = run.wait_for("crash_loop_refused", timeout=120)[0]
    exits = run.events("gateway_exited")
    assert len(exits) == 3
    assert all(line["uptime_s"] >= 3 for line in exits), exits
    assert refused["exit_codes"] == [1, 1, 1]
    wait_health(run, port, False, contains="held")
    assert run.terminate() == 0


def test_stderr_tail_in_the_refusal_is_the_last_20_lines(supervised: Start) -> None:
    run = supervised(
        standin("stderr_then_exit", "--stderr-lines", 30, "--exit-code", 4), **policy_env(burst=1, window=60)
    )
    refused = run.wait_for("crash_loop_refused", timeout=60)[0]
    assert refused["stderr_tail"] == [f"standin stderr stderr_then_exit line {n}" for n in range(11, 31)]
    assert refused["exit_codes"] == [4]
    # The gateway's stderr also reached the container's stderr unchanged.
    assert "standin stderr stderr_then_exit line 30\n" in run.raw_stderr
    assert run.terminate() == 0


def test_operator_restart_and_stop_never_count(supervised: Start) -> None:
    port = free_port()
    run = supervised(
        standin("healthy", "--port", port), MOLTBOT_GATEWAY_PORT=str(port), **policy_env(burst=2, window=300)
    )
    wait_health(run, port, True)
    for _ in range(3):
        result = run.supervisorctl("restart", "gateway")
        assert result.returncode == 0, result.stdout + result.stderr
        wait_health(run, port, True)
    result = run.supervisorctl("stop", "gateway")
    assert "stopped" in result.stdout
    run.wait_for("gateway_stopped", count=4)
    reason = wait_health(run, port, False, contains="stopped")
    assert "gateway stopped" in reason
    result = run.supervisorctl("start", "gateway")
    assert "started" in result.stdout
    wait_health(run, port, True)
    assert run.events("crash_loop_refused") == [] and run.events("gateway_backoff") == []
    assert {line["requested_by"] for line in run.events("gateway_stopped")} == {"operator"}
    state = run.guard_state("running")
    assert state["exits"] == [] and state["state"] == "running"
    # status, as an operator would run it with docker exec
    status = run.init_command("status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert data["program"]["state"] == "RUNNING" and data["health"]["ok"] is True
    assert data["resources"]["processes"] >= 1 and data["resources"]["rss_bytes"] > 0
    assert data["startup"]["mode"] == "supervise"
    text = run.init_command("status")
    assert "gateway: RUNNING" in text.stdout and "health: ok" in text.stdout
    assert run.terminate() == 0


def test_hold_then_operator_start_after_the_fault_is_removed(
    supervised: Start, test_user: pwd.struct_passwd, box: Path
) -> None:
    port = free_port()
    marker = box / "fault"
    marker.write_text("broken\n")
    run = supervised(
        standin("fails_while_marker", "--marker", marker, "--port", port),
        MOLTBOT_GATEWAY_PORT=str(port),
        MOLTBOT_USER=test_user.pw_name,
        **policy_env(initial=0.2, burst=2, window=300),
    )
    run.wait_for("gateway_held", timeout=60)
    reason = wait_health(run, port, False, contains="held")
    assert "crash loop" in reason
    marker.unlink()
    result = run.supervisorctl("start", "gateway")
    assert "started" in result.stdout, result.stdout + result.stderr
    rearmed = run.wait_for("crash_guard_rearmed")[0]
    assert rearmed["previous_state"] == "held"
    # Logged just after the re-arm, from the same decision: its line may still be on its way.
    run.wait_for("gateway_starting", where=lambda line: line["requested_by"] == "operator")
    assert run.events("gateway_starting")[-1]["requested_by"] == "operator"
    wait_health(run, port, True)
    state = run.guard_state("running")
    assert state["state"] == "running" and state["exits"] == []
    boots = ledger.boots(str(run.state_dir / ".moltbot-init" / "boot-ledger.json"))
    assert boots[-1]["outcome"] == "ready"  # written by the crash guard, as the test user
    assert run.terminate() == 0


def test_exit_action_ends_the_init_with_the_documented_code(supervised: Start) -> None:
    run = supervised(standin("instant_exit"), **policy_env(initial=0.2, burst=2, window=300, action="exit"))
    code = run.wait(timeout=120)
    assert code == Exit.CRASH_LOOP == 75
    refused = run.events("crash_loop_refused")
    assert len(refused) == 1 and refused[0]["action"] == "exit"
    assert run.events("crash_guard_shutdown")[0]["exit_code"] == 75
    assert (run.run_dir / rundir.EXIT_CODE).read_text().strip() == "75"
    boots = ledger.boots(str(run.state_dir / ".moltbot-init" / "boot-ledger.json"))
    assert boots[-1]["outcome"] in ("refused", "init_failed")


def test_gateway_ignoring_sigterm_is_killed_after_stop_timeout_and_init_exits_0(
    supervised: Start,
) -> None:
    port = free_port()
    run = supervised(
        standin("ignores_sigterm", "--port", port, "--children", 2),
        MOLTBOT_GATEWAY_PORT=str(port),
        **policy_env(stop=2),
    )
    wait_health(run, port, True)
    started = time.monotonic()
    assert run.terminate(timeout=30) == 0
    elapsed = time.monotonic() - started
    assert elapsed >= 2.0  # the gateway got its stop timeout before the SIGKILL
    assert run.events("gateway_backoff") == [] and run.events("crash_loop_refused") == []
    # The kill is said, before it happens: supervisord stops the guard right after the gateway.
    killed = run.events("gateway_stop_timeout")
    assert len(killed) == 1 and killed[0]["stop_timeout_s"] == 2 and killed[0]["level"] == "error"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()


def test_sigterm_stops_a_healthy_gateway_without_restart(supervised: Start, box: Path) -> None:
    port = free_port()
    env_file = box / "gateway-env.json"
    run = supervised(
        standin("healthy", "--port", port, "--env-file", env_file), MOLTBOT_GATEWAY_PORT=str(port)
    )
    wait_health(run, port, True)
    assert run.terminate() == 0
    assert run.events("gateway_backoff") == []
    assert any("standin healthy: SIGTERM, exiting 0" in line for line in run.stdout)
    env = json.loads(env_file.read_text())
    assert "SUPERVISOR_SERVER_URL" in env or "SUPERVISOR_ENABLED" in env


# --------------------------------------------------------------------------------------------------
# The boot ledger


def test_repeated_failed_boots_start_the_next_boot_in_hold(
    supervised: Start, test_user: pwd.struct_passwd
) -> None:
    port = free_port()
    env = {
        "MOLTBOT_GATEWAY_PORT": str(port),
        "MOLTBOT_USER": test_user.pw_name,
        **policy_env(initial=0.1, burst=2, window=600, action="exit"),
    }
    for _ in range(2):
        failed = supervised(standin("instant_exit"), **env)
        assert failed.wait(timeout=120) == Exit.CRASH_LOOP
    counter = failed.runner.box / "starts"
    counter.touch(mode=0o666)
    counter.chmod(0o666)
    run = supervised(standin("healthy", "--port", port, "--counter", counter), **env)
    held = run.wait_for("boot_held", timeout=60)[0]
    assert "supervisorctl start gateway" in held["message"]
    reason = wait_health(run, port, False, contains="held")
    assert "boot ledger" in reason
    time.sleep(2)
    assert counter.read_text() == ""  # the gateway was never started
    result = run.supervisorctl("start", "gateway")
    assert "started" in result.stdout, result.stdout + result.stderr
    wait_health(run, port, True)
    assert len(counter.read_text().splitlines()) == 1
    assert run.terminate() == 0
    # That boot ended well: the next one is not held.
    again = supervised(standin("healthy", "--port", port), **env)
    wait_health(again, port, True)
    assert again.events("boot_held") == []
    assert again.terminate() == 0


# --------------------------------------------------------------------------------------------------
# sd_notify


def test_sd_notify_order_and_ready_only_once_the_port_is_open(supervised: Start, box: Path) -> None:
    port = free_port()
    received: list[tuple[str, bool]] = []  # (message, port open when it arrived)
    env_file = box / "gateway-env.json"
    with service_manager(lambda message: received.append((message, accepts(port)))) as notify_socket:
        run = supervised(
            standin("healthy", "--port", port, "--ready-after", 3, "--env-file", env_file),
            MOLTBOT_GATEWAY_PORT=str(port),
            NOTIFY_SOCKET=notify_socket,
            WATCHDOG_USEC="2000000",
        )
        wait_health(run, port, True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and [m for m, _ in received].count("WATCHDOG=1") < 2:
            time.sleep(0.1)
        assert run.terminate() == 0
        time.sleep(0.5)
    messages = [message for message, _ in received]
    assert messages.count("READY=1") == 1
    ready = messages.index("READY=1")
    assert received[ready][1] is True, "READY=1 arrived before the port accepted connections"
    before = messages[:ready]
    assert before and all(message.startswith("STATUS=") for message in before)
    assert any(message.startswith("STATUS=boot") for message in before)
    assert messages.count("WATCHDOG=1") >= 2
    assert messages.index("WATCHDOG=1") > ready
    assert messages[-1] == "STOPPING=1" or "STOPPING=1" in messages[ready:]
    env = json.loads(env_file.read_text())
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & set(env)


# --------------------------------------------------------------------------------------------------
# Health, in every state


def test_health_answers_fast_in_every_state(supervised: Start, box: Path) -> None:
    port = free_port()
    marker = box / "fault"
    marker.write_text("x")
    seen: dict[str, str] = {}

    def sample(run: Supervised, until: Callable[[], bool], timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not until():
            healthy, reason = timed_health(run, port)
            words = ("held", "backoff", "closed", "not running")
            key = "ok" if healthy else next((word for word in words if word in reason), reason)
            seen.setdefault(key, reason)
            time.sleep(0.02)

    # Before supervisord exists.
    healthy, reason = timed_health(box / "run", port)
    assert not healthy and "not running" in reason
    run = supervised(
        standin("fails_while_marker", "--marker", marker, "--port", port, "--ready-after", 1),
        MOLTBOT_GATEWAY_PORT=str(port),
        **policy_env(initial=1, burst=3, window=300),
    )
    sample(run, lambda: bool(run.events("gateway_held")))
    sample(run, lambda: False, timeout=0.5)
    marker.unlink()
    run.supervisorctl("start", "gateway")
    sample(run, lambda: "ok" in seen)
    assert run.terminate() == 0
    healthy, reason = timed_health(run, port)
    assert not healthy
    assert {"ok", "held", "backoff", "closed"} <= set(seen), seen


def test_health_cli_exit_codes(supervised: Start) -> None:
    port = free_port()
    run = supervised(standin("healthy", "--port", port), MOLTBOT_GATEWAY_PORT=str(port))
    wait_health(run, port, True)
    result = run.init_command("health")
    assert result.returncode == 0 and result.stdout.startswith("ok:")
    assert run.terminate() == 0
    result = run.init_command("health", inside=False)
    assert result.returncode == 1 and "supervisord" in result.stdout
    assert os.path.exists(run.run_dir / "startup-report.json")
