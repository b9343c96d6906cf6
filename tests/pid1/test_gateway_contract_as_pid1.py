"""The whole init as PID 1 (unshare --pid --fork --mount-proc) keeping the gateway's contract with
its supervisor, against stand-in gateways and a stand-in of the gateway's CLI
(tests/standins/handoff_cli.py): requested restarts, exit 78, an operator's stop during a backoff,
a stale owner lease, the cool-down after a hold, stopping without cutting a drain, and an OOM kill
in a real memory cgroup.

Timing: bounds are generous, for a loaded 2-core machine; what would betray a wrong rule is an
order of magnitude away (a 20 s backoff against an immediate restart).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from entrypoint.common import cgroup, ledger, rundir
from entrypoint.common.exits import Exit
from tests.conftest import InitRunner
from tests.supervised import STANDINS, Supervised, epoch, free_port, policy_env, standin

pytestmark = pytest.mark.pid1

Start = Callable[..., Supervised]


def handoff_cli(init: InitRunner, box: Path, mode: str = "ok") -> str:
    """MOLTBOT_GATEWAY_CLI for the stand-in CLI, answering from `box/handoff.json`."""
    script = init.sources / STANDINS / "handoff_cli.py"
    return f"python3 {script} --store {box / 'handoff.json'} --log {box / 'cli.log'} --mode {mode}"


def cli_calls(box: Path) -> list[str]:
    path = box / "cli.log"
    return path.read_text().splitlines() if path.exists() else []


def requests_restart(box: Path, times: int, run_s: float = 0.3) -> str:
    counter = box / "starts"
    counter.touch()
    return standin(
        "requests_restart",
        "--run",
        run_s,
        "--times",
        times,
        "--counter",
        counter,
        "--handoff",
        box / "handoff.json",
    )


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        assert time.monotonic() < deadline, f"port {port} never opened"
        time.sleep(0.1)


# --------------------------------------------------------------------------------------------------
# Restart handoffs


def test_six_requested_restarts_are_six_immediate_restarts_and_the_probe_is_kept(
    supervised: Start, init: InitRunner, box: Path
) -> None:
    env = {"MOLTBOT_GATEWAY_CLI": handoff_cli(init, box), **policy_env(initial=20, burst=2, window=300)}
    run = supervised(requests_restart(box, times=6), **env)
    requested = run.wait_for("gateway_restart_requested", count=6, timeout=90)
    assert {(line["reason"], line["source"]) for line in requested} == {
        ("gateway.restart", "operator-restart")
    }
    run.wait_for("gateway_running", count=7)
    assert run.events("gateway_backoff") == [] and run.events("crash_loop_refused") == []
    exits = run.events("gateway_exited")
    starts = run.events("gateway_starting")
    for exit_line, start in zip(exits, starts[1:], strict=True):
        # Immediate: the 20 s backoff (and 5 exits refused at 2) would show.
        assert epoch(start) - epoch({"time": exit_line["exited_at"]}) < 5, (exit_line, start)
    assert [line["requested_by"] for line in starts[1:]] == ["crash_guard"] * 6
    pids = [str(line["pid"]) for line in exits]
    assert cli_calls(box) == ["capabilities", *(f"consume {pid}" for pid in pids)]
    state = run.guard_state("running")
    assert (state["requested_restarts"], state["restarts"], state["exits"]) == (6, 0, [])
    assert run.terminate() == 0
    cache = json.loads((run.state_dir / ".moltbot-init" / "restart-handoff.json").read_text())
    assert cache["capable"] is True
    # The next boot of the same image never asks the CLI's capabilities again. (Its first start
    # requests a restart: the seventh one may have been stopped before it counted itself.)
    started = len((box / "starts").read_text().splitlines())
    again = supervised(requests_restart(box, times=started + 1), **env)
    again.wait_for("gateway_restart_requested")
    again.wait_for("gateway_running", count=2)
    assert cli_calls(box).count("capabilities") == 1
    assert again.terminate() == 0


@pytest.mark.parametrize(
    ("mode", "calls", "answer"),
    [
        ("none", ["capabilities"], "restart_handoff_capabilities"),  # an older generation
        ("reject", ["capabilities", "consume", "consume"], "restart_handoff_declined"),
    ],
)
def test_without_an_accepted_handoff_a_clean_exit_counts_as_ever(
    supervised: Start, init: InitRunner, box: Path, mode: str, calls: list[str], answer: str
) -> None:
    run = supervised(
        requests_restart(box, times=5),
        MOLTBOT_GATEWAY_CLI=handoff_cli(init, box, mode),
        **policy_env(initial=0.2, burst=2, window=300),
    )
    refused = run.wait_for("crash_loop_refused", timeout=60)[0]
    assert refused["exit_codes"] == [0, 0] and run.events("gateway_restart_requested") == []
    assert run.events(answer)
    assert [call.split()[0] for call in cli_calls(box)] == calls
    assert run.terminate() == 0


def test_a_cli_that_hangs_is_killed_at_its_timeout_and_the_exit_counts(
    supervised: Start, init: InitRunner, box: Path
) -> None:
    run = supervised(
        requests_restart(box, times=5),
        MOLTBOT_GATEWAY_CLI=handoff_cli(init, box, "hang"),
        MOLTBOT_HANDOFF_TIMEOUT="2",
        **policy_env(initial=0.2, burst=3, window=300),
    )
    failed = run.wait_for("restart_handoff_failed", timeout=60)[0]
    exited = run.events("gateway_exited")[0]
    assert failed["level"] == "warning" and "no answer within 2s" in failed["detail"]
    assert 2 <= epoch(failed) - epoch({"time": exited["exited_at"]}) < 10
    run.wait_for("gateway_backoff")  # the restart rules, as for any exit nobody asked for
    run.wait_for("gateway_starting", count=2)
    script = str(box / "handoff.json")
    hung = [p for p in psutil.process_iter(["cmdline"]) if script in " ".join(p.info["cmdline"] or ())]
    assert len(hung) <= 1  # at most the next question, asked right now; the timed-out one is gone
    assert run.terminate() == 0


# --------------------------------------------------------------------------------------------------
# EX_CONFIG


def test_exit_78_is_held_after_one_exit_with_its_redacted_reason_then_started_after_the_fix(
    supervised: Start, box: Path
) -> None:
    port = free_port()
    marker = box / "fault"
    marker.write_text("broken config\n")
    run = supervised(
        standin(
            "fails_while_marker",
            "--marker",
            marker,
            "--exit-code",
            78,
            "--port",
            port,
            "--say",
            "Config invalid: gateway.auth.token=$OPENCLAW_GATEWAY_TOKEN, model key $MY_API_KEY",
            "--say",
            "Authorization: Bearer eyJhbGciOi.eyJzdWIiOiIx.SflKxwRJSM",
        ),
        MOLTBOT_GATEWAY_PORT=str(port),
        MY_API_KEY="sk-live-0123456789abcdefXYZ",
        **policy_env(initial=0.2, burst=5),
    )
    held = run.wait_for("gateway_held", timeout=60)[0]
    time.sleep(1)
    assert len(run.events("gateway_exited")) == 1 and run.events("gateway_backoff") == []
    assert held["level"] == "error" and held["exit_code"] == 78 and held["retry_at"] is None
    assert "exit code 78" in held["reason"] and "supervisorctl start gateway" in held["how_to_leave"]
    assert any(
        "Config invalid: gateway.auth.token=<redacted>, model key <redacted>" in x
        for x in held["stderr_tail"]
    )
    assert "Authorization: Bearer <redacted>" in held["stderr_tail"]
    token = (run.state_dir / ".moltbot-init" / "gateway-token").read_text().strip()
    ours = json.dumps(run.lines)
    assert token not in ours and "sk-live-0123456789abcdefXYZ" not in ours and "SflKxwRJSM" not in ours
    assert run.guard_state("held")["retry_at"] is None
    marker.unlink()
    result = run.supervisorctl("start", "gateway")
    assert "started" in result.stdout, result.stdout + result.stderr
    assert run.wait_for("crash_guard_rearmed")[0]["previous_state"] == "held"
    wait_port(port)
    assert run.terminate() == 0


def test_exit_78_with_the_exit_action_ends_the_init_with_78(supervised: Start) -> None:
    run = supervised(standin("instant_exit", "--exit-code", 78), **policy_env(initial=0.2, action="exit"))
    assert run.wait(timeout=60) == Exit.CONFIG == 78
    assert len(run.events("gateway_exited")) == 1 and run.events("gateway_config_refused")
    assert (run.run_dir / rundir.EXIT_CODE).read_text().strip() == "78"
    assert ledger.boots(str(run.state_dir / ".moltbot-init" / "boot-ledger.json"))[-1]["outcome"] == "refused"


# --------------------------------------------------------------------------------------------------
# Operators win


def test_a_stop_during_the_backoff_stays_stopped_until_started(supervised: Start) -> None:
    run = supervised(standin("instant_exit"), **policy_env(initial=3, burst=5))
    run.wait_for("gateway_backoff")
    result = run.supervisorctl("stop", "gateway")
    assert result.returncode == 0 and "gateway: stopped" in result.stdout, result.stdout + result.stderr
    assert run.wait_for("gateway_stopped")[0]["requested_by"] == "operator"
    time.sleep(4)  # past the 3 s the backoff had left
    assert len(run.events("gateway_starting")) == 1
    assert "STOPPED" in run.supervisorctl("status", "gateway").stdout
    assert run.guard_state("stopped")["state"] == "stopped"
    assert "gateway: started" in run.supervisorctl("start", "gateway").stdout
    run.wait_for("gateway_starting", where=lambda line: line["requested_by"] == "operator")
    assert run.terminate() == 0


# --------------------------------------------------------------------------------------------------
# Refusals that pass by themselves


def test_a_stale_owner_lease_is_waited_out_and_never_refused(supervised: Start, box: Path) -> None:
    port = free_port()
    counter = box / "starts"
    counter.touch()
    run = supervised(
        standin("lease_held", "--times", 3, "--counter", counter, "--port", port),
        MOLTBOT_GATEWAY_PORT=str(port),
        **policy_env(initial=0.5, maximum=0.5, burst=2, window=300),
    )
    run.wait_for("gateway_running", count=4, timeout=60)
    wait_port(port)
    waiting = run.events("gateway_waiting_for_lease")
    assert len(waiting) == 1 and "Another Gateway owner lease is still active" in waiting[0]["line"]
    assert run.events("crash_loop_refused") == [] and run.events("gateway_backoff") == []
    assert [line["level"] for line in run.events("gateway_exited")] == ["info"] * 3
    assert run.guard_state("running")["exits"] == []
    assert run.terminate() == 0


def test_a_crash_loop_hold_is_tried_once_after_its_cool_down_and_heals(supervised: Start, box: Path) -> None:
    port = free_port()
    marker = box / "fault"
    marker.write_text("x")
    run = supervised(
        standin("fails_while_marker", "--marker", marker, "--port", port),
        MOLTBOT_GATEWAY_PORT=str(port),
        **policy_env(initial=0.2, burst=2, window=300, hold_retry=3),
    )
    held = run.wait_for("gateway_held", timeout=60)[0]
    assert held["retry_at"] and held["reason"].startswith("crash loop")
    state = run.guard_state("held")
    assert state["retry_at"] is not None and state["retrying"] is False
    status = run.init_command("status")
    assert "tried once more after its cool-down" in status.stdout, status.stdout
    # One attempt after 3 s; it fails, and the hold is back at once (no backoff, no burst).
    retry = run.wait_for("gateway_hold_retry", timeout=30)[0]
    assert 2.5 <= epoch(retry) - epoch(held) < 10
    again = run.wait_for("gateway_held", count=2, timeout=30)[1]
    assert "attempt after the cool-down failed" in again["reason"]
    assert len(run.events("gateway_exited")) == 3 and len(run.events("gateway_backoff")) == 1
    marker.unlink()  # the cause passes: the next attempt brings the gateway back by itself
    run.wait_for("gateway_hold_retry", count=2, timeout=30)
    wait_port(port)
    assert run.guard_state("running")["retrying"] is True
    assert run.terminate() == 0


# --------------------------------------------------------------------------------------------------
# Stopping without cutting a reply


def test_a_gateway_draining_20s_stops_cleanly_within_the_default_stop_timeout(init: InitRunner) -> None:
    port = free_port()
    command = standin("healthy", "--port", port, "--term-delay", 20).replace(
        STANDINS, str(init.sources / STANDINS)
    )
    run = Supervised(init, command, {"MOLTBOT_GATEWAY_PORT": str(port)})  # no MOLTBOT_STOP_TIMEOUT
    try:
        run.wait_for("gateway_running")
        wait_port(port)
        started = time.monotonic()
        assert run.terminate(timeout=90) == 0
        assert 19 <= time.monotonic() - started < 60
        assert run.events("gateway_stopping")[0]["stop_timeout_s"] == 330
        assert run.events("gateway_stop_timeout") == []
        assert any("standin healthy: SIGTERM, exiting 0" in line for line in run.stdout)
    finally:
        run.kill()


def test_a_drain_longer_than_the_stop_timeout_is_killed_and_said_with_its_last_lines(
    supervised: Start,
) -> None:
    port = free_port()
    run = supervised(
        standin("healthy", "--port", port, "--term-delay", 60),
        MOLTBOT_GATEWAY_PORT=str(port),
        **policy_env(stop=2),
    )
    wait_port(port)
    started = time.monotonic()
    assert run.terminate(timeout=30) == 0
    assert 2 <= time.monotonic() - started < 20
    killed = run.wait_for("gateway_stop_timeout")[0]
    assert killed["level"] == "error" and killed["stop_timeout_s"] == 2
    assert "standin healthy: draining active work for 60s" in killed["output_tail"]


# --------------------------------------------------------------------------------------------------
# Out of memory

LIMIT = 192 << 20


@dataclass
class InCgroup(InitRunner):
    """The init as PID 1 inside a memory cgroup: its shell joins the cgroup, then execs unshare."""

    procs: str = ""

    def command(self, *args: str, pid1: bool = True) -> list[str]:
        command = super().command(*args, pid1=pid1)
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', self.procs, *command] if pid1 else command


@pytest.fixture
def limited(init: InitRunner) -> Iterator[InCgroup]:
    """The init's runner, in a memory cgroup of its own with a 192 MiB limit and no swap."""
    own = cgroup.find()
    if own is None:
        pytest.fail("no memory cgroup: the OOM test needs one")
    directory = Path(own.directory) / f"mbtest-oom-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    limits = (
        {"memory.max": LIMIT, "memory.swap.max": 0}
        if own.v2
        else {"memory.limit_in_bytes": LIMIT, "memory.memsw.limit_in_bytes": LIMIT}
    )
    for name, value in limits.items():
        if (directory / name).exists():
            (directory / name).write_text(str(value))
    try:
        yield InCgroup(init.python, init.sources, init.box, str(directory / "cgroup.procs"))
    finally:
        deadline = time.monotonic() + 10
        while (directory / "cgroup.procs").read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.1)  # the namespace's processes are still dying
        os.rmdir(directory)


def test_an_oom_kill_is_named_with_the_limit_and_the_peak_then_counted(limited: InCgroup) -> None:
    command = standin("allocates", "--allocate", 1024).replace(STANDINS, str(limited.sources / STANDINS))
    run = Supervised(limited, command, {"MOLTBOT_STOP_TIMEOUT": "3", **policy_env(burst=1)})
    try:
        oom = run.wait_for("gateway_oom_killed", timeout=60)[0]
        assert oom["level"] == "error" and oom["limit_bytes"] == LIMIT
        assert oom["peak_bytes"] >= LIMIT * 0.9 and oom["oom_kills"] >= 1
        assert "192 MiB" in oom["message"]
        assert run.wait_for("crash_loop_refused")[0]["exit_codes"] == [-1]  # counted like any crash
        assert run.terminate() == 0
    finally:
        run.kill()
