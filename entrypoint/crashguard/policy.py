"""The crash guard's restart policy: the program's state machine, driven by supervisord's events.

Who runs it: the crash guard's worker (`runtime.py`), inside supervisord's process, as a thread,
as the target user, once supervisord is up. Pure: every input takes `now` and returns the effects
to carry out (log lines, the timer, starts, questions to the program's CLI, the boot ledger, the
exit action), which the worker executes. What it keeps is `record.py`, what
an exit nobody asked for leads to `exits.py`, the backoff's arithmetic `budget.py`, the program's
last lines `output.py`.

supervisord alone restarts a program that outlived `startsecs` forever and without delay, gives up
only on start failures, and exits 0 whatever happened. So the program runs with `autorestart=false`
and the guard decides instead, for every exit while the init is not stopping:

- a clean exit is first put to the program (`HANDOFF`): a restart it asked for (its restart-handoff
  contract) starts it again at once, never counted;
- an exit with EX_CONFIG (78) holds at once, with the program's own reason; with the `exit` action
  the init exits with 78;
- a refusal to start that passes by itself (another owner's lease) is waited out (`WAITING`),
  not counted, for a bounded time;
- every other exit counts: the next start waits `backoff_initial_s`, doubling, capped at
  `backoff_max_s`, back to the initial delay once the program stayed up `backoff_reset_s`; the
  `crashloop_burst`-th exit within `crashloop_window_s` is refused: `hold` keeps the container up
  with the program stopped, `exit` ends the init with 75;
- a hold for a crash loop is tried once more after `hold_retry_s`: an unexpected exit within
  `backoff_reset_s` of that start holds again at once.

Operators win: their stops never count and are never undone (`supervisorctl stop` during a backoff
moves the program to STOPPED, see `pid1/rpcinterface.py`), a start they make clears the exit
history, the backoff and any hold. Nothing is started once the init is stopping.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..common import log
from ..common.guardstate import HOLDING, ExitRecord, State, int_or_none
from ..common.ledger import Outcome
from .effects import AskHandoff, Cancel, Effect, MarkLedger, Schedule
from .exits import Ended, oom_killed
from .facts import Answer, Handoff, Memory
from .record import Record

# Faults of supervisor.startProcess (supervisor.xmlrpc.Faults) that mean the command itself is
# broken: no process was spawned, so no event will follow and the failure counts here.
START_FAULTS_COUNTED = ("NO_FILE", "NOT_EXECUTABLE")
# The stop-timeout line is written this long before supervisord's SIGKILL: it says what the program
# was still doing, and once the program is gone supervisord's process ends soon after.
STOP_TIMEOUT_LEAD_S = 0.5
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
            if self.state in (*HOLDING, *_STARTED_BY_GUARD) or self.budget.exits:
                effects.append(Cancel())
                effects.append(
                    self._log(
                        "info",
                        "crash_guard_rearmed",
                        f"{self.program} was started by an operator: exit history, backoff and hold cleared",
                        previous_state=self.state,
                        exits_cleared=len(self.budget.exits),
                    )
                )
            self.budget.rearm()
            self.retrying = False
            self.aftermath.forget_wait()
        self.output.new_run()
        self.stopping_since = None
        self._enter(State.STARTING, now)
        effects.append(
            self._log(
                "info",
                "gateway_starting",
                f"{self.program} is starting",
                requested_by=by,
                restarts=self.restarts,
            )
        )
        return effects

    def on_running(self, now: float, pid: int | None, started_at: float | None = None) -> list[Effect]:
        """`started_at`: when the process really started, if known (events can arrive late, e.g.
        while the worker is busy with an earlier one); uptimes are measured from it."""
        self._enter(State.RUNNING, now)
        self.running_since = started_at if started_at is not None and started_at <= now else now
        self.pid = pid
        effects: list[Effect] = [
            self._log(
                "info", "gateway_running", f"{self.program} is running", pid=pid, restarts=self.restarts
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
        ended = Ended(
            ExitRecord(now, exit_code, uptime_s),
            pid or self.pid,
            self.output.matched,
            oom_killed(exit_code, self.oom_kills_seen, memory),
        )
        if memory is not None and memory.oom_kills is not None:
            self.oom_kills_seen = memory.oom_kills  # the next run's kills are counted from here
        fields: dict[str, Any] = {
            "exited_at": log.rfc3339(now),  # when supervisord reported it (the line may come later)
            "exit_code": exit_code,
            "expected": stopping,
            "uptime_s": None if uptime_s is None else round(uptime_s, 3),
            "pid": ended.pid,
        }
        if spawn_error:
            fields["spawn_error"] = spawn_error
        what = f"could not be started ({spawn_error})" if spawn_error else f"exited with code {exit_code}"
        # The program writes a restart handoff before a clean exit, and only then.
        asks = exit_code == 0 and bool(ended.pid) and self.handoffs and self.capable is not False
        # Warned only when it already is a crash: what follows a question or a wait says the rest.
        level = "info" if stopping or asks or self.aftermath.waits(ended, now) else "warning"
        effects: list[Effect] = [self._log(level, "gateway_exited", f"{self.program} {what}", **fields)]
        self.pid = None
        self.stopping_since = None
        if stopping:
            return effects + self._stopped_by_init(
                now, f"{self.program} stopped while the init is stopping; not restarted"
            )
        if asks and ended.pid:
            self._enter(State.HANDOFF, now)
            self.pending = ended
            self.pid = ended.pid
            return [*effects, Cancel(), AskHandoff(ended.pid, probe=self.capable is None)]
        return effects + self._unrequested(ended, now)

    def on_handoff(self, now: float, answer: Handoff, *, stopping: bool) -> list[Effect]:
        """The program's CLI answered about the exit it was asked about."""
        effects: list[Effect] = []
        if answer.capable is not None:
            self.capable = answer.capable
            offers = "offers" if answer.capable else "does not offer"
            effects.append(
                self._log(
                    "info",
                    "restart_handoff_capabilities",
                    f"the CLI of {self.program} {offers} restart handoffs (kept for this image)",
                    capable=answer.capable,
                )
            )
        ended = self.pending
        if self.state != State.HANDOFF or ended is None or ended.pid != answer.pid:
            return effects  # an operator acted meanwhile: their action stands
        self.pid = None
        if stopping:
            return effects + self._stopped_by_init(
                now, f"{self.program} is not restarted: the init is stopping"
            )
        if answer.answer == Answer.ACCEPTED:
            self.pending = None  # answered; HANDOFF until the start it asks for is seen
            self.aftermath.forget_wait()
            return [
                *effects,
                self._log(
                    "info",
                    "gateway_restart_requested",
                    f"{self.program} asked for this restart ({answer.reason or 'no reason given'}, "
                    f"from {answer.source or 'an unknown source'}): started again at once, not counted",
                    reason=answer.reason,
                    source=answer.source,
                    restart_kind=answer.restart_kind,
                    pid=answer.pid,
                    requested_restarts=self.requested_restarts + 1,
                ),
                *self._start(requested=True),
            ]
        if answer.answer == Answer.FAILED:
            # No answer is no request. The contract asks a supervisor that cannot tell to exit so
            # that the process manager's recovery policy runs; here the guard is that recovery
            # policy: the exit is treated as unexpected (backoff, counted, refusal, hold or exit).
            effects.append(
                self._log(
                    "warning",
                    "restart_handoff_failed",
                    f"could not ask {self.program} whether it requested this restart "
                    f"({self.redact(answer.detail)}): treated as an unexpected exit",
                    detail=self.redact(answer.detail),
                    pid=answer.pid,
                )
            )
        else:
            effects.append(
                self._log(
                    "info",
                    "restart_handoff_declined",
                    f"{self.program} did not ask for this restart ({answer.detail})",
                    answer=answer.answer,
                    detail=answer.detail,
                    pid=answer.pid,
                )
            )
        return effects + self._unrequested(ended, now)

    def _unrequested(self, ended: Ended, now: float) -> list[Effect]:
        """An exit nobody asked for: what it means decides what comes next."""
        after = self.aftermath.judge(
            ended, now, retrying=self.retrying, stderr=self.redact.lines(self.output.stderr)
        )
        effects = list(after.effects)
        if after.state in HOLDING:
            self.ledger_outcome = Outcome.REFUSED
        if after.state == State.HELD:
            return effects + self.hold(
                after.reason or "", now, retry=after.retry, level=after.level, **after.fields
            )
        self._enter(after.state, now)
        self.held_reason = after.reason
        self.delay_s, self.restart_at, self.waiting_for = after.delay_s, after.restart_at, after.waiting_for
        return [*effects, Cancel() if after.restart_at is None else Schedule(after.restart_at)]

    def on_stopping(self, now: float, *, stopping: bool) -> list[Effect]:
        """supervisord sent the stop signal; it kills the program `stop_wait_s` later."""
        self.stopping_since = now
        return [
            self._log(
                "info",
                "gateway_stopping",
                f"{self.program} is being stopped",
                requested_by="init" if stopping else "operator",
                pid=self.pid,
                stop_timeout_s=self.policy.stop_wait_s,
            ),
            Schedule(now + max(0.0, self.policy.stop_wait_s - STOP_TIMEOUT_LEAD_S)),
        ]

    def on_stopped(self, now: float, *, stopping: bool) -> list[Effect]:
        self._enter(State.STOPPED, now)
        self.pid = None
        self.stopping_since = None
        self.retrying = False
        self.aftermath.forget_wait()
        return [
            Cancel(),
            self._log(
                "info",
                "gateway_stopped",
                f"{self.program} stopped; it is not restarted until started again",
                requested_by="init" if stopping else "operator",
            ),
        ]

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
        if stopping:
            return self._stopped_by_init(now, f"{self.program} is not restarted: the init is stopping")
        effects: list[Effect] = []
        if retry:
            effects.append(
                self._log(
                    "warning",
                    "gateway_hold_retry",
                    f"{self.program} was held {self.policy.hold_retry_s:g}s ago ({self.held_reason}): "
                    "trying once more; an exit within "
                    f"{self.policy.backoff_reset_s:g}s holds it again",
                    held_reason=self.held_reason,
                    cool_down_s=self.policy.hold_retry_s,
                )
            )
            self.budget.rearm()
            self.retrying = True
            self.aftermath.forget_wait()
        return effects + self._start()

    def _stop_timeout(self, now: float) -> list[Effect]:
        started, self.stopping_since = self.stopping_since or now, None
        if self.state not in (State.STARTING, State.RUNNING):
            return []
        tail = self.redact.lines(self.output.last())
        return [
            self._log(
                "error",
                "gateway_stop_timeout",
                f"{self.program} did not stop within its stop timeout ({self.policy.stop_wait_s}s): "
                "supervisord kills it (SIGKILL); what it was still doing is in output_tail",
                pid=self.pid,
                stop_timeout_s=self.policy.stop_wait_s,
                stopping_for_s=round(now - started, 3),
                output_tail=tail,
            )
        ]

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
        return [
            self._log(
                "warning",
                "gateway_start_failed",
                f"supervisord did not start {self.program}: {fault} {detail}",
                fault=fault,
                detail=detail,
            )
        ]

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
        up_long = now - self.running_since >= self.policy.backoff_reset_s
        effects: list[Effect] = []
        if self.retrying and up_long:
            self.retrying = False
            up = f"{self.program} stayed up {self.policy.backoff_reset_s:g}s after the attempt that followed"
            effects.append(
                self._log("info", "gateway_recovered", f"{up} its hold: its exits count as usual again")
            )
        if self.budget.on_up(self.running_since, now):
            effects.append(
                self._log(
                    "info",
                    "gateway_backoff_reset",
                    f"{self.program} stayed up {self.policy.backoff_reset_s:g}s: backoff reset",
                )
            )
        return effects
