"""Exits that say more than their code, with explicit times: a configuration the program rejects
(held at once), a refusal that passes by itself (waited out, not counted), an OOM kill (named), a
hold for a crash loop (tried once more after a cool-down), a stop timeout (said before the kill);
and the program's last lines, secrets taken out."""

from __future__ import annotations

from typing import Any

from entrypoint.common.exits import Exit
from entrypoint.common.guardplan import LeaseRule
from entrypoint.common.guardstate import HoldCause, State
from entrypoint.common.ledger import Outcome
from entrypoint.crashguard.effects import Cancel, ExitAction, MarkLedger, Schedule, Start
from entrypoint.crashguard.facts import Memory
from entrypoint.crashguard.output import REDACTED, Output, Redactor
from entrypoint.crashguard.policy import Guard
from tests.crashguard.logged import events, line
from tests.supervised import policy

LEASE = "Gateway failed to start: Another Gateway owner lease is still active for this state directory."
RULE = LeaseRule(("Another Gateway owner lease is still active",), retry_s=20, wait_max_s=360)


def run(guard: Guard, now: float, *, said: str = "", code: int | None = 1, **exit_facts: Any) -> list[Any]:
    """Start (the guard's own when one is due), run, say `said` on stderr, exit one second later."""
    effects = guard.on_timer(now, stopping=False)
    effects += guard.on_starting(now) + guard.on_running(now, pid=9)
    guard.on_output("stderr", said)
    return effects + guard.on_exited(now + 1, code, stopping=False, pid=9, **exit_facts)


# --------------------------------------------------------------------------------------------------
# EX_CONFIG


def test_exit_78_holds_at_once_with_the_programs_own_words_without_its_secrets() -> None:
    redact = Redactor({"OPENCLAW_GATEWAY_TOKEN": "tok-123456789", "HOME": "/home/node"})
    guard = Guard("gateway", policy(burst=5), 0.0, redact=redact)
    said = "loading config\nConfig invalid: gateway.auth.token tok-123456789 "
    said += "(Authorization: Bearer abc.def.ghi)\n"
    effects = run(guard, 1.0, said=said, code=78)
    held = line(effects, "gateway_held")
    assert held.level == "error" and held.fields["exit_code"] == 78
    expected = f"Config invalid: gateway.auth.token {REDACTED} (Authorization: Bearer {REDACTED})"
    assert held.fields["reason"] == f"it rejected its configuration (exit code 78): {expected}"
    assert held.fields["stderr_tail"] == ["loading config", expected]
    assert "tok-123456789" not in repr(effects) and "abc.def" not in repr(effects)
    # No backoff, no retry of any kind: only an operator's start leaves this hold.
    assert held.fields["retry_at"] is None and Cancel() in effects
    assert not any(isinstance(effect, (Schedule, Start)) for effect in effects)
    assert MarkLedger(Outcome.REFUSED) in effects and guard.state == State.HELD
    assert guard.on_timer(10_000.0, stopping=False) == []
    assert "crash_guard_rearmed" in events(guard.on_starting(50.0))
    assert guard.state == State.STARTING and guard.held_reason is None


def test_exit_78_with_the_exit_action_ends_the_init_with_78() -> None:
    guard = Guard("gateway", policy(action="exit"), 0.0)
    effects = run(guard, 1.0, said="Config invalid\n", code=78)
    assert ExitAction(Exit.CONFIG) in effects and Exit.CONFIG == 78
    assert line(effects, "gateway_config_refused").fields["stderr_tail"] == ["Config invalid"]
    assert guard.state == State.REFUSED and "gateway_held" not in events(effects)


# --------------------------------------------------------------------------------------------------
# A refusal that passes by itself


def test_a_stale_owner_lease_is_waited_out_without_counting() -> None:
    guard = Guard("gateway", policy(burst=2, maximum=60), 0.0, lease=RULE)
    now = 1.0
    for attempt in range(6):
        effects = run(guard, now, said=LEASE + "\n")
        assert guard.state == State.WAITING and guard.budget.exits == []
        assert line(effects, "gateway_exited").level == "info"
        assert Schedule(now + 1 + 20) in effects
        assert events(effects).count("gateway_waiting_for_lease") == (1 if attempt == 0 else 0)
        now += 21
    assert guard.snapshot(now).waiting_for == LEASE
    effects = run(guard, now, said="listening on 18789\n", code=None)  # got the lease, then crashed
    assert "gateway_backoff" in events(effects) and guard.aftermath.waiting_since is None


