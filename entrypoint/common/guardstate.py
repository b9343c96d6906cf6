"""The crash guard's state file (`RUN/crashguard.json`): its state names, its format, and how to
say it in words. The one owner of that vocabulary, as supervisor's `states.py` is of its own.

Who uses it: the crash guard writes it (inside supervisord, as the target user, after every
change); the init writes a `held` state once, before supervisord starts, when its boot ledger
decides to hold; `health` and `status` (operators, any user) and the sd_notify loop (PID 1) read it.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import log, rundir

if TYPE_CHECKING:  # plans.py imports this module (a hold's cause)
    from .plans import Hold


class State(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"  # exited; the guard starts it again at `restart_at`
    # Exited cleanly; the guard asks the program whether that was a restart it requested.
    HANDOFF = "handoff"
    # Refused to start for a cause that passes by itself (`waiting_for`): started again at
    # `restart_at`, not counted as a crash.
    WAITING = "waiting"
    # Not started until an operator starts it (refused, a configuration it rejects, held at boot);
    # with `retry_at`, the guard tries once more then (the cause may have passed).
    HELD = "held"
    REFUSED = "refused"  # refused with the `exit` action: supervisord is shutting down
    STOPPED = "stopped"  # stopped by an operator or by the init's own stop


# The program is not running: health fails at once.
NOT_RUNNING = frozenset(
    {State.BACKOFF, State.HANDOFF, State.WAITING, State.HELD, State.REFUSED, State.STOPPED}
)
HOLDING = frozenset({State.HELD, State.REFUSED})


class HoldCause(enum.StrEnum):
    """Why the program is held, from a fixed set (the words for people are `held_reason`): what
    metrics label a hold with, so that an alert can tell a crash loop from a full volume."""

    CRASH_LOOP = "crash_loop"  # too many unexpected exits in the window, or the attempt after it failed
    CONFIG_REFUSED = "config_refused"  # it exited with EX_CONFIG: a config or state it rejects
    BOOT_LOOP = "boot_loop"  # the container keeps being restarted into refusals (the boot ledger)
    MIGRATION = "migration"  # the old state was not migrated
    DOWNGRADE = "downgrade"  # an older release than the newest that ran on the state
    CHECKPOINT_NO_SPACE = "checkpoint_no_space"  # no room for the checkpoint an upgrade takes first
    PREFLIGHT_REFUSED = "preflight_refused"  # the new release's own preflight refuses the state
    STATE_BUSY = "state_busy"  # another process holds the state (a rollback, a second container)
    UPGRADE_FAILED = "upgrade_failed"  # the upgrade gate could not finish


class RestartCause(enum.StrEnum):
    """Why the program was started again, from a fixed set: what metrics label a restart with."""

    CRASH = "crash"  # by the guard, after an exit nobody asked for (a crash, an OOM kill, a refusal)
    REQUESTED = "requested"  # the program asked for it (a restart handoff it wrote)
    OPERATOR = "operator"  # an operator started it (`supervisorctl start`, `restart`)


def leave_hold_hint(program: str) -> str:
    """The one way to say how to leave hold, wherever it is said (unless a hold names its own)."""
    return f"fix the cause, then run `supervisorctl start {program}` (or restart the container)"


@dataclass(frozen=True)
class ExitRecord:
    """One exit of the program as the guard counted it."""

    time: float
    exit_code: int | None  # None: the program could not be spawned; -1: killed by a signal
    uptime_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": log.rfc3339(self.time),
            "epoch": round(self.time, 3),
            "exit_code": self.exit_code,
            "uptime_s": None if self.uptime_s is None else round(self.uptime_s, 3),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ExitRecord | None:
        epoch = data.get("epoch") if isinstance(data, Mapping) else None
        if not _is_number(epoch):
            return None
        return cls(float(epoch), int_or_none(data.get("exit_code")), _float_or_none(data.get("uptime_s")))


@dataclass(frozen=True)
class Snapshot:
    """Everything the file says. `supervisord_*` identify the supervisord it was written under:
    a run dir kept across boots still holds the last boot's file."""

    program: str | None
    state: State
    since: float
    pid: int | None = None  # RUNNING: the program; HANDOFF: the exited process, whose handoff is asked for
    running_since: float | None = None
    restarts: int = 0  # started again by the guard after an exit it did not expect
    requested_restarts: int = 0  # restarts the program asked for (restart handoffs)
    operator_restarts: int = 0  # starts by an operator (a start that leaves a hold among them)
    oom_kills: int = 0  # exits the guard told from the memory cgroup's OOM-kill count
    last_exit_code: int | None = None  # of the last exit (-1: killed by a signal; None: none yet)
    backoff_s: float = 0.0  # time spent in BACKOFF, up to `since` when it is there now
    backoff_attempt: int = 0
    delay_s: float | None = None
    restart_at: float | None = None
    exits: tuple[ExitRecord, ...] = field(default=())
    held_reason: str | None = None
    held_cause: HoldCause | None = None  # HELD, REFUSED: `held_reason` as one of a fixed set
    how_to_leave: str | None = None  # HELD: the way out, when it is not the usual one
    retry_at: float | None = None  # HELD: when the one attempt after the cool-down is due
    retrying: bool = False  # that attempt runs: an unexpected exit holds again at once
    waiting_for: str | None = None  # WAITING: the cause that passes by itself
    waiting_since: float | None = None  # its first refusal (the wait is bounded)
    burst: int | None = None
    window_s: float | None = None
    action: str | None = None
    supervisord_pid: int | None = None
    supervisord_started: float | None = None

    def to_dict(self, now: float) -> dict[str, Any]:
        return {
            "program": self.program,
            "state": self.state.value,
            "since": round(self.since, 3),
            "since_at": log.rfc3339(self.since),
            "pid": self.pid,
            "running_since": _rounded(self.running_since),
            "restarts": self.restarts,
            "requested_restarts": self.requested_restarts,
            "operator_restarts": self.operator_restarts,
            "oom_kills": self.oom_kills,
            "last_exit_code": self.last_exit_code,
            "backoff_s": round(self.backoff_s, 3),
            "backoff_attempt": self.backoff_attempt,
            "delay_s": self.delay_s,
            "restart_at": _rounded(self.restart_at),
            "exits": [record.to_dict() for record in self.exits],
            "held_reason": self.held_reason,
            "held_cause": self.held_cause,
            "how_to_leave": self.how_to_leave,
            "retry_at": _rounded(self.retry_at),
            "retry_at_time": None if self.retry_at is None else log.rfc3339(self.retry_at),
            "retrying": self.retrying,
            "waiting_for": self.waiting_for,
            "waiting_since": _rounded(self.waiting_since),
            "burst": self.burst,
            "window_s": self.window_s,
            "action": self.action,
            "supervisord_pid": self.supervisord_pid,
            "supervisord_started": self.supervisord_started,
            "updated": round(now, 3),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Snapshot | None:
        """The snapshot a file holds; None when it is not one (another format, a torn copy)."""
        try:
            state = State(data.get("state"))
        except ValueError:
            return None
        since = data.get("since")
        program = data.get("program")
        return cls(
            program=program if isinstance(program, str) else None,
            state=state,
            since=float(since) if _is_number(since) else 0.0,
            pid=int_or_none(data.get("pid")),
            running_since=_float_or_none(data.get("running_since")),
            restarts=int_or_none(data.get("restarts")) or 0,
            requested_restarts=int_or_none(data.get("requested_restarts")) or 0,
            operator_restarts=int_or_none(data.get("operator_restarts")) or 0,
            oom_kills=int_or_none(data.get("oom_kills")) or 0,
            last_exit_code=int_or_none(data.get("last_exit_code")),
            backoff_s=_float_or_none(data.get("backoff_s")) or 0.0,
            backoff_attempt=int_or_none(data.get("backoff_attempt")) or 0,
            delay_s=_float_or_none(data.get("delay_s")),
            restart_at=_float_or_none(data.get("restart_at")),
            exits=tuple(record for item in data.get("exits") or () if (record := ExitRecord.from_dict(item))),
            held_reason=_str_or_none(data.get("held_reason")),
            held_cause=_cause_or_none(data.get("held_cause")),
            how_to_leave=_str_or_none(data.get("how_to_leave")),
            retry_at=_float_or_none(data.get("retry_at")),
            retrying=data.get("retrying") is True,
            waiting_for=_str_or_none(data.get("waiting_for")),
            waiting_since=_float_or_none(data.get("waiting_since")),
            burst=int_or_none(data.get("burst")),
            window_s=_float_or_none(data.get("window_s")),
            action=data.get("action") if isinstance(data.get("action"), str) else None,
            supervisord_pid=int_or_none(data.get("supervisord_pid")),
            supervisord_started=_float_or_none(data.get("supervisord_started")),
        )

    def restarts_by_cause(self) -> dict[RestartCause, int]:
        return {
            RestartCause.CRASH: self.restarts,
            RestartCause.REQUESTED: self.requested_restarts,
            RestartCause.OPERATOR: self.operator_restarts,
        }

    def time_in_backoff(self, now: float) -> float:
        """All the time spent in BACKOFF, the current stay in it included."""
        return self.backoff_s + (max(0.0, now - self.since) if self.state == State.BACKOFF else 0.0)

    def describe(self, program: str | None = None) -> str:
        """One line, for sd_notify's `STATUS=` and for people."""
        name = self.program or program or "program"
        if self.state == State.RUNNING:
            return f"{name} running (pid {self.pid}, {self.restarts} restarts)"
        if self.state == State.BACKOFF:
            delay = "?" if self.delay_s is None else f"{self.delay_s:g}"
            return f"{name} in backoff {delay}s after {len(self.exits)} recent exits"
        if self.state == State.HANDOFF:
            return f"{name} exited; asking it whether it requested this restart"
        if self.state == State.WAITING:
            return f"{name} waiting for {self.waiting_for or 'a refusal to pass'}"
        if self.state in HOLDING:
            text = f"{name} {self.state.value}: {self.held_reason or 'crash loop'}"
            if self.retry_at is not None:
                text += f"; tried once more at {log.rfc3339(self.retry_at)}"
            return text
        return f"{name} {self.state.value}"


def path(run_dir: str) -> str:
    return os.path.join(run_dir, rundir.GUARD_STATE)


def read(run_dir: str) -> Snapshot | None:
    """The file's snapshot; None when it is missing, unreadable or not a snapshot."""
    data = rundir.read_json(run_dir, rundir.GUARD_STATE)
    return None if data is None else Snapshot.from_dict(data)


def write(run_dir: str, snapshot: Snapshot, now: float) -> str | None:
    """Replace the file atomically; the path, or None when the run dir cannot be written."""
    return rundir.write_json(run_dir, rundir.GUARD_STATE, snapshot.to_dict(now))


def hold_at_boot(run_dir: str, program: str, hold: Hold, now: float) -> Snapshot:
    """The state the init writes when it holds the program at boot (autostart is off): the crash
    guard adopts it when it starts, and `health` says why the program is not running."""
    snapshot = Snapshot(
        program,
        State.HELD,
        now,
        held_reason=hold.reason,
        held_cause=hold.cause,
        how_to_leave=hold.how_to_leave,
        # Written as "a retry is due" only: the guard, which owns the cool-down, sets the time.
        retry_at=now if hold.retry else None,
    )
    if write(run_dir, snapshot, now) is None:
        log.event(
            log.get("guardstate"),
            "warning",
            "held_state_unwritable",
            "cannot write the held state; health will not say why the program is stopped",
            path=path(run_dir),
        )
    return snapshot


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def int_or_none(value: Any) -> int | None:
    """A whole number from a field another process wrote (this file, supervisord's answers and
    events), or None: a missing or malformed value is unknown, never a crash."""
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    return float(value) if _is_number(value) else None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _cause_or_none(value: Any) -> HoldCause | None:
    try:
        return HoldCause(value)
    except ValueError:  # none, or a cause this version does not know
        return None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
