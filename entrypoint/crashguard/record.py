"""What the crash guard keeps about the program: its state, its counters, its hold and its wait, and
how they map onto the state file (`common/guardstate`) and back.

Who runs it: the crash guard, inside supervisord's process, as a thread, as the target user,
once supervisord is up: `policy.Guard` is a `Record` that reacts to events. Pure, as the policy
is.
"""

from __future__ import annotations

from typing import Any

from ..common import log
from ..common.guardplan import LeaseRule
from ..common.guardstate import HOLDING, Snapshot, State, leave_hold_hint
from ..common.ledger import Outcome
from ..common.plans import RestartPolicy
from .budget import RestartBudget
from .effects import Cancel, Effect, Log, Schedule, Start
from .exits import Aftermath, Ended
from .output import Output, Redactor


class Record:
    """The program's state as the guard sees it, and what it asks for when that changes."""

    def __init__(
        self,
        program: str,
        policy: RestartPolicy,
        now: float,
        *,
        lease: LeaseRule | None = None,
        handoffs: bool = False,
        capable: bool | None = None,
        redact: Redactor | None = None,
        oom_kills: int | None = None,
    ) -> None:
        self.program = program
        self.policy = policy
        self.lease = lease or LeaseRule()
        self.handoffs = handoffs  # the program has a restart-handoff contract to ask
        self.capable = capable  # its CLI offers it: True, False, None (not asked yet)
        self.redact = redact or Redactor({})
        self.budget = RestartBudget(policy)
        self.aftermath = Aftermath(program, policy, self.lease, self.budget, self.redact)
        self.output = Output(self.lease.markers)
        self.state: State | None = None  # None: nothing seen yet (supervisord is starting it)
        self.since = now
        self.pid: int | None = None
        self.running_since: float | None = None
        self.restarts = 0
        self.requested_restarts = 0
        self.delay_s: float | None = None
        self.restart_at: float | None = None
        self.held_reason: str | None = None
        self.retry_at: float | None = None
        self.retrying = False
        self.waiting_for: str | None = None
        self.pending: Ended | None = None  # HANDOFF: the exit the program is asked about
        self.stopping_since: float | None = None
        # The memory cgroup's OOM-kill count before the program's current run: at the boot, then
        # at each exit. Never read at its start: that event can come seconds late, after the kill.
        self.oom_kills_seen = oom_kills
        self.start_requested = False
        self.ledger_outcome: Outcome | None = None
        self._mismatch: tuple[str, Any] | None = None

    # -- helpers -----------------------------------------------------------------------------------
    def _enter(self, state: State, now: float) -> None:
        if state != self.state:
            self.since = now
        self.state = state
        if state not in (State.BACKOFF, State.WAITING):
            self.delay_s = None
            self.restart_at = None
        if state != State.WAITING:
            self.waiting_for = None
        if state not in HOLDING:
            self.held_reason = None
            self.retry_at = None
        if state != State.RUNNING:
            self.running_since = None
        if state != State.HANDOFF:
            self.pending = None

    def _log(self, level: str, event: str, message: str, **fields: Any) -> Log:
        return Log(level, event, message, {"program": self.program, **fields})

    def _stopped_by_init(self, now: float, message: str) -> list[Effect]:
        self._enter(State.STOPPED, now)
        return [Cancel(), self._log("info", "gateway_stopped", message, requested_by="init")]

    def _start(self, *, requested: bool = False) -> list[Effect]:
        self.start_requested = True
        if requested:
            self.requested_restarts += 1
        else:
            self.restarts += 1
        return [Start()]

    def hold(
        self, reason: str, now: float, *, retry: bool = True, level: str = "warning", **fields: Any
    ) -> list[Effect]:
        """Hold the program: by a refusal, the boot ledger, or a configuration it rejects. A hold
        for a cause that may pass (`retry`) is tried once more after the cool-down."""
        self._enter(State.HELD, now)
        self.held_reason = reason
        self.pid = None
        self.retrying = False
        cool_down = self.policy.hold_retry_s if retry else 0.0
        self.retry_at = now + cool_down if cool_down > 0 else None
        hint = leave_hold_hint(self.program)
        again = "" if self.retry_at is None else f"; tried once more at {log.rfc3339(self.retry_at)}"
        return [
            Cancel() if self.retry_at is None else Schedule(self.retry_at),
            self._log(
                level,
                "gateway_held",
                f"{self.program} is held and will not be started: {reason}{again}; {hint}",
                reason=reason,
                how_to_leave=hint,
                retry_at=None if self.retry_at is None else log.rfc3339(self.retry_at),
                **fields,
            ),
        ]

    # -- persistence ------------------------------------------------------------------------------
    def snapshot(self, now: float) -> Snapshot:
        """The state file's contents as far as the policy knows them (the worker adds which
        supervisord it runs in)."""
        return Snapshot(
            program=self.program,
            state=self.state or State.STARTING,
            since=self.since,
            pid=self.pid,
            running_since=self.running_since,
            restarts=self.restarts,
            requested_restarts=self.requested_restarts,
            backoff_attempt=self.budget.attempt,
            delay_s=self.delay_s,
            restart_at=self.restart_at,
            exits=tuple(self.budget.recent(now)),
            held_reason=self.held_reason,
            retry_at=self.retry_at,
            retrying=self.retrying,
            waiting_for=self.waiting_for,
            waiting_since=self.aftermath.waiting_since,
            burst=self.policy.crashloop_burst,
            window_s=self.policy.crashloop_window_s,
            action=self.policy.crashloop_action,
        )
