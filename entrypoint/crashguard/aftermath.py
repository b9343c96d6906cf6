"""What follows an exit of the program that nobody asked for: a hold for a configuration it
rejects, a wait for a refusal that passes by itself, a backoff, a refusal of a crash loop, or a
hold again when the attempt after a hold fails; and what the exit says beyond its code (an OOM
kill).

Pure, as the policy is: the exit, the memory cgroup's figures and the program's last lines come
in as data; `Aftermath.judge` returns what comes next (`Next`), and the policy enters it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..common import log
from ..common.exits import Exit
from ..common.guardplan import LeaseRule
from ..common.guardstate import ExitRecord, HoldCause, State
from ..common.ledger import Outcome
from ..common.plans import CrashLoopAction, RestartPolicy
from . import lines
from .budget import RestartBudget
from .effects import Effect, ExitAction, Log, MarkLedger
from .facts import Memory
from .output import Redactor

# supervisord's exit status of a process killed by a signal (it does not say which).
KILLED_BY_SIGNAL = -1


@dataclass(frozen=True)
class Ended:
    """One exit of the program, with what it means."""

    record: ExitRecord
    pid: int | None
    refusal: str | None  # the output line naming a refusal that passes by itself
    oom: Memory | None  # the memory figures, when the kernel's OOM killer ended it


@dataclass(frozen=True)
class Next:
    """The state an exit leads to, and the effects that come first (log lines, the ledger)."""

    state: State  # BACKOFF, WAITING, HELD or REFUSED
    effects: tuple[Effect, ...]
    reason: str | None = None  # HELD, REFUSED: why
    cause: HoldCause | None = None  # HELD, REFUSED: why, as one of a fixed set
    retry: bool = True  # HELD: tried once more after the cool-down (a cause that may pass)
    level: str = "warning"  # HELD: of the `gateway_held` line
    fields: Mapping[str, Any] = field(default_factory=dict)  # HELD: more of that line
    delay_s: float | None = None  # BACKOFF, WAITING: when it starts again
    restart_at: float | None = None
    waiting_for: str | None = None  # WAITING: the program's own line


def oom_killed(exit_code: int | None, kills_before: int | None, memory: Memory | None) -> Memory | None:
    """`memory` when the program died of a signal while the cgroup's OOM-kill count rose since
    before it started: the OOM killer sends SIGKILL, and counts every kill it makes."""
    if memory is None or memory.oom_kills is None or kills_before is None:
        return None
    if exit_code not in (KILLED_BY_SIGNAL, None) or memory.oom_kills <= kills_before:
        return None
    return memory


def mib(size: int | None) -> str:
    return "unknown" if size is None else f"{size / 1048576:.0f} MiB"


class Aftermath:
    """Judges the exits nobody asked for; owns the wait for a refusal that passes by itself."""

    def __init__(
        self, program: str, policy: RestartPolicy, lease: LeaseRule, budget: RestartBudget, redact: Redactor
    ) -> None:
        self.program = program
        self.policy = policy
        self.lease = lease
        self.budget = budget
        self.redact = redact
        self.waiting_since: float | None = None  # the first refusal of the current wait
        self._wait_over_said = False

    def _log(self, level: str, event: str, message: str, **fields: Any) -> Log:
        return lines.line(self.program, level, event, message, **fields)

    def forget_wait(self) -> None:
        """A start by an operator or after a hold: the next refusal begins a new wait."""
        self.waiting_since = None
        self._wait_over_said = False

    def waits(self, ended: Ended, now: float) -> bool:
        """Whether this exit is a refusal still waited out (not counted)."""
        return ended.refusal is not None and (
            self.waiting_since is None or now - self.waiting_since <= self.lease.wait_max_s
        )

    def judge(self, ended: Ended, now: float, *, retrying: bool, stderr: list[str]) -> Next:
        """`retrying`: this run is the one attempt after a hold; `stderr`: its last lines."""
        effects: list[Effect] = []
        if ended.oom is not None:
            effects.append(self._oom(ended))
        if ended.record.exit_code == Exit.CONFIG:
            return self._config_refused(effects, stderr)
        if self.waits(ended, now) and ended.refusal is not None:
            return self._wait(effects, ended.refusal, now)
        if ended.refusal is None:
            self.forget_wait()
        elif not self._wait_over_said:
            self._wait_over_said = True
            effects.append(
                self._log(
                    "warning",
                    "gateway_lease_wait_expired",
                    f"{self.program} is still refused after {self.lease.wait_max_s:g}s: "
                    "its exits count again",
                    waited_s=round(now - (self.waiting_since or now), 3),
                    line=self.redact(ended.refusal),
                )
            )
        verdict = self.budget.on_exit(ended.record)
        if retrying:
            reason = f"the attempt after the cool-down failed too (exit code {ended.record.exit_code})"
            fields = {"stderr_tail": stderr}
            effects.append(MarkLedger(Outcome.REFUSED))
            return Next(State.HELD, tuple(effects), reason, HoldCause.CRASH_LOOP, fields=fields)
        if verdict.refuse:
            return self._refuse(effects, [record.to_dict() for record in verdict.counted], stderr)
        effects.append(
            self._log(
                "warning",
                "gateway_backoff",
                f"{self.program} will be restarted in {verdict.delay_s:g}s "
                f"({len(verdict.counted)} of {self.policy.crashloop_burst} exits allowed "
                f"within {self.policy.crashloop_window_s:g}s)",
                delay_s=verdict.delay_s,
                restart_at=log.rfc3339(verdict.restart_at or now),
                exits_in_window=len(verdict.counted),
                burst=self.policy.crashloop_burst,
                window_s=self.policy.crashloop_window_s,
            )
        )
        return Next(
            State.BACKOFF, tuple(effects), delay_s=verdict.delay_s, restart_at=verdict.restart_at or now
        )

    def _oom(self, ended: Ended) -> Log:
        memory = ended.oom or Memory(None, None, None)
        limits = f"memory limit {mib(memory.limit_bytes)}, peak {mib(memory.peak_bytes)}"
        message = f"{self.program} was killed by the kernel's OOM killer ({limits})"
        return self._log("error", "gateway_oom_killed", message, pid=ended.pid, **dataclasses.asdict(memory))

    def _config_refused(self, effects: list[Effect], stderr: list[str]) -> Next:
        """EX_CONFIG: the program rejects its configuration or state; no restart can fix that."""
        last = next((line for line in reversed(stderr) if line.strip()), "")
        reason = f"it rejected its configuration (exit code {Exit.CONFIG:d}){': ' + last if last else ''}"
        cause = HoldCause.CONFIG_REFUSED
        effects.append(MarkLedger(Outcome.REFUSED))
        if self.policy.crashloop_action == CrashLoopAction.HOLD:
            fields = {"exit_code": int(Exit.CONFIG), "stderr_tail": stderr}
            return Next(State.HELD, tuple(effects), reason, cause, retry=False, level="error", fields=fields)
        effects.append(
            self._log(
                "error",
                "gateway_config_refused",
                f"{self.program} {reason}: not restarted; the init exits with {Exit.CONFIG:d}",
                reason=reason,
                stderr_tail=stderr,
                action=CrashLoopAction.EXIT.value,
            )
        )
        effects.append(ExitAction(Exit.CONFIG))
        return Next(State.REFUSED, tuple(effects), reason, cause)

    def _wait(self, effects: list[Effect], line: str, now: float) -> Next:
        """A refusal that passes by itself: started again soon, not counted."""
        # Never longer between two starts than the backoff ever waits.
        step = min(self.lease.retry_s, self.policy.backoff_max_s)
        line = self.redact(line)
        if self.waiting_since is None:
            self.waiting_since = now
            effects.append(
                self._log(
                    "warning",
                    "gateway_waiting_for_lease",
                    f"{self.program} was refused for a cause that passes by itself: started again every "
                    f"{step:g}s, not counted, for at most {self.lease.wait_max_s:g}s",
                    line=line,
                    retry_s=step,
                    wait_max_s=self.lease.wait_max_s,
                    until=log.rfc3339(now + self.lease.wait_max_s),
                )
            )
        return Next(State.WAITING, tuple(effects), delay_s=step, restart_at=now + step, waiting_for=line)

    def _refuse(self, effects: list[Effect], counted: list[dict[str, Any]], stderr: list[str]) -> Next:
        action = self.policy.crashloop_action
        codes = [item["exit_code"] for item in counted]
        window = self.policy.crashloop_window_s
        reason = (
            f"crash loop: {len(counted)} exits within {window:g}s (exit codes {', '.join(map(str, codes))})"
        )
        effects.append(
            self._log(
                "error",
                "crash_loop_refused",
                f"{self.program} exited {len(counted)} times within {window:g}s: "
                f"not restarted (action: {action})",
                exits=counted,
                exit_codes=codes,
                burst=self.policy.crashloop_burst,
                window_s=window,
                action=action,
                stderr_tail=stderr,
            )
        )
        effects.append(MarkLedger(Outcome.REFUSED))
        if action == CrashLoopAction.EXIT:
            effects.append(ExitAction(Exit.CRASH_LOOP))
            return Next(State.REFUSED, tuple(effects), reason, HoldCause.CRASH_LOOP)
        return Next(State.HELD, tuple(effects), reason, HoldCause.CRASH_LOOP)
