"""The program's restart-handoff contract, asked through its own CLI: does it offer the contract
(`capabilities`, asked once per image, the answer kept in the state volume), and was this exit a
restart it requested (`consume --expected-pid PID`)?

Where it differs: a helper thread of the worker, after a clean exit of the program, so that
supervisord's events keep flowing while the CLI starts (cold, it takes seconds). The CLI runs with
supervisord's environment, which is the program's own, in a session of its own: a CLI past its
timeout is killed with everything it started. Parsing the answers is pure; the contract's rules are
the program's (its package's docs, `cli/gateway/restart-and-supervision.md`, "External
supervisors"): valid requests answer JSON with exit code 0, including "no handoff"; errors say
`status: "error"` and a reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import replace
from typing import Any

from ..common import guardplan, rundir, text
from ..common.cli import Ran, answer_of, run
from ..common.guardplan import HandoffPlan
from .facts import Answer, Handoff

PROTOCOL_VERSION = 1
# How a CLI built on `commander` says it has no such command (older generations).
_NO_SUCH_COMMAND = ("unknown command", "too many arguments", "unknown option")
_DETAIL_MAX = 300


def capability(ran: Ran) -> bool | None:
    """Whether the CLI offers `consume` at protocol version 1: True, False, or None when it did
    not say (a timeout, a crash: asked again at the next clean exit, never remembered)."""
    answer = answer_of(ran.stdout)
    if ran.code == 0 and answer is not None and answer.get("ok") is True:
        operations = answer.get("operations")
        return (
            answer.get("protocolVersion") == PROTOCOL_VERSION
            and isinstance(operations, list)
            and ("consume" in operations)
        )
    text = f"{ran.stdout}\n{ran.stderr}".lower()
    if ran.code is not None and ran.code > 0 and any(phrase in text for phrase in _NO_SUCH_COMMAND):
        return False
    return None


def consumed(pid: int, ran: Ran) -> Handoff:
    """What `consume --expected-pid PID --json` said about the exit of `pid`."""
    answer = answer_of(ran.stdout)
    if answer is None:
        return Handoff(pid, Answer.FAILED, f"consume: {ran.why()}")
    status = text.one_line(str(answer.get("status")), _DETAIL_MAX)
    reason = text.one_line(str(answer.get("reason") or ""), _DETAIL_MAX)
    handoff = answer.get("handoff")
    if ran.code == 0 and answer.get("ok") is True and status == "accepted" and isinstance(handoff, dict):
        return Handoff(
            pid,
            Answer.ACCEPTED,
            "accepted",
            reason=_text(handoff.get("reason")),
            source=_text(handoff.get("source")),
            restart_kind=_text(handoff.get("restartKind")),
        )
    if ran.code == 0 and answer.get("ok") is True and status in ("none", "rejected"):
        return Handoff(pid, Answer.DECLINED, f"{status}: {reason or 'no reason given'}")
    # `status: "error"`: `invalid-expected-pid` (exit 2), `store-unavailable` (exit 1), or worse.
    return Handoff(pid, Answer.FAILED, f"consume: {status} {reason or ran.why()}".strip())


def _text(value: Any) -> str | None:
    return text.one_line(value, _DETAIL_MAX) if isinstance(value, str) and value else None


def cached(plan: HandoffPlan) -> bool | None:
    """The capabilities answer kept for this image, if any."""
    try:
        with open(plan.cache_path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("identity") != plan.identity:
        return None  # another image's answer (or none): asked again
    capable = data.get("capable")
    return capable if isinstance(capable, bool) else None


def remember(plan: HandoffPlan, capable: bool, now: float) -> None:
    """Keep the answer for later boots of this image; an unwritable volume costs one probe a boot."""
    data = {"identity": plan.identity, "capable": capable, "answered_at": round(now, 3)}
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(plan.cache_path), exist_ok=True)
        rundir.replace_file(plan.cache_path, rundir.json_bytes(data), mode=0o600)


def ask(plan: HandoffPlan, pid: int, probe: bool) -> Handoff:
    """Whether the exit of `pid` was a restart the program requested; first, when `probe`,
    whether its CLI offers that at all."""
    capable: bool | None = None
    if probe:
        ran = run(plan.capabilities, plan.timeout_s)
        if not ran.started:  # a CLI that is not there offers nothing (not kept: asking is cheap)
            return Handoff(pid, Answer.UNSUPPORTED, f"capabilities: {ran.failure}")
        capable = capability(ran)
        if capable is None:
            return Handoff(pid, Answer.FAILED, f"capabilities: {ran.why()}")
        remember(plan, capable, time.time())
        if not capable:
            return Handoff(pid, Answer.UNSUPPORTED, f"capabilities: {ran.why()}", capable=False)
    argv = tuple(str(pid) if arg == guardplan.PID else arg for arg in plan.consume)
    return replace(consumed(pid, run(argv, plan.timeout_s)), capable=capable)
