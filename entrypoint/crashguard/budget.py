"""The restart policy's arithmetic: the backoff delay, and the exits that count toward a refusal.

Pure: time is passed in, nothing is read or written, so every rule here is tested without sleeping.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..common.guardstate import ExitRecord
from ..common.plans import RestartPolicy


def backoff_delay(policy: RestartPolicy, attempt: int) -> float:
    """The delay before restart number `attempt` (0-based) since the last reset."""
    if attempt >= 64:  # 2**64 times any positive delay is past every cap
        return policy.backoff_max_s
    return min(policy.backoff_initial_s * (2**attempt), policy.backoff_max_s)


@dataclass(frozen=True)
class Verdict:
    refuse: bool
    delay_s: float
    restart_at: float | None
    counted: tuple[ExitRecord, ...]  # the exits inside the window, this one included


class RestartBudget:
    """Exits inside the window and the backoff step: everything the policy decides from."""

    def __init__(self, policy: RestartPolicy) -> None:
        self.policy = policy
        self.attempt = 0  # restarts since the last backoff reset
        self.exits: list[ExitRecord] = []

    def recent(self, now: float) -> list[ExitRecord]:
        return [record for record in self.exits if 0 <= now - record.time <= self.policy.crashloop_window_s]

    def on_exit(self, record: ExitRecord) -> Verdict:
        if record.uptime_s is not None and record.uptime_s >= self.policy.backoff_reset_s:
            self.attempt = 0
        self.exits = [*self.recent(record.time), record]
        if len(self.exits) >= self.policy.crashloop_burst:
            return Verdict(True, 0.0, None, tuple(self.exits))
        delay = backoff_delay(self.policy, self.attempt)
        self.attempt += 1
        return Verdict(False, delay, record.time + delay, tuple(self.exits))

    def on_up(self, running_since: float, now: float) -> bool:
        """Called while the program runs: True when it just earned a backoff reset."""
        if self.attempt and now - running_since >= self.policy.backoff_reset_s:
            self.attempt = 0
            return True
        return False

    def rearm(self) -> None:
        self.attempt = 0
        self.exits = []
