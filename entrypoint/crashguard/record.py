"""What the crash guard keeps about the program: its state, its counters, its hold and its wait,
what entering a state resets, and how it maps onto the state file (`common/guardstate`).

Pure, as the policy is: `policy.Guard` is a `Record` that reacts to events, and decides every
transition; this module only keeps what the transitions leave behind.
"""

from __future__ import annotations

from typing import Any

from ..common.guardplan import LeaseRule
from ..common.guardstate import HOLDING, HoldCause, Snapshot, State
from ..common.ledger import Outcome
from ..common.plans import RestartPolicy
from .aftermath import Aftermath, Ended
from .budget import RestartBudget
from .effects import Effect, Start
from .output import Output, Redactor

# What the state file says as the record keeps it, under the same names.
_KEPT_AS_IS = (
    "program",
    "since",
    "pid",
    "running_since",
    "restarts",
    "requested_restarts",
    "operator_restarts",
    "oom_kills",
    "last_exit_code",
    "backoff_s",
    "delay_s",
    "restart_at",
    "held_reason",
    "held_cause",
    "how_to_leave",
    "retry_at",
    "retrying",
    "waiting_for",
)


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
        self.operator_restarts = 0
        self.oom_kills = 0  # the program's exits the OOM killer caused
        self.last_exit_code: int | None = None
        self.backoff_s = 0.0  # time spent in BACKOFF, up to its current stay there
        self.delay_s: float | None = None
        self.restart_at: float | None = None
        self.held_reason: str | None = None
        self.held_cause: HoldCause | None = None
        self.how_to_leave: str | None = None  # HELD: its own way out, when it has one
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
        if self.state == State.BACKOFF and state != State.BACKOFF:
            self.backoff_s += max(0.0, now - self.since)
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
            self.held_cause = None
            self.how_to_leave = None
            self.retry_at = None
        if state != State.RUNNING:
            self.running_since = None
        if state != State.HANDOFF:
            self.pending = None

    def _start(self, *, requested: bool = False) -> list[Effect]:
        self.start_requested = True
        if requested:
            self.requested_restarts += 1
        else:
            self.restarts += 1
        return [Start()]

    # -- persistence ------------------------------------------------------------------------------
    def snapshot(self, now: float) -> Snapshot:
        """The state file's contents as far as the policy knows them (the worker adds which
        supervisord it runs in)."""
        return Snapshot(
            **{name: getattr(self, name) for name in _KEPT_AS_IS},
            state=self.state or State.STARTING,
            backoff_attempt=self.budget.attempt,
            exits=tuple(self.budget.recent(now)),
            waiting_since=self.aftermath.waiting_since,
            burst=self.policy.crashloop_burst,
            window_s=self.policy.crashloop_window_s,
            action=self.policy.crashloop_action,
        )
