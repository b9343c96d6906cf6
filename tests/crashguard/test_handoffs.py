"""Restart handoffs: a clean exit is put to the program, a restart it asked for is started again
at once and never counted; the rest keeps the restart policy's rules. The policy with explicit
times, then the CLI's answers as `handoff` reads them, from stand-in CLIs."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from entrypoint.common.guardplan import PID, HandoffPlan
from entrypoint.common.guardstate import State
from entrypoint.crashguard import handoff
from entrypoint.crashguard.effects import AskHandoff, Schedule, Start
from entrypoint.crashguard.facts import Answer, Handoff
from entrypoint.crashguard.policy import Guard
from tests.crashguard.logged import events, line
from tests.supervised import policy

STANDIN_CLI = str(Path(__file__).resolve().parents[1] / "standins" / "handoff_cli.py")


def accepted(pid: int, capable: bool | None = None) -> Handoff:
    return Handoff(
        pid, Answer.ACCEPTED, "accepted", "gateway.restart", "operator-restart", "full-process", capable
    )


def run_then_exit(guard: Guard, now: float, pid: int, code: int = 0) -> list[Any]:
    guard.on_starting(now)
    guard.on_running(now, pid=pid)
    return guard.on_exited(now + 1, code, stopping=False, pid=pid)


def test_a_clean_exit_is_put_to_the_program_and_probes_its_cli_only_the_first_time() -> None:
    guard = Guard("gateway", policy(), 0.0, handoffs=True)
    effects = run_then_exit(guard, 1.0, pid=11)
    assert effects[-1] == AskHandoff(11, probe=True)
    assert guard.state == State.HANDOFF and guard.snapshot(2.0).pid == 11
    assert line(effects, "gateway_exited").level == "info"  # not a crash until it is one
    effects = guard.on_handoff(3.0, accepted(11, capable=True), stopping=False)
    assert line(effects, "restart_handoff_capabilities").fields["capable"] is True
    assert AskHandoff(12, probe=False) in run_then_exit(guard, 4.0, pid=12)


def test_six_requested_restarts_in_a_row_are_six_immediate_starts_never_counted() -> None:
    guard = Guard("gateway", policy(burst=2, initial=30), 0.0, handoffs=True, capable=True)
    now = 1.0
    for pid in range(100, 106):
        asked = run_then_exit(guard, now, pid)
        assert asked[-1] == AskHandoff(pid, probe=False)
        effects = guard.on_handoff(now + 2, accepted(pid), stopping=False)
        requested = line(effects, "gateway_restart_requested")
        assert (requested.fields["reason"], requested.fields["source"]) == (
            "gateway.restart",
            "operator-restart",
        )
        assert effects[-1] == Start()  # at once: no timer, no backoff
        assert not any(isinstance(effect, Schedule) for effect in effects)
        assert events(guard.on_starting(now + 2)) == ["gateway_starting"]
        now += 3
    assert guard.requested_restarts == 6 and guard.restarts == 0
    assert guard.budget.exits == [] and guard.state == State.STARTING


@pytest.mark.parametrize(
    ("answer", "event", "level"),
    [
        (Handoff(7, Answer.DECLINED, "none: missing"), "restart_handoff_declined", "info"),
        (Handoff(7, Answer.DECLINED, "rejected: pid-mismatch"), "restart_handoff_declined", "info"),
        (Handoff(7, Answer.FAILED, "consume: no answer within 45s"), "restart_handoff_failed", "warning"),
        (Handoff(7, Answer.FAILED, "consume: error store-unavailable"), "restart_handoff_failed", "warning"),
    ],
)
def test_no_handoff_or_no_answer_keeps_the_restart_rules(answer: Handoff, event: str, level: str) -> None:
    """No answer is no request: the guard is the recovery policy the contract hands over to."""
    guard = Guard("gateway", policy(initial=2, burst=2), 0.0, handoffs=True, capable=True)
    run_then_exit(guard, 1.0, pid=7)
    effects = guard.on_handoff(5.0, answer, stopping=False)
    assert line(effects, event).level == level
    backoff = line(effects, "gateway_backoff")
    # The delay runs from the exit, not from the answer.
    assert backoff.fields["delay_s"] == 2 and Schedule(4.0) in effects
    assert [record.time for record in guard.budget.exits] == [2.0]


def test_a_cli_without_the_contract_is_asked_once_and_then_never() -> None:
    guard = Guard("gateway", policy(burst=3), 0.0, handoffs=True)
    run_then_exit(guard, 1.0, pid=7)
    effects = guard.on_handoff(
        2.0, Handoff(7, Answer.UNSUPPORTED, "exit code 1", capable=False), stopping=False
    )
    assert line(effects, "restart_handoff_capabilities").fields["capable"] is False
    assert "gateway_backoff" in events(effects)
    effects = guard.on_timer(10.0, stopping=False) + run_then_exit(guard, 10.0, pid=8)
    assert not any(isinstance(effect, AskHandoff) for effect in effects)
    assert "gateway_backoff" in events(effects)


@pytest.mark.parametrize("code", [1, 78, -1, None])
def test_only_a_clean_exit_is_asked_about(code: int | None) -> None:
    guard = Guard("gateway", policy(), 0.0, handoffs=True, capable=True)
    assert not any(isinstance(effect, AskHandoff) for effect in run_then_exit(guard, 1.0, pid=7, code=code))


def test_an_operator_acting_during_the_question_wins_over_the_answer() -> None:
    guard = Guard("gateway", policy(), 0.0, handoffs=True, capable=True)
    run_then_exit(guard, 1.0, pid=7)
    guard.on_stopped(2.0, stopping=False)  # `supervisorctl stop` while the CLI is asked
    assert guard.on_handoff(3.0, accepted(7), stopping=False) == []
    assert guard.state == State.STOPPED and guard.requested_restarts == 0


def test_an_answer_after_the_init_began_stopping_starts_nothing() -> None:
    guard = Guard("gateway", policy(), 0.0, handoffs=True, capable=True)
    run_then_exit(guard, 1.0, pid=7)
    effects = guard.on_handoff(3.0, accepted(7), stopping=True)
    assert Start() not in effects and guard.state == State.STOPPED
    assert line(effects, "gateway_stopped").fields["requested_by"] == "init"


# --------------------------------------------------------------------------------------------------
# The CLI's answers


def plan(tmp_path: Path, *options: str, timeout_s: float = 20.0) -> HandoffPlan:
    cli = (
        sys.executable,
        STANDIN_CLI,
        "--store",
        str(tmp_path / "store.json"),
        "--log",
        str(tmp_path / "log"),
    )
    return HandoffPlan(
        capabilities=(*cli, *options, "gateway", "restart-handoff", "capabilities", "--json"),
        consume=(*cli, *options, "gateway", "restart-handoff", "consume", "--expected-pid", PID, "--json"),
        timeout_s=timeout_s,
        cache_path=str(tmp_path / "init" / "restart-handoff.json"),
        identity="openclaw@2026.9.6 node /app/moltbot.mjs",
    )


def store(tmp_path: Path, pid: int) -> None:
    now = int(time.time() * 1000)
    (tmp_path / "store.json").write_text(
        f'{{"pid": {pid}, "reason": "SIGUSR2", "source": "signal", "restartKind": "full-process", '
        f'"createdAt": {now}, "expiresAt": {now + 60000}}}'
    )


def test_an_accepted_handoff_is_consumed_once_and_the_probe_is_kept_for_the_image(tmp_path: Path) -> None:
    chosen = plan(tmp_path)
    store(tmp_path, 42)
    first = handoff.ask(chosen, 42, probe=True)
    assert (first.answer, first.reason, first.source, first.capable) == (
        Answer.ACCEPTED,
        "SIGUSR2",
        "signal",
        True,
    )
    assert handoff.cached(chosen) is True
    other_image = dataclasses.replace(chosen, identity="openclaw@2026.10.1 node /app/moltbot.mjs")
    assert handoff.cached(other_image) is None
    again = handoff.ask(chosen, 42, probe=False)
    assert (again.answer, again.detail, again.capable) == (Answer.DECLINED, "none: missing", None)
    assert (tmp_path / "log").read_text().splitlines() == ["capabilities", "consume 42", "consume 42"]


def test_a_handoff_of_another_pid_is_declined(tmp_path: Path) -> None:
    store(tmp_path, 42)
    answer = handoff.ask(plan(tmp_path), 43, probe=False)
    assert (answer.answer, answer.detail) == (Answer.DECLINED, "rejected: pid-mismatch")


def test_an_older_cli_has_no_contract_and_that_is_kept(tmp_path: Path) -> None:
    chosen = plan(tmp_path, "--mode", "none")
    answer = handoff.ask(chosen, 42, probe=True)
    assert (answer.answer, answer.capable) == (Answer.UNSUPPORTED, False)
    assert handoff.cached(chosen) is False


def test_a_missing_cli_offers_nothing_and_is_not_kept(tmp_path: Path) -> None:
    chosen = HandoffPlan(("/nonexistent/node",), ("/nonexistent/node", PID), 5, str(tmp_path / "c.json"), "x")
    answer = handoff.ask(chosen, 42, probe=True)
    assert (answer.answer, answer.capable) == (Answer.UNSUPPORTED, None)
    assert handoff.cached(chosen) is None


def test_a_cli_past_its_timeout_is_killed_with_its_children_and_is_no_answer(tmp_path: Path) -> None:
    started = time.monotonic()
    answer = handoff.ask(plan(tmp_path, "--mode", "hang", timeout_s=1.0), 42, probe=False)
    assert time.monotonic() - started < 10
    assert answer.answer == Answer.FAILED and "no answer within 1s" in answer.detail


@pytest.mark.parametrize(
    ("code", "stdout", "stderr", "expected"),
    [
        (0, '{\n  "ok": true,\n  "protocolVersion": 1,\n  "operations": ["consume"]\n}\n', "", True),
        (
            0,
            'DeprecationWarning: x\n{\n  "ok": true, "protocolVersion": 1, "operations": ["consume"]}',
            "",
            True,
        ),
        (0, '{"ok": true, "protocolVersion": 2, "operations": ["consume"]}', "", False),
        (0, '{"ok": true, "protocolVersion": 1, "operations": []}', "", False),
        (1, "", "error: unknown command 'restart-handoff'", False),
        (1, "", "error: too many arguments for 'gateway'. Expected 0 arguments", False),
        (1, "", "Error: Cannot find module '/app/moltbot.mjs'", None),
        (78, "", "Config invalid", None),
        (None, "", "", None),
        (0, "not json", "", None),
    ],
)
def test_what_a_capabilities_answer_means(
    code: int | None, stdout: str, stderr: str, expected: bool | None
) -> None:
    assert handoff.capability(handoff.Ran(code, stdout, stderr)) is expected


@pytest.mark.parametrize(
    ("code", "stdout", "expected", "detail"),
    [
        (0, '{"ok": true, "status": "none", "reason": "missing"}', Answer.DECLINED, "none: missing"),
        (0, '{"ok": true, "status": "rejected", "reason": "expired"}', Answer.DECLINED, "rejected: expired"),
        (2, '{"ok": false, "status": "error", "reason": "invalid-expected-pid"}', Answer.FAILED, "invalid"),
        (
            1,
            '{"ok": false, "status": "error", "reason": "store-unavailable"}',
            Answer.FAILED,
            "store-unavailable",
        ),
        (0, "Segmentation fault", Answer.FAILED, "consume: exit code 0"),
        (0, '{"ok": true, "status": "accepted"}', Answer.FAILED, "accepted"),  # no handoff in it
    ],
)
def test_what_a_consume_answer_means(code: int, stdout: str, expected: Answer, detail: str) -> None:
    answer = handoff.consumed(7, handoff.Ran(code, stdout, ""))
    assert answer.answer == expected and detail in answer.detail
