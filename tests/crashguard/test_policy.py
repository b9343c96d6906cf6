"""The restart policy's arithmetic: backoff steps and crash-loop refusal, with time passed in."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from entrypoint.common.exits import Exit
from entrypoint.common.guardstate import ExitRecord
from entrypoint.crashguard.budget import RestartBudget, backoff_delay
from tests.supervised import policy

positive = st.floats(min_value=0.001, max_value=1e6, allow_nan=False, allow_infinity=False)


def test_exit_code_is_documented_and_distinct() -> None:
    assert Exit.CRASH_LOOP == 75
    assert Exit.CRASH_LOOP not in (0, 1, 78, 126, 127) and Exit.CRASH_LOOP < 128


def test_default_backoff_steps_double_and_cap() -> None:
    default = policy()
    assert [backoff_delay(default, attempt) for attempt in range(9)] == [1, 2, 4, 8, 16, 32, 60, 60, 60]


@given(initial=positive, maximum=positive, attempt=st.integers(min_value=0, max_value=10_000))
def test_delay_is_initial_doubled_and_never_above_the_cap(
    initial: float, maximum: float, attempt: int
) -> None:
    chosen = policy(initial=initial, maximum=maximum)
    delay = backoff_delay(chosen, attempt)
    assert delay <= maximum
    assert delay == min(initial * 2.0 ** min(attempt, 64), maximum)
    assert backoff_delay(chosen, attempt + 1) >= delay


def test_instant_exits_back_off_doubling_then_refuse_at_exactly_the_burst() -> None:
    budget = RestartBudget(policy(initial=1, burst=5, window=300))
    now = 1000.0
    verdicts = []
    for _ in range(5):
        verdict = budget.on_exit(ExitRecord(now, 1, 0.0))
        verdicts.append(verdict)
        now = (verdict.restart_at or now) + 0.01
    assert [v.refuse for v in verdicts] == [False, False, False, False, True]
    assert [v.delay_s for v in verdicts[:4]] == [1, 2, 4, 8]
    assert len(verdicts[-1].counted) == 5
    assert [record.exit_code for record in verdicts[-1].counted] == [1] * 5


def test_exits_outside_the_window_do_not_count() -> None:
    budget = RestartBudget(policy(initial=1, burst=3, window=10, reset=1e6))
    assert not budget.on_exit(ExitRecord(0.0, 1)).refuse
    assert not budget.on_exit(ExitRecord(5.0, 1)).refuse
    # The first exit has left the window: only two count.
    verdict = budget.on_exit(ExitRecord(10.5, 1))
    assert not verdict.refuse
    assert [record.time for record in verdict.counted] == [5.0, 10.5]
    assert budget.on_exit(ExitRecord(12.0, 1)).refuse


def test_long_runs_still_count_toward_the_burst_but_reset_the_backoff() -> None:
    budget = RestartBudget(policy(initial=1, burst=3, window=3600, reset=60))
    first = budget.on_exit(ExitRecord(100.0, 1, uptime_s=5))
    second = budget.on_exit(ExitRecord(200.0, 1, uptime_s=90))  # stayed up past the reset
    assert (first.delay_s, second.delay_s) == (1, 1)
    assert budget.on_exit(ExitRecord(300.0, 1, uptime_s=90)).refuse


def test_staying_up_resets_the_backoff_while_running() -> None:
    budget = RestartBudget(policy(initial=1, reset=60))
    budget.on_exit(ExitRecord(0.0, 1))
    budget.on_exit(ExitRecord(2.0, 1))
    assert budget.attempt == 2
    assert not budget.on_up(running_since=10.0, now=69.0)
    assert budget.on_up(running_since=10.0, now=70.0)
    assert budget.attempt == 0
    assert budget.on_exit(ExitRecord(71.0, 1)).delay_s == 1


def test_rearm_forgets_everything() -> None:
    budget = RestartBudget(policy(burst=2))
    budget.on_exit(ExitRecord(0.0, 1))
    budget.rearm()
    assert budget.exits == [] and budget.attempt == 0
    assert not budget.on_exit(ExitRecord(1.0, 1)).refuse


@settings(max_examples=300)
@given(
    burst=st.integers(min_value=1, max_value=10),
    window=st.floats(min_value=1, max_value=1000),
    gaps=st.lists(st.floats(min_value=0, max_value=2000), min_size=1, max_size=40),
)
def test_refusal_happens_exactly_when_burst_exits_fit_in_the_window(
    burst: int, window: float, gaps: list[float]
) -> None:
    budget = RestartBudget(policy(burst=burst, window=window, initial=0.5, maximum=30))
    times: list[float] = []
    now = 0.0
    for gap in gaps:
        now += gap
        times.append(now)
        verdict = budget.on_exit(ExitRecord(now, 1))
        in_window = [t for t in times if now - t <= window]
        assert verdict.refuse == (len(in_window) >= burst)
        assert [record.time for record in verdict.counted] == in_window
        if verdict.refuse:
            break
        assert verdict.restart_at == now + verdict.delay_s
        assert 0 < verdict.delay_s <= 30


@given(exits=st.integers(min_value=1, max_value=30))
def test_delays_form_a_capped_doubling_sequence(exits: int) -> None:
    budget = RestartBudget(policy(initial=0.25, maximum=8, burst=1000, window=1e6, reset=1e9))
    delays = [budget.on_exit(ExitRecord(float(i), 1)).delay_s for i in range(exits)]
    for before, after in itertools.pairwise(delays):
        assert after == min(before * 2, 8)
    assert delays[0] == 0.25
