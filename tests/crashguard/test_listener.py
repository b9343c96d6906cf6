"""The crash guard as an event listener: the protocol, and its runtime against a scripted RPC."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any

from entrypoint.common import guardstate, ledger, rundir
from entrypoint.crashguard import guard as crashguard
from tests.supervised import policy


def envelope(serial: int, name: str, payload: str) -> str:
    header = (
        f"ver:3.0 server:supervisor serial:{serial} pool:crashguard poolserial:{serial} "
        f"eventname:{name} len:{len(payload)}\n"
    )
    return header + payload


def state_event(serial: int, name: str, **fields: Any) -> str:
    tokens = {"processname": "gateway", "groupname": "gateway", "from_state": "STARTING", **fields}
    return envelope(serial, name, " ".join(f"{key}:{value}" for key, value in tokens.items()))


class FakeRPC:
    """What `childutils.getRPCInterface(env)` returns, reduced to the calls the guard makes."""

    def __init__(self) -> None:
        self.supervisor = self
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.info: dict[str, Any] = {"statename": "EXITED", "exitstatus": 3, "start": 0, "stop": 0}

    def getProcessInfo(self, name: str) -> dict[str, Any]:
        self.calls.append(("getProcessInfo", (name,)))
        return dict(self.info)

    def startProcess(self, name: str, wait: bool) -> bool:
        self.calls.append(("startProcess", (name, wait)))
        return True

    def shutdown(self) -> bool:
        self.calls.append(("shutdown", ()))
        return True

    def named(self, call: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.calls if name == call]


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition never met")


def make_runtime(tmp_path: Path, rpc: FakeRPC, **chosen: Any) -> crashguard.Runtime:
    ledger_path = str(tmp_path / "state" / "boot-ledger.json")
    ledger.begin_boot(ledger_path, time.time())
    return crashguard.Runtime(
        str(tmp_path), "gateway", policy(**chosen), ledger_path, lambda: rpc, supervisord_pid=1
    )


def test_protocol_acknowledges_every_event_and_reads_utf8_lengths_in_characters(tmp_path: Path) -> None:
    rpc = FakeRPC()
    runtime = make_runtime(tmp_path, rpc)
    stderr_payload = "processname:gateway groupname:gateway pid:7 channel:stderr\nérreur fatale ✗\nzweite\n"
    events = [
        state_event(1, "PROCESS_STATE_STARTING", tries=0),
        envelope(2, "PROCESS_LOG_STDERR", stderr_payload),
        state_event(3, "PROCESS_STATE_RUNNING", pid=7),
        envelope(4, "TICK_5", "when:1700000000"),
    ]
    stdin = io.TextIOWrapper(io.BytesIO("".join(events).encode()), encoding="utf-8")
    stdout = io.StringIO()
    runtime.start()
    crashguard.serve(stdin, stdout, runtime, time.time)
    assert stdout.getvalue() == "READY\nRESULT 2\nOK" * 4 + "READY\n"
    wait_until(lambda: (rundir.read_json(str(tmp_path), rundir.GUARD_STATE) or {}).get("state") == "running")
    assert list(runtime.guard.stderr_tail) == ["érreur fatale ✗", "zweite"]
    assert ledger.boots(runtime.ledger_path)[-1]["outcome"] == "ready"
    runtime.submit(None)


def test_runtime_restarts_after_the_backoff_then_refuses(tmp_path: Path) -> None:
    rpc = FakeRPC()
    runtime = make_runtime(tmp_path, rpc, initial=0.05, burst=3, action="exit")
    runtime.start()
    now = time.time
    runtime.submit(crashguard.Event("PROCESS_STATE_STARTING", {"processname": "gateway"}, "", now()))
    runtime.submit(
        crashguard.Event("PROCESS_STATE_RUNNING", {"processname": "gateway", "pid": "7"}, "", now())
    )
    for attempt in range(1, 3):
        runtime.submit(
            crashguard.Event("PROCESS_STATE_EXITED", {"processname": "gateway", "pid": "7"}, "", now())
        )
        wait_until(lambda attempt=attempt: len(rpc.named("startProcess")) == attempt)
        assert rpc.named("startProcess")[-1] == ("gateway", False)
        runtime.submit(crashguard.Event("PROCESS_STATE_STARTING", {"processname": "gateway"}, "", now()))
    state = rundir.read_json(str(tmp_path), rundir.GUARD_STATE)
    assert state is not None and state["restarts"] == 2
    runtime.submit(
        crashguard.Event("PROCESS_STATE_EXITED", {"processname": "gateway", "pid": "8"}, "", now())
    )
    wait_until(lambda: rpc.named("shutdown"))
    assert rundir.read_exit_code(str(tmp_path)) == crashguard.EXIT_CRASH_LOOP
    state = rundir.read_json(str(tmp_path), rundir.GUARD_STATE)
    assert state is not None and state["state"] == "refused"
    assert [item["exit_code"] for item in state["exits"]] == [3, 3, 3]
    assert ledger.boots(runtime.ledger_path)[-1]["outcome"] == "refused"
    runtime.submit(None)


def test_events_of_other_programs_are_ignored(tmp_path: Path) -> None:
    rpc = FakeRPC()
    runtime = make_runtime(tmp_path, rpc)
    runtime.start()
    runtime.submit(crashguard.Event("PROCESS_STATE_EXITED", {"processname": "crashguard"}, "", time.time()))
    runtime.submit(None)
    runtime.thread.join(5)
    assert runtime.guard.budget.exits == [] and rpc.calls == []


def test_no_restart_once_the_init_is_stopping(tmp_path: Path) -> None:
    rpc = FakeRPC()
    runtime = make_runtime(tmp_path, rpc, initial=0.2)
    runtime.start()
    runtime.submit(
        crashguard.Event("PROCESS_STATE_RUNNING", {"processname": "gateway", "pid": "7"}, "", time.time())
    )
    runtime.submit(
        crashguard.Event("PROCESS_STATE_EXITED", {"processname": "gateway", "pid": "7"}, "", time.time())
    )
    wait_until(lambda: (rundir.read_json(str(tmp_path), rundir.GUARD_STATE) or {}).get("state") == "backoff")
    (tmp_path / rundir.STOPPING_MARKER).write_text("15\n")
    wait_until(lambda: (rundir.read_json(str(tmp_path), rundir.GUARD_STATE) or {}).get("state") == "stopped")
    time.sleep(0.3)
    assert rpc.named("startProcess") == []
    runtime.submit(None)


def test_a_stale_stopping_marker_is_ignored(tmp_path: Path) -> None:
    marker = tmp_path / rundir.STOPPING_MARKER
    marker.write_text("15\n")
    runtime = crashguard.Runtime(
        str(tmp_path),
        "gateway",
        policy(),
        str(tmp_path / "l.json"),
        FakeRPC,
        supervisord_started=time.time() + 60,
    )
    assert not runtime.stopping()
    runtime.supervisord_started = time.time() - 60
    assert runtime.stopping()


def same_supervisord_runtime(tmp_path: Path, rpc: FakeRPC) -> crashguard.Runtime:
    """A listener's runtime under supervisord pid 5 started at 1234.5 (one supervisord's life)."""
    return crashguard.Runtime(
        str(tmp_path),
        "gateway",
        policy(initial=60),
        str(tmp_path / "l.json"),
        lambda: rpc,
        supervisord_pid=5,
        supervisord_started=1234.5,
    )


def test_a_restarted_listener_takes_over_under_the_same_supervisord(tmp_path: Path) -> None:
    rpc = FakeRPC()
    first = same_supervisord_runtime(tmp_path, rpc)
    first.start()
    first.submit(
        crashguard.Event("PROCESS_STATE_EXITED", {"processname": "gateway", "pid": "7"}, "", time.time())
    )
    wait_until(lambda: (rundir.read_json(str(tmp_path), rundir.GUARD_STATE) or {}).get("state") == "backoff")
    first.submit(None)
    first.thread.join(5)
    second = same_supervisord_runtime(tmp_path, rpc)
    second._adopt()
    assert second.guard.state == crashguard.BACKOFF and len(second.guard.budget.exits) == 1
    assert second.timer_at is not None
    # Same pid, other supervisord (a new PID namespace at the next boot): nothing is taken over.
    third = crashguard.Runtime(
        str(tmp_path),
        "gateway",
        policy(),
        str(tmp_path / "l.json"),
        lambda: rpc,
        supervisord_pid=5,
        supervisord_started=9999.0,
    )
    third._adopt()
    assert third.guard.state is None and third.guard.budget.exits == []


def test_state_file_is_valid_json_with_the_documented_fields(tmp_path: Path) -> None:
    rpc = FakeRPC()
    runtime = make_runtime(tmp_path, rpc)
    runtime.start()
    runtime.submit(
        crashguard.Event("PROCESS_STATE_RUNNING", {"processname": "gateway", "pid": "7"}, "", time.time())
    )
    wait_until(lambda: (rundir.read_json(str(tmp_path), rundir.GUARD_STATE) or {}).get("state") == "running")
    state = json.loads((tmp_path / rundir.GUARD_STATE).read_text())
    for key in ("state", "pid", "restarts", "delay_s", "restart_at", "exits", "held_reason", "since"):
        assert key in state
    assert state["pid"] == 7
    runtime.submit(None)


def test_a_held_state_left_by_an_earlier_boot_is_not_adopted(tmp_path: Path) -> None:
    guardstate.hold_at_boot(str(tmp_path), "gateway", "old", now=1000.0)

    def runtime(started: float) -> crashguard.Runtime:
        return crashguard.Runtime(
            str(tmp_path),
            "gateway",
            policy(),
            str(tmp_path / "l.json"),
            FakeRPC,
            supervisord_pid=3,
            supervisord_started=started,
        )

    fresh = runtime(1000.5)
    fresh._adopt()
    assert fresh.guard.state == crashguard.HELD
    guardstate.hold_at_boot(str(tmp_path), "gateway", "old", now=1000.0)
    stale = runtime(5000.0)
    stale._adopt()
    assert stale.guard.state is None
