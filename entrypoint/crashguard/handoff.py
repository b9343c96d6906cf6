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
import signal
import time
from dataclasses import dataclass, replace
from typing import Any

from ..common import guardplan, rundir, text
from ..common.guardplan import HandoffPlan
from .facts import Answer, Handoff

PROTOCOL_VERSION = 1
# How a CLI built on `commander` says it has no such command (older generations).
_NO_SUCH_COMMAND = ("unknown command", "too many arguments", "unknown option")
_DETAIL_MAX = 300


@dataclass(frozen=True)
class Ran:
    """One call of the CLI: its exit code (None: it did not finish), what it printed, or why not."""

    code: int | None
    stdout: str
    stderr: str
    failure: str = ""  # why there is no exit code: not runnable, or past the timeout
    started: bool = True  # False: there is no such program to run (no CLI, no contract)


def run(argv: tuple[str, ...], timeout_s: float) -> Ran:
    # Imported at the first call: supervisord's process keeps what it imports for its whole life,
    # and most never see a clean exit of the program.
    import subprocess

    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: killed whole past the timeout
        )
    except OSError as error:
        return Ran(None, "", "", f"cannot run {argv[0]}: {error.strerror or error}", started=False)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        return Ran(None, stdout, stderr, f"no answer within {timeout_s:g}s")
    return Ran(process.returncode, stdout, stderr)


def answer_of(text: str) -> dict[str, Any] | None:
    """The JSON object the CLI printed (indented, possibly after other lines), or None."""
    decoder = json.JSONDecoder()
    starts = [
        index for index, char in enumerate(text) if char == "{" and (index == 0 or text[index - 1] == "\n")
    ]
    for start in starts:
        try:
            value, _ = decoder.raw_decode(text, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _last_line(ran: Ran) -> str:
    lines = [line.strip() for line in (ran.stderr or ran.stdout).splitlines() if line.strip()]
    return text.one_line(lines[-1] if lines else "", _DETAIL_MAX)


def _why(ran: Ran) -> str:
    if ran.failure:
        return ran.failure
    last = _last_line(ran)
    return f"exit code {ran.code}{': ' + last if last else ''}"


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
        return Handoff(pid, Answer.FAILED, f"consume: {_why(ran)}")
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
    return Handoff(pid, Answer.FAILED, f"consume: {status} {reason or _why(ran)}".strip())


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
            return Handoff(pid, Answer.FAILED, f"capabilities: {_why(ran)}")
        remember(plan, capable, time.time())
        if not capable:
            return Handoff(pid, Answer.UNSUPPORTED, f"capabilities: {_why(ran)}", capable=False)
    argv = tuple(str(pid) if arg == guardplan.PID else arg for arg in plan.consume)
    return replace(consumed(pid, run(argv, plan.timeout_s)), capable=capable)
