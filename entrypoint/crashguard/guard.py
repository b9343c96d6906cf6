"""The crash guard: the program's restart policy, as a supervisord event listener.

supervisord alone restarts a program that outlived `startsecs` forever and without delay, gives up
only on start failures, and exits 0 whatever happened. So the program runs with `autorestart=false`
and this listener (the init itself, `<init> crashguard`) decides instead:

- every unexpected exit (any exit code, any run length; a spawn failure counts too) is recorded;
- the next start waits `backoff_initial_s`, doubling each time, capped at `backoff_max_s`; the delay
  goes back to the initial one once the program has stayed up `backoff_reset_s`;
- the `crashloop_burst`-th exit within `crashloop_window_s` is refused: the program is not started
  again, one `crash_loop_refused` line names the exits that counted and the last stderr lines, then
  the action applies: `hold` (the container stays up, health fails, an operator's
  `supervisorctl start <program>` re-arms the policy) or `exit` (`RUN/exit-code` gets
  `EXIT_CRASH_LOOP` and supervisord is asked to shut down; the init exits with that code);
- stops asked for by an operator (`supervisorctl stop/restart`: STOPPING -> STOPPED) never count,
  and nothing is restarted once the init is stopping (`RUN/stopping` exists);
- a STARTING that the guard did not ask for is an operator's start: it clears the exit history,
  the backoff and any hold.

Layout: `backoff_delay` and `RestartBudget` are the arithmetic, `Guard` the state machine; both
take `now` explicitly and return data (`Effect`s), so they are unit-tested without sleeping.
`Runtime` executes the effects in one worker thread (XML-RPC, files, the restart timer), and
`main` is the event loop: it reads an event, hands it to the worker and acknowledges at once, so
supervisord never waits on the guard.

Files shared in the run dir: `crashguard.json` (written atomically after every change, read by
`health`, `status` and the sd_notify loop), `stopping` (created by the init), `exit-code`.
"""

from __future__ import annotations

import collections
import io
import os
import queue
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..common import ledger, log, rundir
from ..common.plans import RestartPolicy

# EX_TEMPFAIL (sysexits.h): "a temporary failure; the user is invited to retry later". The program
# was refused, not misconfigured (that is 78, EX_CONFIG): an orchestrator that restarts on failure
# will try again, and the boot ledger holds the next boot if it keeps failing. It cannot be mistaken
# for a signal (128+N), a missing (127) or non-executable (126) command, or a clean stop (0).
EXIT_CRASH_LOOP = rundir.CRASH_LOOP_EXIT_CODE

STDERR_TAIL_LINES = 20
_STDERR_LINE_MAX = 500  # characters kept of one stderr line
# The init writes a boot's `held` state just before it starts supervisord: older is from another boot.
_HELD_STATE_MAX_AGE_S = 60.0

STARTING = "starting"
RUNNING = "running"
BACKOFF = "backoff"
HELD = "held"
REFUSED = "refused"
STOPPED = "stopped"
STATES = (STARTING, RUNNING, BACKOFF, HELD, REFUSED, STOPPED)

_logger = log.get("crashguard")


def leave_hold_hint(program: str) -> str:
    return f"fix the cause, then run `supervisorctl start {program}` (or restart the container)"


# --------------------------------------------------------------------------------------------------
# The arithmetic


def backoff_delay(policy: RestartPolicy, attempt: int) -> float:
    """The delay before restart number `attempt` (0-based) since the last reset."""
    if attempt >= 64:  # 2**64 times any positive delay is past every cap
        return policy.backoff_max_s
    return min(policy.backoff_initial_s * (2**attempt), policy.backoff_max_s)


@dataclass(frozen=True)
class ExitRecord:
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


# --------------------------------------------------------------------------------------------------
# The state machine


@dataclass(frozen=True)
class Log:
    level: str
    event: str
    message: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Schedule:
    at: float


