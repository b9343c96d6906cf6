"""The crash guard's restart policy: the program's state machine, every transition on this page.

Pure: every input (supervisord's events, the timer, the program's answer about a handoff) takes
`now` and returns the effects to carry out, which the worker (`runtime`) executes. supervisord
alone restarts a program that outlived `startsecs` forever and without delay, gives up only on
start failures and exits 0 whatever happened; so the program runs with `autorestart=false` and the
guard decides. The states are `common/guardstate.State`; `None` is before supervisord's first event.

    STATE            --input-->                                   STATE            decided by
    any              --STARTING (supervisord, operator, guard)--> STARTING         policy
    STARTING         --RUNNING-->                                 RUNNING          policy
    STARTING,RUNNING --EXITED, the init stopping-->               STOPPED          policy
    STARTING,RUNNING --EXITED 0, a handoff contract to ask-->     HANDOFF          policy
    STARTING,RUNNING --EXITED, anything else-->                   BACKOFF|WAITING|HELD|REFUSED
                                                                                   aftermath.judge
    HANDOFF          --answer: accepted-->                        HANDOFF (start)  policy
    HANDOFF          --answer: declined, failed, unsupported-->   as EXITED above  aftermath.judge
    HANDOFF          --answer, the init stopping-->               STOPPED          policy
    BACKOFF,WAITING  --timer-->                                   (start)          policy
    HELD             --timer at retry_at-->                       (start, retrying) policy
    BACKOFF,WAITING,HELD --timer, the init stopping-->            STOPPED          policy
    any              --STOPPED (an operator's or the init's stop)--> STOPPED       policy
    None             --a hold PID 1 wrote before supervisord-->   HELD             runtime (adopts)
    any              --TICK_5: supervisord disagrees twice-->     as its event     policy (reconciles)

`(start)`: the guard asks supervisord to start the program; its STARTING event follows. What an
exit nobody asked for leads to is `aftermath`'s (config refused: HELD at once; a refusal that passes
by itself: WAITING; a crash: BACKOFF, or HELD/REFUSED past the burst; the attempt after a hold:
HELD again). Operators win: their stops never count and are never undone, and a start they make
clears the exit history, the backoff and any hold. Nothing is started once the init is stopping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..common.guardstate import HOLDING, ExitRecord, HoldCause, State, int_or_none, leave_hold_hint
from ..common.ledger import Outcome
from . import lines
from .aftermath import Ended, oom_killed
from .effects import AskHandoff, Cancel, Effect, MarkLedger, Schedule
from .facts import Answer, Handoff, Memory
from .record import Record

# Faults of supervisor.startProcess (supervisor.xmlrpc.Faults) that mean the command itself is
# broken: no process was spawned, so no event will follow and the failure counts here.
START_FAULTS_COUNTED = ("NO_FILE", "NOT_EXECUTABLE")
# States in which the guard itself may have a start on its way (its STARTING event not yet seen).
_STARTED_BY_GUARD = frozenset({State.BACKOFF, State.WAITING, State.HANDOFF})


class Guard(Record):
    """The restart policy: every input returns the effects to carry out."""

    # -- supervisord events ------------------------------------------------------------------------
    def on_starting(self, now: float) -> list[Effect]:
        effects: list[Effect] = []
        requested, self.start_requested = self.start_requested, False
        if requested:
            by = "crash_guard"
        elif self.state is None:
            by = "supervisord"  # autostart at boot
        else:
            by = "operator"
            self.operator_restarts += 1
            if self.state in (*HOLDING, *_STARTED_BY_GUARD) or self.budget.exits:
                effects += [Cancel(), lines.rearmed(self.program, self.state, len(self.budget.exits))]
            self.budget.rearm()
            self.retrying = False
            self.aftermath.forget_wait()
        self.output.new_run()
        self.stopping_since = None
        self._enter(State.STARTING, now)  # any -> STARTING
        return [*effects, lines.starting(self.program, by, self.restarts)]

    def on_running(self, now: float, pid: int | None, started_at: float | None = None) -> list[Effect]:
        """`started_at`: when the process really started, if known (events can arrive late, e.g.
        while the worker is busy with an earlier one); uptimes are measured from it."""
        self._enter(State.RUNNING, now)  # STARTING -> RUNNING
        self.running_since = started_at if started_at is not None and started_at <= now else now
        self.pid = pid
        effects: list[Effect] = [
            lines.line(
                self.program,
                "info",
                "gateway_running",
                f"{self.program} is running",
                pid=pid,
                restarts=self.restarts,
            )
        ]
        if self.ledger_outcome != Outcome.READY:
            self.ledger_outcome = Outcome.READY
            effects.append(MarkLedger(Outcome.READY))
        return effects

    def on_exited(
        self,
        now: float,
        exit_code: int | None,
        *,
        stopping: bool,
        uptime_s: float | None = None,
        pid: int | None = None,
        spawn_error: str | None = None,
        memory: Memory | None = None,
    ) -> list[Effect]:
        if self.running_since is not None:  # measured here, finer than supervisord's whole seconds
            uptime_s = max(0.0, now - self.running_since)
        self.output.flush()
        oom = oom_killed(exit_code, self.oom_kills_seen, memory)
        ended = Ended(ExitRecord(now, exit_code, uptime_s), pid or self.pid, self.output.matched, oom)
        self.last_exit_code = exit_code
        if oom is not None:
            self.oom_kills += 1
        if memory is not None and memory.oom_kills is not None:
            self.oom_kills_seen = memory.oom_kills  # the next run's kills are counted from here
        # The program writes a restart handoff before a clean exit, and only then.
        asks = exit_code == 0 and bool(ended.pid) and self.handoffs and self.capable is not False
        # Warned only when it already is a crash: what follows a question or a wait says the rest.
        level = "info" if stopping or asks or self.aftermath.waits(ended, now) else "warning"
        uptime = None if uptime_s is None else round(uptime_s, 3)
        said = {"expected": stopping, "uptime_s": uptime, "pid": ended.pid}
        effects: list[Effect] = [
            lines.exited(
                self.program,
                level,
                now,
                exit_code,
                **said,
                **({"spawn_error": spawn_error} if spawn_error else {}),
            )
        ]
        self.pid = None
        self.stopping_since = None
        if stopping:  # STARTING, RUNNING -> STOPPED
            return effects + self._stopped_by_init(
                now, f"{self.program} stopped while the init is stopping; not restarted"
            )
        if asks and ended.pid:
            self._enter(State.HANDOFF, now)  # STARTING, RUNNING -> HANDOFF
            self.pending = ended
            self.pid = ended.pid
            return [*effects, Cancel(), AskHandoff(ended.pid, probe=self.capable is None)]
        return effects + self._unrequested(ended, now)

    def on_handoff(self, now: float, answer: Handoff, *, stopping: bool) -> list[Effect]:
        """The program's CLI answered about the exit it was asked about."""
        effects: list[Effect] = []
        if answer.capable is not None:
            self.capable = answer.capable
            effects.append(lines.capabilities(self.program, answer.capable))
        ended = self.pending
        if self.state != State.HANDOFF or ended is None or ended.pid != answer.pid:
            return effects  # an operator acted meanwhile: their action stands
        self.pid = None
        if stopping:  # HANDOFF -> STOPPED
            return effects + self._stopped_by_init(
                now, f"{self.program} is not restarted: the init is stopping"
            )
        if answer.answer == Answer.ACCEPTED:  # HANDOFF -> (start), not counted
            self.pending = None  # answered; HANDOFF until the start it asks for is seen
            self.aftermath.forget_wait()
            said = lines.restart_requested(self.program, answer, self.requested_restarts + 1)
            return [*effects, said, *self._start(requested=True)]
        if answer.answer == Answer.FAILED:
            # No answer is no request. The contract asks a supervisor that cannot tell to exit so
            # that the process manager's recovery policy runs; here the guard is that recovery
            # policy: the exit is treated as unexpected (backoff, counted, refusal, hold or exit).
            effects.append(lines.handoff_failed(self.program, answer, self.redact(answer.detail)))
        else:
            effects.append(lines.handoff_declined(self.program, answer))
        return effects + self._unrequested(ended, now)

    def _unrequested(self, ended: Ended, now: float) -> list[Effect]:
        """An exit nobody asked for: `aftermath` judges what it means, the state follows."""
        after = self.aftermath.judge(
            ended, now, retrying=self.retrying, stderr=self.redact.lines(self.output.stderr)
        )
        effects = list(after.effects)
        if after.state in HOLDING:
            self.ledger_outcome = Outcome.REFUSED
        if after.state == State.HELD:  # -> HELD
            return effects + self.hold(
                after.reason or "", after.cause, now, retry=after.retry, level=after.level, **after.fields
            )
        self._enter(after.state, now)  # -> BACKOFF, WAITING, REFUSED
        self.held_reason, self.held_cause = after.reason, after.cause
        self.delay_s, self.restart_at, self.waiting_for = after.delay_s, after.restart_at, after.waiting_for
        return [*effects, Cancel() if after.restart_at is None else Schedule(after.restart_at)]

    def hold(
        self,
        reason: str,
        cause: HoldCause | None,
        now: float,
        *,
        retry: bool = True,
        level: str = "warning",
        how_to_leave: str | None = None,
        **fields: Any,
    ) -> list[Effect]:
        """Hold the program: by a refusal, the boot ledger, or a configuration it rejects. A hold
        for a cause that may pass (`retry`) is tried once more after the cool-down."""
        self._enter(State.HELD, now)  # -> HELD
        self.held_reason, self.held_cause = reason, cause
        self.how_to_leave = how_to_leave
        self.pid = None
        self.retrying = False
        cool_down = self.policy.hold_retry_s if retry else 0.0
        self.retry_at = now + cool_down if cool_down > 0 else None
        hint = how_to_leave or leave_hold_hint(self.program)
        said = lines.held(self.program, level, reason, cause, hint, self.retry_at, **fields)
        return [Cancel() if self.retry_at is None else Schedule(self.retry_at), said]

    def on_stopping(self, now: float, *, stopping: bool) -> list[Effect]:
        """supervisord sent the stop signal; it kills the program at the end of its stop timeout."""
        self.stopping_since = now
        clocks = self.policy.stop_clocks
        said = lines.stopping(
            self.program, "init" if stopping else "operator", self.pid, clocks.supervisord_s
        )
        return [said, Schedule(now + clocks.guard_warns_s)]

    def on_stopped(self, now: float, *, stopping: bool) -> list[Effect]:
        self._enter(State.STOPPED, now)  # any -> STOPPED
        self.pid = None
        self.stopping_since = None
        self.retrying = False
        self.aftermath.forget_wait()
        message = f"{self.program} stopped; it is not restarted until started again"
        return [Cancel(), lines.stopped(self.program, message, "init" if stopping else "operator")]

    def _stopped_by_init(self, now: float, message: str) -> list[Effect]:
        self._enter(State.STOPPED, now)  # -> STOPPED: the init is stopping, nothing starts again
        return [Cancel(), lines.stopped(self.program, message, "init")]

    def on_output(self, stream: str, data: str) -> None:
        self.output.feed(stream, data)

    # -- the guard's own timer ---------------------------------------------------------------------
    def on_timer(self, now: float, *, stopping: bool) -> list[Effect]:
        """The timer fired: the stop timeout is about to run out, or a start is due."""
        if self.stopping_since is not None:
            return self._stop_timeout(now)
        retry = self.state == State.HELD
        due = self.retry_at if retry else self.restart_at  # each is set only in its own states
        if due is None or now < due - 0.01:  # nothing due (a timer outlived its purpose)
            return []
        if stopping:  # BACKOFF, WAITING, HELD -> STOPPED
            return self._stopped_by_init(now, f"{self.program} is not restarted: the init is stopping")
        effects: list[Effect] = []
        if retry:  # HELD -> (start), the one attempt after the cool-down
            reset_s = self.policy.backoff_reset_s
            effects.append(
                lines.hold_retry(self.program, self.held_reason, self.policy.hold_retry_s, reset_s)
            )
            self.budget.rearm()
            self.retrying = True
            self.aftermath.forget_wait()
        return effects + self._start()  # BACKOFF, WAITING -> (start)

    def _stop_timeout(self, now: float) -> list[Effect]:
        started, self.stopping_since = self.stopping_since or now, None
        if self.state not in (State.STARTING, State.RUNNING):
            return []
        tail = self.redact.lines(self.output.last())
        timeout_s = self.policy.stop_clocks.supervisord_s
        return [lines.stop_timeout(self.program, self.pid, timeout_s, now - started, tail)]

    def on_start_failed(self, now: float, fault: str, detail: str, *, stopping: bool) -> list[Effect]:
        """startProcess answered with a fault: a broken command counts as an exit."""
        self.start_requested = False
        if fault in START_FAULTS_COUNTED:
            return self.on_exited(
                now, None, stopping=stopping, uptime_s=0.0, spawn_error=f"{fault}: {detail}"
            )
        if fault == "ALREADY_STARTED":
            return []
        # SPAWN_ERROR: supervisord already reported STARTING -> BACKOFF, which counted.
        # Anything else (supervisord shutting down, not answering): say so; TICK reconciles.
        return [lines.start_failed(self.program, fault, detail)]

    def on_tick(self, now: float, info: Mapping[str, Any] | None, *, stopping: bool) -> list[Effect]:
        """Every 5 s: earn the backoff reset, and reconcile with what supervisord reports.

        A mismatch is acted on only when it is seen on two ticks in a row with the same process
        figures, so an event still on its way is never counted twice.
        """
        effects = self._on_up(now)
        if info is None:
            return effects
        observed = str(info.get("statename", "")).upper()
        alive = observed in ("STARTING", "RUNNING", "STOPPING")
        thinks_alive = self.state in (None, State.STARTING, State.RUNNING)
        key: tuple[str, Any] | None = None
        if thinks_alive and not alive and observed in ("EXITED", "FATAL", "BACKOFF", "STOPPED"):
            key = ("dead", (observed, info.get("stop")))
        elif not thinks_alive and self.state not in _STARTED_BY_GUARD and observed == "RUNNING":
            key = ("alive", info.get("pid"))
        if key is None or key != self._mismatch:
            self._mismatch = key
            return effects
        self._mismatch = None
        if key[0] == "alive":
            return [*effects, *self.on_running(now, int_or_none(info.get("pid")))]
        if observed == "STOPPED":
            return [*effects, *self.on_stopped(now, stopping=stopping)]
        exit_code = int_or_none(info.get("exitstatus")) if observed == "EXITED" else None
        spawn_error = str(info.get("spawnerr") or "") or None
        return [*effects, *self.on_exited(now, exit_code, stopping=stopping, spawn_error=spawn_error)]

    def _on_up(self, now: float) -> list[Effect]:
        """Staying up `backoff_reset_s` resets the backoff, and ends the attempt after a hold."""
        if self.state != State.RUNNING or self.running_since is None:
            return []
        reset_s = self.policy.backoff_reset_s
        effects: list[Effect] = []
        if self.retrying and now - self.running_since >= reset_s:
            self.retrying = False
            effects.append(lines.recovered(self.program, reset_s))
        if self.budget.on_up(self.running_since, now):
            effects.append(lines.backoff_reset(self.program, reset_s))
        return effects
