"""The one supervisord client: its calls reach supervisord, its faults keep their names, and no
supervisord, however broken, holds a caller past the deadline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from entrypoint.common import control
from tests.fakes import black_hole, fake_supervisor, trickle


def test_calls_reach_supervisord_over_the_run_dirs_socket(tmp_path: Path) -> None:
    with fake_supervisor(str(tmp_path)) as fake:
        supervisor = control.Supervisor(str(tmp_path), 2.0)
        assert supervisor.process_info("gateway")["pid"] == 4242
        supervisor.start_process("gateway")
        supervisor.shutdown()
    assert fake.calls == [
        ("getProcessInfo", ("gateway",)),
        ("startProcess", ("gateway", False)),
        ("shutdown", ()),
    ]


def test_a_fault_is_raised_as_is_and_named_as_supervisord_names_it(tmp_path: Path) -> None:
    with fake_supervisor(str(tmp_path)), pytest.raises(control.Fault) as raised:
        control.Supervisor(str(tmp_path), 2.0).process_info("other")
    assert control.fault_name(raised.value) == "BAD_NAME"


def test_no_socket_means_supervisord_is_not_running(tmp_path: Path) -> None:
    with pytest.raises(control.SupervisorUnavailable, match="supervisord not running"):
        control.Supervisor(str(tmp_path), 2.0).shutdown()


@pytest.mark.parametrize("server", ["silent", "trickling"])
def test_a_supervisord_that_does_not_answer_in_time_costs_one_deadline(tmp_path: Path, server: str) -> None:
    """Silent: connects, never answers. Trickling: answers a byte at a time, each one well within
    any per-receive timeout, so only a deadline on the whole call cuts it off."""
    path = str(tmp_path / "supervisor.sock")
    supervisor = control.Supervisor(str(tmp_path), 0.3)
    with black_hole(path) if server == "silent" else trickle(path):
        started = time.monotonic()
        with pytest.raises(control.SupervisorUnavailable, match="not answering"):
            supervisor.process_info("gateway")
        elapsed = time.monotonic() - started
    assert 0.25 <= elapsed < 1.0, elapsed


def test_each_call_gets_its_own_deadline(tmp_path: Path) -> None:
    with fake_supervisor(str(tmp_path)):
        supervisor = control.Supervisor(str(tmp_path), 0.3)
        for _ in range(3):
            assert supervisor.process_info("gateway")["statename"] == "RUNNING"
            time.sleep(0.2)