def test_a_lease_wait_is_bounded_then_the_exits_count_again() -> None:
    guard = Guard("gateway", policy(burst=2, maximum=60), 0.0, lease=RULE)
    run(guard, 0.0, said=LEASE + "\n")
    run(guard, 300.0, said=LEASE + "\n")
    assert guard.state == State.WAITING
    effects = run(guard, 400.0, said=LEASE + "\n")  # 401 s after the first refusal: past 360 s
    assert line(effects, "gateway_lease_wait_expired").fields["waited_s"] == 400
    assert "gateway_backoff" in events(effects)
    effects = run(guard, 500.0, said=LEASE + "\n")
    assert "crash_loop_refused" in events(effects) and "gateway_lease_wait_expired" not in events(effects)


def test_the_wait_never_spaces_starts_wider_than_the_backoff_cap() -> None:
    guard = Guard("gateway", policy(maximum=0.5), 0.0, lease=RULE)
    effects = run(guard, 1.0, said=LEASE + "\n")
    assert line(effects, "gateway_waiting_for_lease").fields["retry_s"] == 0.5 and Schedule(2.5) in effects


# --------------------------------------------------------------------------------------------------
# Out of memory


def test_an_oom_kill_is_named_with_the_limit_and_the_peak_then_counted() -> None:
    guard = Guard("gateway", policy(), 0.0, oom_kills=3)  # the count as the boot began
    effects = run(guard, 1.0, code=-1, memory=Memory(4, 256 << 20, 255 << 20))
    oom = line(effects, "gateway_oom_killed")
    assert oom.level == "error" and (oom.fields["limit_bytes"], oom.fields["peak_bytes"]) == (
        256 << 20,
        255 << 20,
    )
    assert "256 MiB" in oom.message and "gateway_backoff" in events(effects)


def test_only_a_signal_death_while_the_count_rose_is_named_oom_and_each_run_counts_from_its_own() -> None:
    guard = Guard("gateway", policy(burst=9), 0.0, oom_kills=4)
    assert "gateway_oom_killed" not in events(run(guard, 1.0, code=-1, memory=Memory(4, 1 << 30, 1)))
    assert "gateway_oom_killed" not in events(run(guard, 9.0, code=1, memory=Memory(5, 1 << 30, 1)))
    assert "gateway_oom_killed" in events(run(guard, 99.0, code=-1, memory=Memory(6, 1 << 30, 1)))
    # Counted from the last exit (6): another SIGKILL with no new OOM kill is not one.
    assert "gateway_oom_killed" not in events(run(guard, 999.0, code=-1, memory=Memory(6, 1 << 30, 1)))


# --------------------------------------------------------------------------------------------------
# The cool-down after a hold


def test_a_crash_loop_hold_is_tried_once_more_after_the_cool_down() -> None:
    guard = Guard("gateway", policy(burst=2, initial=1, hold_retry=900, reset=600), 0.0)
    run(guard, 0.0)
    effects = run(guard, 2.0)
    assert guard.state == State.HELD and guard.retry_at == 903.0
    assert Schedule(903.0) in effects and line(effects, "gateway_held").fields["retry_at"]
    assert guard.on_timer(902.0, stopping=False) == []  # not due yet
    effects = guard.on_timer(903.0, stopping=False)
    assert line(effects, "gateway_hold_retry").fields["cool_down_s"] == 900 and effects[-1] == Start()
    assert guard.snapshot(903.0).retrying is True
    # One attempt: it fails within the reset time, and it is held again at once, with a new cool-down.
    guard.on_starting(903.0)
    guard.on_running(903.0, pid=5)
    effects = guard.on_exited(913.0, 1, stopping=False)
    held = line(effects, "gateway_held")
    assert "attempt after the cool-down failed" in held.fields["reason"]
    assert guard.state == State.HELD and guard.retry_at == 1813.0 and "gateway_backoff" not in events(effects)


