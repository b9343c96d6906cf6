"""What the crash guard counts for the metrics, as its state file keeps it: restarts by cause, OOM
kills, the last exit code, the time spent in backoff, and a hold's cause from a fixed set."""

from __future__ import annotations

from entrypoint.common.exits import Exit
from entrypoint.common.guardstate import HoldCause, RestartCause, Snapshot, State
from entrypoint.crashguard.facts import Answer, Handoff, Memory
from entrypoint.crashguard.policy import Guard
from tests.crashguard.test_guard import crash, start_due
from tests.supervised import policy


def counted(guard: Guard, now: float) -> dict[RestartCause, int]:
    """The restarts by cause, as they come back from the state file."""
    snapshot = Snapshot.from_dict(guard.snapshot(now).to_dict(now))
    assert snapshot is not None
    return snapshot.restarts_by_cause()


def test_each_restart_is_counted_under_its_cause_and_the_first_start_under_none() -> None:
    guard = Guard("gateway", policy(initial=1), 0.0, handoffs=True, capable=True)
    crash(guard, 1.0)  # autostart (not a restart), then a crash
    assert start_due(guard, 2.0)
    guard.on_starting(2.0)
    guard.on_running(2.0, pid=101)
    guard.on_exited(3.0, 0, stopping=False, pid=101)  # a clean exit: asked whether it was requested
    guard.on_handoff(3.5, Handoff(101, Answer.ACCEPTED, "accepted", reason="SIGUSR2"), stopping=False)
    guard.on_starting(3.6)
    guard.on_running(3.6, pid=102)
    guard.on_stopping(4.0, stopping=False)  # `supervisorctl restart`
    guard.on_stopped(4.1, stopping=False)
    guard.on_starting(4.2)
    assert counted(guard, 5.0) == {RestartCause.CRASH: 1, RestartCause.REQUESTED: 1, RestartCause.OPERATOR: 1}


def test_time_in_backoff_adds_each_stay_and_the_current_one() -> None:
    guard = Guard("gateway", policy(initial=1), 0.0)
    crash(guard, 10.0)  # BACKOFF from 10 s, its restart due at 11 s
    assert guard.snapshot(10.25).time_in_backoff(10.25) == 0.25
    assert start_due(guard, 11.0)
    guard.on_starting(11.0)
    crash(guard, 20.0)  # 2 s this time
    assert guard.snapshot(21.5).time_in_backoff(21.5) == 1.0 + 1.5
    assert start_due(guard, 22.0)
    guard.on_starting(22.0)
    assert guard.snapshot(30.0).time_in_backoff(30.0) == 3.0


def test_an_oom_kill_is_counted_and_the_last_exit_code_kept() -> None:
    guard = Guard("gateway", policy(), 0.0, oom_kills=2)
    assert guard.snapshot(0.0).last_exit_code is None
    guard.on_starting(1.0)
    guard.on_running(1.0, pid=5)
    guard.on_exited(2.0, -1, stopping=False, pid=5, memory=Memory(3, 256 << 20, 255 << 20))
    snapshot = guard.snapshot(2.0)
    assert (snapshot.oom_kills, snapshot.last_exit_code) == (1, -1)
    assert start_due(guard, 3.0)
    guard.on_starting(3.0)
    guard.on_running(3.0, pid=6)
    guard.on_exited(4.0, 2, stopping=False, pid=6, memory=Memory(3, 256 << 20, 100 << 20))
    assert (guard.snapshot(4.0).oom_kills, guard.snapshot(4.0).last_exit_code) == (1, 2)


def test_a_hold_carries_its_cause_until_an_operator_starts_the_program() -> None:
    looping = Guard("gateway", policy(burst=2), 0.0)
    crash(looping, 1.0)
    crash(looping, 3.0)
    assert (looping.state, looping.snapshot(4.0).held_cause) == (State.HELD, HoldCause.CRASH_LOOP)
    looping.on_starting(5.0)
    assert looping.snapshot(5.0).held_cause is None
    refusing = Guard("gateway", policy(), 0.0)
    crash(refusing, 1.0, code=Exit.CONFIG)
    assert refusing.snapshot(2.0).held_cause == HoldCause.CONFIG_REFUSED
    exiting = Guard("gateway", policy(burst=1, action="exit"), 0.0)
    crash(exiting, 1.0)
    assert (exiting.state, exiting.snapshot(2.0).held_cause) == (State.REFUSED, HoldCause.CRASH_LOOP)


def test_the_counts_survive_the_state_file_and_a_cause_it_does_not_know_is_none() -> None:
    snapshot = Snapshot(
        "gateway",
        State.HELD,
        100.0,
        operator_restarts=2,
        oom_kills=1,
        last_exit_code=137,
        backoff_s=12.5,
        held_reason="crash loop",
        held_cause=HoldCause.CRASH_LOOP,
    )
    data = snapshot.to_dict(101.0)
    assert Snapshot.from_dict(data) == snapshot
    assert Snapshot.from_dict({**data, "held_cause": "a cause of a later version"}).held_cause is None