@dataclass(frozen=True)
class Cancel:
    pass


@dataclass(frozen=True)
class MarkLedger:
    outcome: str


@dataclass(frozen=True)
class ExitAction:
    code: int


Effect = Log | Schedule | Cancel | MarkLedger | ExitAction

# Faults of supervisor.startProcess (supervisor.xmlrpc.Faults) that mean the command itself is
# broken: no process was spawned, so no event will follow and the failure counts here.
START_FAULTS_COUNTED = ("NO_FILE", "NOT_EXECUTABLE")


class Guard:
    """The program's state as the guard sees it; every input returns the effects to carry out."""

    def __init__(self, program: str, policy: RestartPolicy, now: float) -> None:
        self.program = program
        self.policy = policy
        self.budget = RestartBudget(policy)
        self.state: str | None = None  # None: nothing seen yet (supervisord is starting it)
        self.since = now
        self.pid: int | None = None
        self.running_since: float | None = None
        self.restarts = 0
        self.delay_s: float | None = None
        self.restart_at: float | None = None
        self.held_reason: str | None = None
        self.start_requested = False
        self.ledger_outcome: str | None = None
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._partial = ""
        self._mismatch: tuple[str, Any] | None = None

    # -- helpers -----------------------------------------------------------------------------------
    def _enter(self, state: str, now: float) -> None:
        if state != self.state:
            self.since = now
        self.state = state
        if state != BACKOFF:
            self.delay_s = None
            self.restart_at = None
        if state not in (HELD, REFUSED):
            self.held_reason = None
        if state != RUNNING:
            self.running_since = None

    def _log(self, level: str, event: str, message: str, **fields: Any) -> Log:
        return Log(level, event, message, {"program": self.program, **fields})

    def hold(self, reason: str, now: float) -> list[Effect]:
        """Adopt a hold decided elsewhere (the init's boot ledger) or by a refusal."""
        self._enter(HELD, now)
        self.held_reason = reason
        self.pid = None
        return [
            Cancel(),
            self._log(
                "warning",
                "gateway_held",
                f"{self.program} is held and will not be started: {reason}; {leave_hold_hint(self.program)}",
                reason=reason,
                how_to_leave=leave_hold_hint(self.program),
            ),
        ]

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
            if self.state in (HELD, REFUSED, BACKOFF) or self.budget.exits:
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
        self._enter(STARTING, now)
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
        while the listener itself is still starting); uptimes are measured from it."""
        self._enter(RUNNING, now)
        self.running_since = started_at if started_at is not None and started_at <= now else now
        self.pid = pid
        effects: list[Effect] = [
            self._log(
                "info", "gateway_running", f"{self.program} is running", pid=pid, restarts=self.restarts
            )
        ]
        if self.ledger_outcome != "ready":
            self.ledger_outcome = "ready"
            effects.append(MarkLedger("ready"))
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
    ) -> list[Effect]:
        if self.running_since is not None:  # measured here, finer than supervisord's whole seconds
            uptime_s = max(0.0, now - self.running_since)
        self._flush_partial()
        fields: dict[str, Any] = {
            "exited_at": log.rfc3339(now),  # when supervisord reported it (the line may come later)
            "exit_code": exit_code,
            "expected": stopping,
            "uptime_s": None if uptime_s is None else round(uptime_s, 3),
            "pid": pid or self.pid,
        }
        if spawn_error:
            fields["spawn_error"] = spawn_error
        what = f"could not be started ({spawn_error})" if spawn_error else f"exited with code {exit_code}"
        effects: list[Effect] = [
            self._log("info" if stopping else "warning", "gateway_exited", f"{self.program} {what}", **fields)
        ]
        self.pid = None
        if stopping:
            self._enter(STOPPED, now)
            effects.append(Cancel())
            effects.append(
                self._log(
                    "info",
                    "gateway_stopped",
                    f"{self.program} stopped while the init is stopping; not restarted",
                    requested_by="init",
                )
            )
            return effects
        verdict = self.budget.on_exit(ExitRecord(now, exit_code, uptime_s))
        if verdict.refuse:
            return effects + self._refuse(now, verdict)
        self._enter(BACKOFF, now)
        self.delay_s = verdict.delay_s
        self.restart_at = verdict.restart_at
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
        effects.append(Schedule(verdict.restart_at or now))
        return effects

    def _refuse(self, now: float, verdict: Verdict) -> list[Effect]:
        action = self.policy.crashloop_action
        exits = [record.to_dict() for record in verdict.counted]
        reason = (
            f"crash loop: {len(exits)} exits within {self.policy.crashloop_window_s:g}s "
            f"(exit codes {', '.join(str(record.exit_code) for record in verdict.counted)})"
        )
        self._enter(REFUSED, now)
        self.held_reason = reason
        effects: list[Effect] = [
            Cancel(),
            self._log(
                "error",
                "crash_loop_refused",
                f"{self.program} exited {len(exits)} times within {self.policy.crashloop_window_s:g}s: "
                f"not restarted (action: {action})",
                exits=exits,
                exit_codes=[record.exit_code for record in verdict.counted],
                burst=self.policy.crashloop_burst,
                window_s=self.policy.crashloop_window_s,
                action=action,
                stderr_tail=list(self.stderr_tail),
            ),
            MarkLedger("refused"),
        ]
        self.ledger_outcome = "refused"
        if action == "exit":
            effects.append(ExitAction(EXIT_CRASH_LOOP))
        else:
            effects.extend(self.hold(reason, now))
        return effects

    def on_stopping(self, now: float, *, stopping: bool) -> list[Effect]:
        return [
            self._log(
                "info",
                "gateway_stopping",
                f"{self.program} is being stopped",
                requested_by="init" if stopping else "operator",
                pid=self.pid,
            )
        ]

    def on_stopped(self, now: float, *, stopping: bool) -> list[Effect]:
        self._enter(STOPPED, now)
        self.pid = None
        return [
            Cancel(),
            self._log(
                "info",
                "gateway_stopped",
                f"{self.program} stopped; it is not restarted until started again",
                requested_by="init" if stopping else "operator",
            ),
        ]

    def on_stderr(self, data: str) -> None:
        text = self._partial + data
        *lines, self._partial = text.split("\n")
        for line in lines:
            self.stderr_tail.append(line.rstrip("\r")[:_STDERR_LINE_MAX])
        if len(self._partial) > _STDERR_LINE_MAX * 4:  # a run-away line without newline
            self._flush_partial()

    def _flush_partial(self) -> None:
        if self._partial:
            self.stderr_tail.append(self._partial[:_STDERR_LINE_MAX])
            self._partial = ""

    # -- the guard's own actions -------------------------------------------------------------------
    def start_due(self, now: float, *, stopping: bool) -> tuple[bool, list[Effect]]:
        """The backoff timer fired: start now (True), or not at all when the init is stopping."""
        if self.state != BACKOFF:
            return False, []
        if stopping:
            self._enter(STOPPED, now)
            return False, [
                self._log(
                    "info",
                    "gateway_stopped",
                    f"{self.program} is not restarted: the init is stopping",
                    requested_by="init",
                )
            ]
        self.start_requested = True
        self.restarts += 1
        return True, []

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
        effects: list[Effect] = []
        if (
            self.state == RUNNING
            and self.running_since is not None
            and self.budget.on_up(self.running_since, now)
        ):
            effects.append(
                self._log(
                    "info",
                    "gateway_backoff_reset",
                    f"{self.program} stayed up {self.policy.backoff_reset_s:g}s: backoff reset",
                )
            )
        if info is None:
            return effects
        observed = str(info.get("statename", "")).upper()
        alive = observed in ("STARTING", "RUNNING", "STOPPING")
        thinks_alive = self.state in (None, STARTING, RUNNING)
        key: tuple[str, Any] | None = None
        if thinks_alive and not alive and observed in ("EXITED", "FATAL", "BACKOFF", "STOPPED"):
            key = ("dead", (observed, info.get("stop")))
        elif not thinks_alive and self.state != BACKOFF and observed == "RUNNING":
            key = ("alive", info.get("pid"))
        if key is None or key != self._mismatch:
            self._mismatch = key
            return effects
        self._mismatch = None
        if key[0] == "alive":
            return [*effects, *self.on_running(now, _int_or_none(info.get("pid")))]
        if observed == "STOPPED":
            return [*effects, *self.on_stopped(now, stopping=stopping)]
        exit_code = _int_or_none(info.get("exitstatus")) if observed == "EXITED" else None
        return [
            *effects,
            *self.on_exited(
                now,
                exit_code,
                stopping=stopping,
                spawn_error=str(info.get("spawnerr") or "") or None,
            ),
        ]

    # -- persistence ------------------------------------------------------------------------------
    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "program": self.program,
            "state": self.state or STARTING,
            "since": round(self.since, 3),
            "since_at": log.rfc3339(self.since),
            "pid": self.pid,
            "running_since": None if self.running_since is None else round(self.running_since, 3),
            "restarts": self.restarts,
            "backoff_attempt": self.budget.attempt,
            "delay_s": self.delay_s,
            "restart_at": None if self.restart_at is None else round(self.restart_at, 3),
            "exits": [record.to_dict() for record in self.budget.recent(now)],
            "held_reason": self.held_reason,
            "burst": self.policy.crashloop_burst,
            "window_s": self.policy.crashloop_window_s,
            "action": self.policy.crashloop_action,
            "updated": round(now, 3),
        }

    def restore(self, saved: Mapping[str, Any], now: float) -> list[Effect]:
        """Take over from a previous guard under the same supervisord (the listener restarted)."""
        self.restarts = _int_or_none(saved.get("restarts")) or 0
        self.budget.attempt = _int_or_none(saved.get("backoff_attempt")) or 0
        for item in saved.get("exits") or []:
            epoch = item.get("epoch") if isinstance(item, Mapping) else None
            if isinstance(epoch, int | float):
                self.budget.exits.append(
                    ExitRecord(float(epoch), _int_or_none(item.get("exit_code")), item.get("uptime_s"))
                )
        state = saved.get("state")
        if state == HELD:
            return self.hold(str(saved.get("held_reason") or "held"), now)
        if state == REFUSED:
            self._enter(REFUSED, now)
            self.held_reason = saved.get("held_reason")
            return []
        if state == BACKOFF and isinstance(saved.get("restart_at"), int | float):
            self._enter(BACKOFF, now)
            self.delay_s = saved.get("delay_s")
            self.restart_at = float(saved["restart_at"])
            return [Schedule(self.restart_at)]
        if state in (RUNNING, STARTING, STOPPED):
            self._enter(state, now)
            self.pid = _int_or_none(saved.get("pid"))
            if state == RUNNING:
                self.running_since = saved.get("running_since") or now
        return []


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------------
# Files in the run dir


# --------------------------------------------------------------------------------------------------
# The runtime: one worker thread does all I/O


@dataclass(frozen=True)
class Event:
    name: str  # supervisord's event name, e.g. PROCESS_STATE_EXITED
    headers: Mapping[str, str]
    data: str
    now: float


def parse_tokens(line: str) -> dict[str, str]:
    """`key:value key:value` (a value may itself contain ':')."""
    pairs = (token.split(":", 1) for token in line.split())
    return {pair[0]: pair[1] for pair in pairs if len(pair) == 2}


def parse_event(headers: Mapping[str, str], payload: str, now: float) -> Event:
    name = headers.get("eventname", "")
    if name.startswith("PROCESS_LOG") or name.startswith("PROCESS_COMMUNICATION"):
        head, _, data = payload.partition("\n")
        return Event(name, parse_tokens(head), data, now)
    return Event(name, parse_tokens(payload), "", now)


class Runtime:
    """Runs the Guard: consumes events in order, owns the restart timer, talks to supervisord."""

    def __init__(
        self,
        run_dir: str,
        program: str,
        policy: RestartPolicy,
        ledger_path: str,
        rpc_factory: Callable[[], Any],
        *,
        clock: Callable[[], float] = time.time,
        supervisord_started: float | None = None,
        supervisord_pid: int | None = None,
    ) -> None:
        self.run_dir = run_dir
        self.program = program
        self.policy = policy
        self.ledger_path = ledger_path
        self.rpc_factory = rpc_factory
        self.clock = clock
        self.supervisord_started = supervisord_started
        self.supervisord_pid = supervisord_pid
        self.guard = Guard(program, policy, clock())
        self.inbox: queue.Queue[Event | None] = queue.Queue()
        self.timer_at: float | None = None
        self._rpc: Any = None
        self._written: dict[str, Any] | None = None
        self.thread = threading.Thread(target=self._run, name="crashguard-worker", daemon=True)

    # -- plumbing ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._adopt()
        self.thread.start()

    def submit(self, event: Event | None) -> None:
        self.inbox.put(event)

    def stopping(self) -> bool:
        """The init asked everything to stop. A `stopping` older than supervisord is stale."""
        try:
            mtime = os.stat(os.path.join(self.run_dir, rundir.STOPPING_MARKER)).st_mtime
        except OSError:
            return False
        return self.supervisord_started is None or mtime >= self.supervisord_started - 1.0

    def rpc(self) -> Any:
        if self._rpc is None:
            self._rpc = self.rpc_factory()
        return self._rpc

    def _adopt(self) -> None:
        saved = rundir.read_json(self.run_dir, rundir.GUARD_STATE)
        if not saved or saved.get("program") not in (None, self.program):
            return
        now = self.clock()
        # A pid alone is not an identity: in a fresh PID namespace supervisord gets the same small
        # pid at every boot, and a kept run dir still holds the previous boot's file.
        same_supervisord = (
            self.supervisord_pid is not None
            and saved.get("supervisord_pid") == self.supervisord_pid
            and self.supervisord_started is not None
            and isinstance(saved.get("supervisord_started"), int | float)
            and abs(saved["supervisord_started"] - self.supervisord_started) < 0.01
        )
        if same_supervisord:
            effects = self.guard.restore(saved, now)
        elif saved.get("state") == HELD and self._written_for_this_boot(saved):
            # The init decided to hold (boot ledger) just before starting supervisord.
            effects = self.guard.hold(str(saved.get("held_reason") or "held at boot"), now)
        else:
            return
        self._apply(effects)

    def _written_for_this_boot(self, saved: Mapping[str, Any]) -> bool:
        """A held state the init wrote for this boot, not one left in a kept run dir."""
        since = saved.get("since")
        if self.supervisord_started is None or not isinstance(since, int | float):
            return True
        return since >= self.supervisord_started - _HELD_STATE_MAX_AGE_S

    def _run(self) -> None:
        while True:
            timeout = None if self.timer_at is None else max(0.0, self.timer_at - self.clock())
            try:
                event = self.inbox.get(timeout=timeout)
            except queue.Empty:
                self.timer_at = None
                self._guarded("restart", self._start_due)
                continue
            if event is None:
                return
            self._guarded(event.name, lambda event=event: self._handle(event))

    def _guarded(self, what: str, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as error:  # one bad event or call must never kill the guard's worker
            log.event(
                _logger,
                "error",
                "crash_guard_error",
                f"the crash guard failed handling {what}: {error!r}",
                event_name=what,
            )

    def _apply(self, effects: Iterable[Effect]) -> None:
        exit_codes: list[int] = []
        for effect in effects:
            if isinstance(effect, Log):
                log.event(_logger, effect.level, effect.event, effect.message, **effect.fields)
            elif isinstance(effect, Schedule):
                self.timer_at = effect.at
            elif isinstance(effect, Cancel):
                self.timer_at = None
            elif isinstance(effect, MarkLedger):
                ledger.mark(self.ledger_path, effect.outcome, self.clock())
            elif isinstance(effect, ExitAction):
                exit_codes.append(effect.code)
        self._write_state()  # before a shutdown, which ends this process too
        for code in exit_codes:
            self._exit_action(code)

    def _write_state(self) -> None:
        now = self.clock()
        data = self.guard.snapshot(now)
        data["supervisord_pid"] = self.supervisord_pid
        data["supervisord_started"] = self.supervisord_started
        comparable = {key: value for key, value in data.items() if key != "updated"}
        if comparable != self._written:
            rundir.write_json(self.run_dir, rundir.GUARD_STATE, data)
            self._written = comparable

    def _exit_action(self, code: int) -> None:
        path = os.path.join(self.run_dir, rundir.EXIT_CODE)
        try:
            with open(f"{path}.tmp", "w", encoding="ascii") as handle:
                handle.write(f"{code}\n")
            os.replace(f"{path}.tmp", path)
        except OSError as error:
            log.event(
                _logger,
                "error",
                "crash_guard_exit_code_unwritable",
                f"cannot write {path}; the init will not know the exit code",
                path=path,
                error=str(error),
            )
        log.event(
            _logger,
            "error",
            "crash_guard_shutdown",
            f"asking supervisord to shut down; the init exits with code {code}",
            exit_code=code,
        )
        try:
            self.rpc().supervisor.shutdown()
        except Exception as error:
            log.event(
                _logger,
                "error",
                "crash_guard_rpc_failed",
                f"supervisord did not accept shutdown: {error!r}",
                call="supervisor.shutdown",
            )

    def _process_info(self) -> dict[str, Any] | None:
        try:
            info = self.rpc().supervisor.getProcessInfo(self.program)
        except Exception as error:
            self._rpc = None
            log.event(
                _logger,
                "debug",
                "crash_guard_rpc_failed",
                f"getProcessInfo failed: {error!r}",
                call="supervisor.getProcessInfo",
            )
            return None
        return info if isinstance(info, dict) else None

    # -- events -----------------------------------------------------------------------------------
    def _handle(self, event: Event) -> None:
        name, headers, now = event.name, event.headers, event.now
        if name == "TICK_5":
            info = self._process_info()
            self._apply(self.guard.on_tick(self.clock(), info, stopping=self.stopping()))
            return
        if headers.get("processname") != self.program:
            return
        if name == "PROCESS_LOG_STDERR":
            self.guard.on_stderr(event.data)
            return
        pid = _int_or_none(headers.get("pid"))
        stopping = self.stopping()
        guard = self.guard
        if name == "PROCESS_STATE_STARTING":
            effects = guard.on_starting(now)
        elif name == "PROCESS_STATE_RUNNING":
            effects = guard.on_running(now, pid, _process_started(pid))
        elif name == "PROCESS_STATE_EXITED":
            exit_code, uptime = self._exit_details()
            effects = guard.on_exited(now, exit_code, stopping=stopping, uptime_s=uptime, pid=pid)
        elif name == "PROCESS_STATE_BACKOFF":
            info = self._process_info() or {}
            error = str(info.get("spawnerr") or "spawn error")
            effects = guard.on_exited(now, None, stopping=stopping, uptime_s=0.0, spawn_error=error)
        elif name == "PROCESS_STATE_STOPPING":
            effects = guard.on_stopping(now, stopping=stopping)
        elif name == "PROCESS_STATE_STOPPED":
            effects = guard.on_stopped(now, stopping=stopping)
        else:  # FATAL follows a BACKOFF that already counted; UNKNOWN needs no decision
            return
        self._apply(effects)

    def _exit_details(self) -> tuple[int | None, float | None]:
        info = self._process_info()
        if not info or str(info.get("statename")) not in ("EXITED", "BACKOFF", "FATAL"):
            return None, None
        code = _int_or_none(info.get("exitstatus"))
        start, stop = info.get("start"), info.get("stop")
        uptime = float(stop - start) if isinstance(start, int) and isinstance(stop, int) and start else None
        return code, uptime

    def _start_due(self) -> None:
        now = self.clock()
        stopping = self.stopping()
        go, effects = self.guard.start_due(now, stopping=stopping)
        self._apply(effects)
        if not go:
            return
        try:
            self.rpc().supervisor.startProcess(self.program, False)
        except Exception as error:
            fault, detail = _fault(error)
            if fault == "RPC_ERROR":
                self._rpc = None
            self._apply(self.guard.on_start_failed(self.clock(), fault, detail, stopping=self.stopping()))


def _process_started(pid: int | None) -> float | None:
    """The start time of a running process (the listener shares the program's PID namespace)."""
    if not pid:
        return None
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:  # gone already, or no /proc: the event's own time is used
        return None


def _fault(error: Exception) -> tuple[str, str]:
    code = getattr(error, "faultCode", None)
    if code is None:
        return "RPC_ERROR", repr(error)
    try:
        from supervisor.xmlrpc import getFaultDescription

        name = getFaultDescription(code)
    except Exception:  # pragma: no cover - supervisor is a dependency
        name = str(code)
    return name, str(getattr(error, "faultString", ""))


# --------------------------------------------------------------------------------------------------
# The event listener


def _supervisord_identity() -> tuple[int | None, float | None]:
    """The listener's parent is supervisord: its pid and start time (to spot stale files)."""
    parent = os.getppid()
    try:
        import psutil

        return parent, psutil.Process(parent).create_time()
    except Exception:
        return parent, None


def serve(stdin: io.TextIOBase, stdout: io.TextIOBase, runtime: Runtime, clock: Callable[[], float]) -> None:
    """The listener protocol: READY, read one event, hand it over, OK. Returns on end of input."""
    from supervisor.childutils import listener

    while True:
        try:
            headers, payload = listener.wait(stdin, stdout)
        except (KeyError, ValueError):
            return  # stdin closed: supervisord is gone
        try:
            runtime.submit(parse_event(headers, payload, clock()))
        finally:
            listener.ok(stdout)


def main(settings: Any, program: str, ledger_path: str) -> int:
    """`<init> crashguard`: run as supervisord's event listener (stdout is the protocol)."""
    from supervisor import childutils

    log.configure(settings.log_format, settings.log_level)
    if "SUPERVISOR_SERVER_URL" not in os.environ:
        log.event(
            _logger,
            "error",
            "crash_guard_not_under_supervisord",
            "crashguard runs only as supervisord's event listener (SUPERVISOR_SERVER_URL is unset)",
        )
        return 2
    # The protocol owns stdout: anything printed by mistake goes to stderr instead.
    protocol_out = sys.stdout
    sys.stdout = sys.stderr
    # supervisord counts `len` in characters of UTF-8 text: read stdin as UTF-8 whatever the locale.
    protocol_in = io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="replace")
    socket.setdefaulttimeout(10.0)  # XML-RPC calls of the worker never hang forever
    supervisord_pid, supervisord_started = _supervisord_identity()
    runtime = Runtime(
        settings.run_dir,
        program,
        settings.restart,
        ledger_path,
        lambda: childutils.getRPCInterface(os.environ),
        supervisord_started=supervisord_started,
        supervisord_pid=supervisord_pid,
    )
    runtime.start()
    serve(protocol_in, protocol_out, runtime, time.time)
    runtime.submit(None)
    runtime.thread.join(timeout=5)
    return 0
