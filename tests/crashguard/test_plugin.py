"""The crash guard plugged into supervisord: the factory supervisord calls, and its events as the
worker gets them, from supervisor's own event classes on its own bus."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from supervisor import events
from supervisor.states import ProcessStates

from entrypoint.common import guardplan, ledger, rundir
from entrypoint.crashguard import plugin
from entrypoint.crashguard.runtime import Event
from tests.crashguard.test_runtime import wait_until
from tests.fakes import FakeSupervisor, fake_supervisor
from tests.supervised import guard_plan


@pytest.fixture
def bus() -> Iterator[None]:
    """supervisor's event bus and the plugin's guard, fresh for each test (both are per process)."""
    events.clear()
    yield
    plugin.finish()
    events.clear()


def workers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "crashguard-worker"]


@pytest.fixture
def orders(tmp_path: Path) -> Iterator[FakeSupervisor]:
    """The run dir as the init leaves it for supervisord: the guard's orders, the control socket."""
    ledger_path = str(tmp_path / "state" / "boot-ledger.json")
    ledger.begin_boot(ledger_path, time.time())
    guardplan.write(str(tmp_path), guard_plan(ledger_path))
    with fake_supervisor(str(tmp_path)) as fake:
        yield fake


def supervisord() -> Any:
    """What the factory reads of supervisord: its options, with the programs it started by pid."""
    return SimpleNamespace(options=SimpleNamespace(pidhistory={}, waitpid=None))


def gateway(pid: int = 7) -> Any:
    """What supervisor's events read of a process: its name, its group's, its pid, its tries."""
    config = SimpleNamespace(name="gateway")
    return SimpleNamespace(config=config, group=SimpleNamespace(config=config), pid=pid, backoff=0)


def state(tmp_path: Path) -> dict[str, Any]:
    return rundir.read_json(str(tmp_path), rundir.GUARD_STATE) or {}


def test_supervisord_s_events_reach_the_guard_as_a_listener_would_read_them(
    tmp_path: Path, bus: None, orders: FakeSupervisor
) -> None:
    plugin.make_rpcinterface(supervisord(), run_dir=str(tmp_path))
    process = gateway()
    events.notify(events.ProcessStateStartingEvent(process, ProcessStates.STOPPED))
    events.notify(events.ProcessLogStderrEvent(process, 7, "érreur fatale ✗\nzweite\n".encode()))
    events.notify(events.ProcessStateRunningEvent(process, ProcessStates.STARTING))
    events.notify(events.Tick5Event(1700000000, None))
    wait_until(lambda: state(tmp_path).get("state") == "running")
    runtime = plugin.current()
    assert runtime is not None and state(tmp_path)["pid"] == 7
    assert list(runtime.guard.output.stderr) == ["érreur fatale ✗", "zweite"]
    assert ledger.boots(runtime.ledger_path)[-1]["outcome"] == "ready"
    # The guard writes which supervisord it runs in: this process.
    assert state(tmp_path)["supervisord_pid"] == runtime.supervisord_pid


def test_each_event_is_the_one_the_listener_protocol_gave() -> None:
    process = gateway(pid=12)
    exited = events.ProcessStateExitedEvent(process, ProcessStates.RUNNING, expected=False)
    headers = {"processname": "gateway", "groupname": "gateway", "from_state": "RUNNING"}
    assert plugin.event_of("PROCESS_STATE_EXITED", exited.payload(), 5.0) == Event(
        "PROCESS_STATE_EXITED", {**headers, "expected": "0", "pid": "12"}, 5.0
    )


def test_the_program_s_bytes_become_its_lines_whatever_they_are(
    tmp_path: Path, bus: None, orders: FakeSupervisor
) -> None:
    """supervisord reads the program's output in chunks: a character split between two of them
    stays whole, bytes that are not UTF-8 become U+FFFD, controls and escape sequences go."""
    plugin.make_rpcinterface(supervisord(), run_dir=str(tmp_path))
    process = gateway()
    arrow = "→".encode()
    for chunk in (b"fatal " + arrow[:1], arrow[1:] + b" \xff\xfe end\n", b"\x1b[31mred\x1b[0m\x00 ok\n"):
        events.notify(events.ProcessLogStderrEvent(process, 7, chunk))
    runtime = plugin.current()
    assert runtime is not None
    wait_until(lambda: len(runtime.guard.output.stderr) == 2)
    assert list(runtime.guard.output.stderr) == ["fatal → \ufffd\ufffd end", "red ok"]


def test_a_reload_keeps_the_guard_and_subscribes_it_once_again(
    tmp_path: Path, bus: None, orders: FakeSupervisor
) -> None:
    plugin.make_rpcinterface(supervisord(), run_dir=str(tmp_path))
    first = plugin.current()
    events.clear()  # what supervisord does at a reload (SIGHUP), before it calls the factory again
    plugin.make_rpcinterface(supervisord(), run_dir=str(tmp_path))
    plugin.make_rpcinterface(supervisord(), run_dir=str(tmp_path))  # once per HTTP server
    assert plugin.current() is first and len(workers()) == 1
    assert sorted(kind.__name__ for kind, _ in events.callbacks) == sorted(
        kind.__name__ for kind in plugin.SUBSCRIBED
    )


def test_without_orders_supervisord_does_not_start(
    tmp_path: Path, bus: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    with pytest.raises(ValueError, match="no crash guard plan"):
        plugin.make_rpcinterface(supervisord(), run_dir=str(tmp_path))
    assert [vars(record).get("event") for record in caplog.records] == ["crash_guard_without_plan"]
    assert events.callbacks == [] and plugin.current() is None and workers() == []


def test_finish_without_a_guard_does_nothing(
    tmp_path: Path, bus: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A supervisord run by hand with another config loads no guard: its end says and writes nothing."""
    caplog.set_level(logging.DEBUG)
    threads = set(threading.enumerate())
    plugin.finish()
    assert caplog.records == [] and set(threading.enumerate()) == threads and plugin.current() is None


def test_finish_ends_the_guard_and_its_worker(tmp_path: Path, bus: None, orders: FakeSupervisor) -> None:
    plugin.make_rpcinterface(supervisord(), run_dir=str(tmp_path))
    assert len(workers()) == 1
    plugin.finish()
    assert workers() == [] and plugin.current() is None


def test_supervisord_reaps_its_programs_and_leaves_the_guard_s_children_to_the_guard(
    tmp_path: Path, bus: None, orders: FakeSupervisor
) -> None:
    """The guard's helper waits for the program's CLI itself: its exit code is the answer."""
    running = supervisord()
    plugin.make_rpcinterface(running, run_dir=str(tmp_path))
    program = subprocess.Popen(["sh", "-c", "exit 3"])
    cli = subprocess.Popen(["sh", "-c", "exit 1"])
    running.options.pidhistory[program.pid] = "gateway"
    wait_until(lambda: running.options.waitpid() == (program.pid, 3 << 8))
    assert running.options.waitpid() == (None, None)
    assert cli.wait(timeout=10) == 1
