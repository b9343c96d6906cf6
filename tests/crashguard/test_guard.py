"""The crash guard's state machine, driven by supervisord's events with explicit times."""

from __future__ import annotations

from typing import Any

from entrypoint.common.exits import Exit
from entrypoint.common.guardstate import HoldCause, Snapshot, State
from entrypoint.common.ledger import Outcome
from entrypoint.crashguard.effects import Cancel, ExitAction, MarkLedger, Schedule, Start
from entrypoint.crashguard.policy import Guard
from tests.crashguard.logged import events, line
from tests.supervised import policy


def start_due(guard: Guard, now: float) -> bool:
    """The guard's timer fired: True when it asked supervisord to start the program."""
    return Start() in guard.on_timer(now, stopping=False)


def crash(guard: Guard, now: float, code: int = 1, run_s: float = 0.0) -> list[Any]:
    """One start (autostart or the guard's own) and an exit `run_s` later."""
    if guard.state == State.BACKOFF:
        assert start_due(guard, now)
    effects = guard.on_starting(now)
    effects += guard.on_running(now, pid=100)
    effects += guard.on_exited(now + run_s, code, stopping=False, pid=100)
    return effects


def test_autostart_then_running_marks_the_boot_ready_once() -> None:
    guard = Guard("gateway", policy(), 0.0)
    effects = guard.on_starting(1.0)
    assert line(effects, "gateway_starting").fields["requested_by"] == "supervisord"
    effects = guard.on_running(1.1, pid=42)
    assert line(effects, "gateway_running").fields["pid"] == 42
    assert MarkLedger(Outcome.READY) in effects
    guard.on_stopping(5.0, stopping=False)
    guard.on_stopped(5.1, stopping=False)
    assert MarkLedger(Outcome.READY) not in guard.on_running(6.0, pid=43)  # already marked this boot


def test_instant_crashes_back_off_doubling_then_refuse_and_hold() -> None:
    guard = Guard("gateway", policy(initial=1, burst=5, window=300, action="hold"), 0.0)
    now = 10.0
    delays = []
    for _ in range(4):
        effects = crash(guard, now)
        backoff = line(effects, "gateway_backoff")
        delays.append(backoff.fields["delay_s"])
        schedule = [effect for effect in effects if isinstance(effect, Schedule)]
        assert schedule == [Schedule(now + backoff.fields["delay_s"])]
        assert guard.state == State.BACKOFF
        now = schedule[0].at
    assert delays == [1, 2, 4, 8]
    guard.on_output("stderr", "boom: cannot bind\nsecond line\npartial")
    effects = crash(guard, now, code=3)
    refused = line(effects, "crash_loop_refused")
    assert refused.level == "error"
    assert refused.fields["exit_codes"] == [1, 1, 1, 1, 3]
    assert len(refused.fields["exits"]) == 5
    assert refused.fields["stderr_tail"] == ["boom: cannot bind", "second line", "partial"]
    assert MarkLedger(Outcome.REFUSED) in effects
    assert not any(isinstance(effect, ExitAction) for effect in effects)
    # The only timer is the one attempt after the cool-down (15 minutes by default).
    assert [effect for effect in effects if isinstance(effect, Schedule)] == [Schedule(now + 900)]
    assert line(effects, "gateway_held").fields["reason"].startswith("crash loop")
    assert guard.state == State.HELD
    assert not start_due(guard, now + 100)  # the cool-down's attempt is due only after 900 s


def test_stderr_tail_keeps_the_last_twenty_lines() -> None:
    guard = Guard("gateway", policy(burst=1), 0.0)
    guard.on_output("stderr", "".join(f"line {n}\n" for n in range(1, 31)))
    effects = crash(guard, 1.0)
    tail = line(effects, "crash_loop_refused").fields["stderr_tail"]
    assert tail == [f"line {n}" for n in range(11, 31)]


