"""The crash guard's runtime keeping the gateway's contract, against a scripted supervisord: a
requested restart through a stand-in CLI, events that keep flowing while that CLI is slow, the
program's output, the stop timeout said on time, an OOM kill read from a memory cgroup."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from entrypoint.common import cgroup, ledger, rundir
from entrypoint.common.guardplan import PID, HandoffPlan
from entrypoint.crashguard.runtime import Event, Runtime
from tests.crashguard.test_handoffs import STANDIN_CLI, store
from tests.crashguard.test_runtime import named, wait_until
from tests.fakes import FakeSupervisor, fake_supervisor
from tests.supervised import guard_plan


@pytest.fixture
def rpc(tmp_path: Path) -> Iterator[FakeSupervisor]:
    """supervisord's control socket in the runtime's run dir; the program last EXITED with 0."""
    with fake_supervisor(str(tmp_path)) as fake:
        fake.info = {"statename": "EXITED", "exitstatus": 0, "start": 0, "stop": 0}
        yield fake


def event(name: str, **headers: Any) -> Event:
    return Event(name, {"processname": "gateway", **headers}, time.time())


def state(tmp_path: Path) -> dict[str, Any]:
    return rundir.read_json(str(tmp_path), rundir.GUARD_STATE) or {}


def runtime(tmp_path: Path, mode: str = "ok", timeout_s: float = 20.0, **chosen: Any) -> Runtime:
    ledger_path = str(tmp_path / "state" / "boot-ledger.json")
    ledger.begin_boot(ledger_path, time.time())
    cli = (sys.executable, STANDIN_CLI, "--store", str(tmp_path / "store.json"), "--mode", mode)
    handoff = HandoffPlan(
        capabilities=(*cli, "gateway", "restart-handoff", "capabilities", "--json"),
        consume=(*cli, "gateway", "restart-handoff", "consume", "--expected-pid", PID, "--json"),
        timeout_s=timeout_s,
        cache_path=str(tmp_path / "state" / "restart-handoff.json"),
        identity="test",
    )
    plan = guard_plan(ledger_path, handoff, **chosen)
    made = Runtime(str(tmp_path), plan, supervisord_pid=1, environ={"X_TOKEN": "s3cr3t-value"})
    made.start()
    made.submit(event("PROCESS_STATE_STARTING"))
    made.submit(event("PROCESS_STATE_RUNNING", pid=11))
    return made


def logged(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    """The fields of every line of event `name` (`log.event` puts them on the record)."""
    return [vars(record)["fields"] for record in caplog.records if vars(record).get("event") == name]


def test_a_requested_restart_starts_the_program_at_once(tmp_path: Path, rpc: FakeSupervisor) -> None:
    guard = runtime(tmp_path, initial=30, burst=1)
    store(tmp_path, 11)
    exited = time.monotonic()
    guard.submit(event("PROCESS_STATE_EXITED", pid=11))
    wait_until(lambda: named(rpc, "startProcess"), timeout=30)
    assert time.monotonic() - exited < 20  # two cold CLI calls at most, never the 30 s backoff
    wait_until(lambda: state(tmp_path).get("requested_restarts") == 1)
    assert state(tmp_path)["exits"] == [] and state(tmp_path)["restarts"] == 0
    cache = json.loads((tmp_path / "state" / "restart-handoff.json").read_text())
    assert cache["capable"] is True and cache["identity"] == "test"
    guard.submit(None)


def test_events_keep_flowing_while_the_cli_is_slow_and_an_operator_stop_wins(
    tmp_path: Path, rpc: FakeSupervisor
) -> None:
    guard = runtime(tmp_path, mode="hang", timeout_s=3.0, initial=0.1)
    guard.submit(event("PROCESS_STATE_EXITED", pid=11))
    wait_until(lambda: state(tmp_path).get("state") == "handoff")
    asked = time.monotonic()
    guard.submit(event("PROCESS_STATE_STOPPED"))  # `supervisorctl stop gateway` meanwhile
    wait_until(lambda: state(tmp_path).get("state") == "stopped")
    assert time.monotonic() - asked < 2.5  # before the CLI's timeout
    time.sleep(4)  # the CLI times out; its (lack of) answer changes nothing
    assert state(tmp_path)["state"] == "stopped" and named(rpc, "startProcess") == []
    guard.submit(None)


def test_the_programs_output_and_its_stop_timeout(
    tmp_path: Path, rpc: FakeSupervisor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    guard = runtime(tmp_path, stop=1)
    guard.output("gateway", "stdout", b"draining 1 active reply for s3cr3t-value\n")
    guard.output("gateway", "stderr", b"still busy")
    stopping = time.monotonic()
    guard.submit(event("PROCESS_STATE_STOPPING", pid=11))
    wait_until(lambda: logged(caplog, "gateway_stop_timeout"))
    assert 0.3 <= time.monotonic() - stopping < 1.0  # before supervisord's SIGKILL at 1 s
    tail = logged(caplog, "gateway_stop_timeout")[0]["output_tail"]
    assert tail == ["draining 1 active reply for <redacted>", "still busy"]
    guard.submit(None)


def test_an_oom_kill_read_from_the_memory_cgroup(
    tmp_path: Path, rpc: FakeSupervisor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    memory = tmp_path / "memory"
    memory.mkdir()
    (memory / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 2\noom_kill 2\n")
    (memory / "memory.max").write_text(f"{256 << 20}\n")
    (memory / "memory.peak").write_text(f"{250 << 20}\n")
    rpc.info = {"statename": "EXITED", "exitstatus": -1, "start": 0, "stop": 0}
    guard = runtime(tmp_path, oom_kills_at_boot=2)
    guard.memory = cgroup.MemoryCgroup(str(memory), v2=True)
    (memory / "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 3\noom_kill 3\n")
    guard.submit(event("PROCESS_STATE_EXITED", pid=11))
    wait_until(lambda: logged(caplog, "gateway_oom_killed"))
    fields = logged(caplog, "gateway_oom_killed")[0]
    assert (fields["limit_bytes"], fields["peak_bytes"], fields["oom_kills"]) == (256 << 20, 250 << 20, 3)
    wait_until(lambda: state(tmp_path).get("state") == "backoff")  # counted like any crash
    guard.submit(None)