def test_an_attempt_that_stays_up_ends_the_hold_for_good() -> None:
    guard = Guard("gateway", policy(burst=1, hold_retry=60, reset=100), 0.0)
    run(guard, 0.0)
    guard.on_timer(61.0, stopping=False)
    guard.on_starting(61.0)
    guard.on_running(61.0, pid=5)
    assert "gateway_recovered" in events(guard.on_tick(161.0, None, stopping=False))
    assert not guard.retrying


def test_no_cool_down_with_a_hold_retry_of_0_and_for_a_boot_hold_there_is_one() -> None:
    never = Guard("gateway", policy(burst=1, hold_retry=0), 0.0)
    effects = run(never, 0.0)
    assert never.retry_at is None and not any(isinstance(effect, Schedule) for effect in effects)
    boot = Guard("gateway", policy(hold_retry=600), 0.0)
    assert Schedule(610.0) in boot.hold("boot ledger: the last 5 boots failed", HoldCause.BOOT_LOOP, 10.0)


# --------------------------------------------------------------------------------------------------
# The stop timeout


def test_a_program_still_stopping_at_its_timeout_is_said_before_supervisord_kills_it() -> None:
    guard = Guard("gateway", policy(stop=330), 0.0, redact=Redactor({"SOME_SECRET": "hunter2hunter2"}))
    guard.on_starting(0.0)
    guard.on_running(0.0, pid=9)
    effects = guard.on_stopping(10.0, stopping=True)
    assert Schedule(339.5) in effects
    guard.on_output("stdout", "shutdown: draining 2 active replies (hunter2hunter2)\n")
    guard.on_output("stderr", "still waiting for ")
    guard.on_output("stderr", "session main\n")
    timeout = line(guard.on_timer(339.5, stopping=True), "gateway_stop_timeout")
    assert timeout.level == "error" and timeout.fields["stop_timeout_s"] == 330
    assert timeout.fields["output_tail"] == [
        f"shutdown: draining 2 active replies ({REDACTED})",
        "still waiting for session main",
    ]


def test_a_program_that_stops_in_time_cancels_the_stop_timeout() -> None:
    guard = Guard("gateway", policy(stop=330), 0.0)
    guard.on_starting(0.0)
    guard.on_running(0.0, pid=9)
    guard.on_stopping(10.0, stopping=False)
    assert Cancel() in guard.on_stopped(11.0, stopping=False)
    assert guard.on_timer(339.5, stopping=False) == []


# --------------------------------------------------------------------------------------------------
# The program's last lines


def test_output_keeps_lines_across_chunks_and_streams_and_spots_a_marker_once_per_run() -> None:
    output = Output(("owner lease",))
    output.feed("stdout", "a\nb")
    output.feed("stderr", "x owner lease y\n")
    output.feed("stdout", "c\n")
    output.flush()
    assert list(output.both) == ["a", "x owner lease y", "bc"] and list(output.stderr) == ["x owner lease y"]
    assert output.matched == "x owner lease y"
    output.new_run()
    assert output.matched is None


def test_secrets_are_redacted_by_value_and_by_shape_and_ordinary_words_are_kept() -> None:
    redact = Redactor({"MY_API_KEY": "supersecretvalue", "SHORT_TOKEN": "1", "PATH": "/usr/bin"})
    cases = {
        "key is supersecretvalue": f"key is {REDACTED}",
        "Authorization: Bearer eyJhbGciOiJI.eyJzdWIi.SflKxw": f"Authorization: Bearer {REDACTED}",
        "Basic dXNlcjpwYXNz": f"Basic {REDACTED}",
        '{"apiKey": "zzzzzzzz", "pass": 1}': f'{{"apiKey": "{REDACTED}", "pass": 1}}',
        "password: pw123456 user: bob": f"password: {REDACTED} user: bob",
        "https://bob:hunter22@example.com/x": f"https://bob:{REDACTED}@example.com/x",
        "using sk-ant-api03-abcdefghijklmnop": f"using {REDACTED}",
        "bot 123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw1": f"bot {REDACTED}",
        "Basic configuration, 1 token refresh, tokens: 1500 in /usr/bin": (
            "Basic configuration, 1 token refresh, tokens: 1500 in /usr/bin"
        ),
    }
    for text, expected in cases.items():
        assert redact(text) == expected