def test_exit_action_asks_for_the_documented_code() -> None:
    guard = Guard("gateway", policy(burst=2, action="exit"), 0.0)
    crash(guard, 1.0)
    effects = crash(guard, 3.0)
    assert ExitAction(Exit.CRASH_LOOP) in effects
    assert guard.state == State.REFUSED
    assert "gateway_held" not in events(effects)


def test_operator_stop_and_restart_never_count() -> None:
    guard = Guard("gateway", policy(burst=2), 0.0)
    guard.on_starting(0.0)
    guard.on_running(0.0, pid=1)
    for moment in range(1, 20):
        effects = guard.on_stopping(float(moment), stopping=False)
        assert line(effects, "gateway_stopping").fields["requested_by"] == "operator"
        effects = guard.on_stopped(moment + 0.1, stopping=False)
        assert line(effects, "gateway_stopped").fields["requested_by"] == "operator"
        assert guard.state == State.STOPPED
        effects = guard.on_starting(moment + 0.2)
        assert line(effects, "gateway_starting").fields["requested_by"] == "operator"
        guard.on_running(moment + 0.2, pid=moment)
    assert guard.budget.exits == []


def test_exit_while_the_init_is_stopping_is_expected_and_not_restarted() -> None:
    guard = Guard("gateway", policy(burst=1), 0.0)
    guard.on_starting(0.0)
    guard.on_running(0.0, pid=7)
    effects = guard.on_exited(5.0, 0, stopping=True, pid=7)
    assert line(effects, "gateway_exited").fields["expected"] is True
    assert "crash_loop_refused" not in events(effects)
    assert not any(isinstance(effect, Schedule) for effect in effects)
    assert guard.state == State.STOPPED


def test_a_pending_restart_is_dropped_when_the_init_starts_stopping() -> None:
    guard = Guard("gateway", policy(), 0.0)
    crash(guard, 1.0)
    effects = guard.on_timer(2.0, stopping=True)
    assert Start() not in effects
    assert line(effects, "gateway_stopped").fields["requested_by"] == "init"
    assert guard.state == State.STOPPED


def test_an_operator_start_rearms_a_held_guard() -> None:
    guard = Guard("gateway", policy(burst=2), 0.0)
    crash(guard, 1.0)
    crash(guard, 3.0)
    assert guard.state == State.HELD
    effects = guard.on_starting(50.0)  # not requested by the guard: `supervisorctl start`
    assert Cancel() in effects
    rearmed = line(effects, "crash_guard_rearmed")
    assert rearmed.fields["previous_state"] == "held"
    assert line(effects, "gateway_starting").fields["requested_by"] == "operator"
    assert guard.budget.exits == [] and guard.held_reason is None
    assert MarkLedger(Outcome.READY) in guard.on_running(50.0, pid=9)
    # The policy is armed again: one crash is a backoff, not a refusal.
    assert "gateway_backoff" in events(guard.on_exited(51.0, 1, stopping=False))


def test_an_operator_start_during_backoff_cancels_the_pending_restart() -> None:
    guard = Guard("gateway", policy(initial=30), 0.0)
    crash(guard, 1.0)
    effects = guard.on_starting(2.0)
    assert Cancel() in effects and guard.state == State.STARTING
    assert guard.on_timer(31.0, stopping=False) == []


def test_the_guards_own_restart_is_labelled_and_counted() -> None:
    guard = Guard("gateway", policy(), 0.0)
    crash(guard, 1.0)
    assert start_due(guard, 2.0) and guard.restarts == 1
    assert line(guard.on_starting(2.0), "gateway_starting").fields["requested_by"] == "crash_guard"


def test_a_broken_command_counts_as_an_exit() -> None:
    guard = Guard("gateway", policy(burst=2), 0.0)
    crash(guard, 1.0)
    assert start_due(guard, 2.0)
    effects = guard.on_start_failed(2.0, "NO_FILE", "no such file", stopping=False)
    assert line(effects, "gateway_exited").fields["spawn_error"].startswith("NO_FILE")
    assert "crash_loop_refused" in events(effects)
    # SPAWN_ERROR is reported by supervisord's own BACKOFF event: not counted twice.
    other = Guard("gateway", policy(burst=2), 0.0)
    assert other.on_start_failed(1.0, "SPAWN_ERROR", "x", stopping=False)[0].event == "gateway_start_failed"


