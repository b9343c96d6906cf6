"""What the crash guard's policy says: the log lines of its transitions, built from the facts.

Pure, as the policy is (`policy.Guard` calls these and returns the lines among its effects): each
function is one stable event with its sentence and fields, so that the policy's page holds the
transitions and this one the words. The program's name is in every line.
"""

from __future__ import annotations

from typing import Any

from ..common import log
from ..common.guardstate import HoldCause, State
from .effects import Log
from .facts import Handoff


def line(program: str, level: str, event: str, message: str, **fields: Any) -> Log:
    return Log(level, event, message, {"program": program, **fields})


def starting(program: str, by: str, restarts: int) -> Log:
    return line(
        program, "info", "gateway_starting", f"{program} is starting", requested_by=by, restarts=restarts
    )


def rearmed(program: str, previous: State | None, exits: int) -> Log:
    return line(
        program,
        "info",
        "crash_guard_rearmed",
        f"{program} was started by an operator: exit history, backoff and hold cleared",
        previous_state=previous,
        exits_cleared=exits,
    )


def exited(program: str, level: str, now: float, exit_code: int | None, **fields: Any) -> Log:
    """`fields`: expected, uptime_s, pid, and spawn_error when it could not be started at all."""
    spawn_error = fields.get("spawn_error")
    what = f"could not be started ({spawn_error})" if spawn_error else f"exited with code {exit_code}"
    # `exited_at`: when supervisord reported it (the line may come later).
    return line(
        program,
        level,
        "gateway_exited",
        f"{program} {what}",
        exited_at=log.rfc3339(now),
        exit_code=exit_code,
        **fields,
    )


def stopped(program: str, message: str, by: str) -> Log:
    return line(program, "info", "gateway_stopped", message, requested_by=by)


def capabilities(program: str, capable: bool) -> Log:
    offers = "offers" if capable else "does not offer"
    message = f"the CLI of {program} {offers} restart handoffs (kept for this image)"
    return line(program, "info", "restart_handoff_capabilities", message, capable=capable)


def restart_requested(program: str, answer: Handoff, requested_restarts: int) -> Log:
    why = f"{answer.reason or 'no reason given'}, from {answer.source or 'an unknown source'}"
    message = f"{program} asked for this restart ({why}): started again at once, not counted"
    fields = {"reason": answer.reason, "source": answer.source, "restart_kind": answer.restart_kind}
    return line(
        program,
        "info",
        "gateway_restart_requested",
        message,
        **fields,
        pid=answer.pid,
        requested_restarts=requested_restarts,
    )


def handoff_failed(program: str, answer: Handoff, detail: str) -> Log:
    """`detail`: the answer's detail, redacted (a CLI's error may quote its environment)."""
    return line(
        program,
        "warning",
        "restart_handoff_failed",
        f"could not ask {program} whether it requested this restart ({detail}): treated as an "
        "unexpected exit",
        detail=detail,
        pid=answer.pid,
    )


def handoff_declined(program: str, answer: Handoff) -> Log:
    return line(
        program,
        "info",
        "restart_handoff_declined",
        f"{program} did not ask for this restart ({answer.detail})",
        answer=answer.answer,
        detail=answer.detail,
        pid=answer.pid,
    )


def held(
    program: str,
    level: str,
    reason: str,
    cause: HoldCause | None,
    hint: str,
    retry_at: float | None,
    **fields: Any,
) -> Log:
    again = "" if retry_at is None else f"; tried once more at {log.rfc3339(retry_at)}"
    return line(
        program,
        level,
        "gateway_held",
        f"{program} is held and will not be started: {reason}{again}; {hint}",
        reason=reason,
        cause=cause,
        how_to_leave=hint,
        retry_at=None if retry_at is None else log.rfc3339(retry_at),
        **fields,
    )


def hold_retry(program: str, reason: str | None, cool_down_s: float, reset_s: float) -> Log:
    return line(
        program,
        "warning",
        "gateway_hold_retry",
        f"{program} was held {cool_down_s:g}s ago ({reason}): trying once more; an exit within "
        f"{reset_s:g}s holds it again",
        held_reason=reason,
        cool_down_s=cool_down_s,
    )


def stopping(program: str, by: str, pid: int | None, timeout_s: int) -> Log:
    message = f"{program} is being stopped"
    return line(
        program, "info", "gateway_stopping", message, requested_by=by, pid=pid, stop_timeout_s=timeout_s
    )


def stop_timeout(
    program: str, pid: int | None, timeout_s: int, stopping_for_s: float, tail: list[str]
) -> Log:
    return line(
        program,
        "error",
        "gateway_stop_timeout",
        f"{program} did not stop within its stop timeout ({timeout_s}s): supervisord kills it "
        "(SIGKILL); what it was still doing is in output_tail",
        pid=pid,
        stop_timeout_s=timeout_s,
        stopping_for_s=round(stopping_for_s, 3),
        output_tail=tail,
    )


def start_failed(program: str, fault: str, detail: str) -> Log:
    message = f"supervisord did not start {program}: {fault} {detail}"
    return line(program, "warning", "gateway_start_failed", message, fault=fault, detail=detail)


def recovered(program: str, reset_s: float) -> Log:
    return line(
        program,
        "info",
        "gateway_recovered",
        f"{program} stayed up {reset_s:g}s after the attempt that followed its hold: its exits count "
        "as usual again",
    )


def backoff_reset(program: str, reset_s: float) -> Log:
    return line(program, "info", "gateway_backoff_reset", f"{program} stayed up {reset_s:g}s: backoff reset")
