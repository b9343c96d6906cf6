"""The crash guard's worker against a scripted supervisord on the run dir's control socket."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.common import guardstate, ledger, rundir
from entrypoint.common.exits import Exit
from entrypoint.common.guardstate import HoldCause
from entrypoint.common.plans import Hold
from entrypoint.crashguard.runtime import Event, Runtime
from tests.fakes import FakeSupervisor, fake_supervisor
from tests.supervised import guard_plan


@pytest.fixture
def rpc(tmp_path: Path) -> Iterator[FakeSupervisor]:
    """supervisord's control socket in the runtime's run dir; the program last EXITED with 3."""
    with fake_supervisor(str(tmp_path)) as fake:
        fake.info = {"statename": "EXITED", "exitstatus": 3, "start": 0, "stop": 0}
        yield fake


def named(rpc: FakeSupervisor, call: str) -> list[tuple[Any, ...]]:
    return [args for name, args in rpc.calls if name == call]


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError("condition never met")


def make_runtime(tmp_path: Path, **chosen: Any) -> Runtime:
    ledger_path = str(tmp_path / "state" / "boot-ledger.json")
    ledger.begin_boot(ledger_path, time.time())
    return Runtime(str(tmp_path), guard_plan(ledger_path, **chosen), supervisord_pid=1)


def test_runtime_restarts_after_the_backoff_then_refuses(tmp_path: Path, rpc: FakeSupervisor) -> None:
    runtime = make_runtime(tmp_path, initial=0.05, burst=3, action="exit")
    runtime.start()
    now = time.time
    runtime.submit(Event("PROCESS_STATE_STARTING", {"processname": "gateway"}, now()))
    runtime.submit(Event("PROCESS_STATE_RUNNING", {"processname": "gateway", "pid": "7"}, now()))
    for attempt in range(1, 3):
        runtime.submit(Event("PROCESS_STATE_EXITED", {"processname": "gateway", "pid": "7"}, now()))
        wait_until(lambda attempt=attempt: len(named(rpc, "startProcess")) == attempt)
        assert named(rpc, "startProcess")[-1] == ("gateway", False)
        runtime.submit(Event("PROCESS_STATE_STARTING", {"processname": "gateway"}, now()))
    state = rundir.read_json(str(tmp_path), rundir.GUARD_STATE)
    assert state is not None and state["restarts"] == 2
    runtime.submit(Event("PROCESS_STATE_EXITED", {"processname": "gateway", "pid": "8"}, now()))
    wait_until(lambda: named(rpc, "shutdown"))
    assert rundir.read_exit_code(str(tmp_path)) == Exit.CRASH_LOOP
    state = rundir.read_json(str(tmp_path), rundir.GUARD_STATE)
    assert state is not None and state["state"] == "refused"
    assert [item["exit_code"] for item in state["exits"]] == [3, 3, 3]
    assert ledger.boots(runtime.ledger_path)[-1]["outcome"] == "refused"
    runtime.submit(None)


def test_events_of_other_programs_are_ignored(tmp_path: Path, rpc: FakeSupervisor) -> None:
    runtime = make_runtime(tmp_path)
    runtime.start()
    runtime.submit(Event("PROCESS_STATE_EXITED", {"processname": "crashguard"}, time.time()))
    runtime.submit(None)
    runtime.thread.join(5)
    assert runtime.guard.budget.exits == [] and rpc.calls == []


def test_no_restart_once_the_init_is_stopping(tmp_path: Path, rpc: FakeSupervisor) -> None:
    runtime = make_runtime(tmp_path, initial=0.2)
    runtime.start()
    runtime.submit(Event("PROCESS_STATE_RUNNING", {"processname": "gateway", "pid": "7"}, time.time()))
    runtime.submit(Event("PROCESS_STATE_EXITED", {"processname": "gateway", "pid": "7"}, time.time()))
    wait_until(lambda: (rundir.read_json(str(tmp_path), rundir.GUARD_STATE) or {}).get("state") == "backoff")
    (tmp_path / rundir.STOPPING_MARKER).write_text("15\n")
    wait_until(lambda: (rundir.read_json(str(tmp_path), rundir.GUARD_STATE) or {}).get("state") == "stopped")
    time.sleep(0.3)
    assert named(rpc, "startProcess") == []
    runtime.submit(None)


def test_a_stale_stopping_marker_is_ignored(tmp_path: Path) -> None:
    marker = tmp_path / rundir.STOPPING_MARKER
    marker.write_text("15\n")
    runtime = Runtime(
        str(tmp_path),
        guard_plan(str(tmp_path / "l.json")),
        supervisord_started=time.time() + 60,
    )
    assert not runtime.stopping()
    runtime.supervisord_started = time.time() - 60
    assert runtime.stopping()


def test_state_file_is_valid_json_with_the_documented_fields(tmp_path: Path, rpc: FakeSupervisor) -> None:
    runtime = make_runtime(tmp_path)
    runtime.start()
    runtime.submit(Event("PROCESS_STATE_RUNNING", {"processname": "gateway", "pid": "7"}, time.time()))
    wait_until(lambda: (rundir.read_json(str(tmp_path), rundir.GUARD_STATE) or {}).get("state") == "running")
    state = json.loads((tmp_path / rundir.GUARD_STATE).read_text())
    for key in ("state", "pid", "restarts", "delay_s", "restart_at", "exits", "held_reason", "since"):
        assert key in state
    assert state["pid"] == 7
    runtime.submit(None)


def test_a_held_state_left_by_an_earlier_boot_is_not_adopted(tmp_path: Path) -> None:
    guardstate.hold_at_boot(
        str(tmp_path), "gateway", Hold("boot ledger: old", HoldCause.BOOT_LOOP), now=1000.0
    )

    def runtime(started: float) -> Runtime:
        return Runtime(
            str(tmp_path),
            guard_plan(str(tmp_path / "l.json")),
            supervisord_pid=3,
            supervisord_started=started,
        )

    fresh = runtime(1000.5)
    fresh.start()
    fresh.finish(5)
    assert fresh.guard.state == guardstate.State.HELD
    guardstate.hold_at_boot(
        str(tmp_path), "gateway", Hold("boot ledger: old", HoldCause.BOOT_LOOP), now=1000.0
    )
    stale = runtime(5000.0)
    stale.start()
    stale.finish(5)
    assert stale.guard.state is None


def test_finish_handles_every_queued_event_before_it_returns(tmp_path: Path, rpc: FakeSupervisor) -> None:
    """supervisord has stopped: what its last events lead to is written before its process ends."""
    runtime = make_runtime(tmp_path)
    runtime.start()
    runtime.submit(Event("PROCESS_STATE_RUNNING", {"processname": "gateway", "pid": "7"}, time.time()))
    runtime.submit(Event("PROCESS_STATE_STOPPED", {"processname": "gateway", "pid": "7"}, time.time()))
    runtime.finish(5)
    assert not runtime.thread.is_alive()
    assert (rundir.read_json(str(tmp_path), rundir.GUARD_STATE) or {}).get("state") == "stopped"