def test_uptime_is_measured_from_running() -> None:
    guard = Guard("gateway", policy(), 0.0)
    guard.on_starting(10.0)
    guard.on_running(10.0, pid=1)
    assert line(guard.on_exited(13.5, 1, stopping=False), "gateway_exited").fields["uptime_s"] == 3.5


def test_tick_earns_the_backoff_reset() -> None:
    guard = Guard("gateway", policy(initial=1, reset=60), 0.0)
    crash(guard, 1.0)
    crash(guard, 3.0)
    start_due(guard, 10.0)
    guard.on_starting(10.0)
    guard.on_running(10.0, pid=5)
    assert events(guard.on_tick(30.0, None, stopping=False)) == []
    assert events(guard.on_tick(70.0, None, stopping=False)) == ["gateway_backoff_reset"]
    assert line(guard.on_exited(80.0, 1, stopping=False), "gateway_backoff").fields["delay_s"] == 1


def test_tick_reconciles_a_missed_exit_only_when_seen_twice() -> None:
    guard = Guard("gateway", policy(), 0.0)
    guard.on_starting(0.0)
    guard.on_running(0.0, pid=5)
    info = {"statename": "EXITED", "exitstatus": 2, "stop": 4, "pid": 0}
    assert events(guard.on_tick(5.0, info, stopping=False)) == []
    effects = guard.on_tick(10.0, info, stopping=False)
    assert line(effects, "gateway_exited").fields["exit_code"] == 2
    assert guard.state == State.BACKOFF
    # Agreeing again: nothing more.
    assert events(guard.on_tick(15.0, info, stopping=False)) == []


def test_tick_does_not_double_count_an_exit_whose_event_arrives() -> None:
    guard = Guard("gateway", policy(), 0.0)
    guard.on_starting(0.0)
    guard.on_running(0.0, pid=5)
    info = {"statename": "EXITED", "exitstatus": 2, "stop": 4, "pid": 0}
    guard.on_tick(5.0, info, stopping=False)
    guard.on_exited(5.1, 2, stopping=False)  # the event, just behind the tick
    assert events(guard.on_tick(10.0, info, stopping=False)) == []
    assert len(guard.budget.exits) == 1


def test_the_snapshot_carries_the_history_through_the_state_file_format() -> None:
    guard = Guard("gateway", policy(initial=2), 0.0)
    crash(guard, 1.0)
    snapshot = guard.snapshot(1.5)
    assert snapshot.state == State.BACKOFF and snapshot.delay_s == 2 and snapshot.restart_at == 3.0
    assert [record.exit_code for record in snapshot.exits] == [1]
    # Through the file's format, as health, status and the sd_notify loop read it.
    assert Snapshot.from_dict(snapshot.to_dict(1.5)) == snapshot


def test_hold_adopted_from_the_boot_ledger() -> None:
    guard = Guard("gateway", policy(), 0.0)
    effects = guard.hold("boot ledger: 5 failed boots", HoldCause.BOOT_LOOP, 1.0)
    held = line(effects, "gateway_held")
    assert "supervisorctl start gateway" in held.fields["how_to_leave"]
    assert guard.snapshot(1.0).state == State.HELD


def test_uptime_counts_from_the_real_start_when_the_event_came_late() -> None:
    guard = Guard("gateway", policy(), 0.0)
    guard.on_running(12.0, pid=1, started_at=10.0)
    assert line(guard.on_exited(13.0, 1, stopping=False), "gateway_exited").fields["uptime_s"] == 3.0
    guard.on_running(20.0, pid=2, started_at=25.0)  # a start time in the future is not believed
    assert guard.running_since == 20.0
