"""The crash guard's worker: supervisord's events in order, the policy's effects carried out.

The worker thread (`crashguard-worker`), from supervisord's start (`plugin` starts it when
supervisord loads the guard) to its end. `Runtime` feeds the events `plugin` hands over to the
policy (`policy.Guard`) in order and does all the I/O its effects ask for, none of it in
supervisord's own thread: XML-RPC to supervisord on its control socket (`common/control`;
supervisord is single-threaded, and its objects are never touched from here), the timer, the memory
cgroup's figures (`common/cgroup`), the boot ledger and the run dir's files: `crashguard.json`
(`common/guardstate`, written after every change, read by `health`, `status` and the sd_notify
loop), `metrics.prom` (`common/metrics`, rewritten after every change and at each tick),
`stopping` (created by the init) and `exit-code`. Questions to the program's CLI (`handoff`)
run in helper threads; their answers come back to the worker as inputs, in turn with the events.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..common import cgroup, guardstate, ledger, log, metrics, procfs, rundir
from ..common.control import Fault, Supervisor, fault_name
from ..common.guardplan import GuardPlan
from ..common.guardstate import Snapshot, State, int_or_none
from . import handoff
from .backlog import Backlog
from .effects import AskHandoff, Cancel, Effect, ExitAction, Log, MarkLedger, Schedule, Start
from .facts import Answer, Handoff, Memory
from .output import Redactor
from .policy import Guard

# The init writes a boot's `held` state just before it starts supervisord: older is from another boot.
_HELD_STATE_MAX_AGE_S = 60.0
# A healthy supervisord answers in milliseconds; the bound keeps a wedged one from stalling the
# worker, and with it every restart and state change, forever.
RPC_TIMEOUT_S = 10.0

_logger = log.get("crashguard")


@dataclass(frozen=True)
class Event:
    """One of supervisord's events (but the program's output, which goes to the backlog), as its
    event listeners get it: `headers` are the payload's `key:value` tokens."""

    name: str  # supervisord's event name, e.g. PROCESS_STATE_EXITED
    headers: Mapping[str, str]
    now: float


class OutputWaits:
    """The worker's cue that the program's output waits in the backlog (one per batch)."""


_OUTPUT_WAITS = OutputWaits()


class Runtime:
    """Runs the Guard: consumes events in order, owns its timer, talks to supervisord."""

    def __init__(
        self,
        run_dir: str,
        plan: GuardPlan,
        *,
        clock: Callable[[], float] = time.time,
        supervisord_started: float | None = None,
        supervisord_pid: int | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.handoff = plan.handoff
        self.guard = Guard(
            plan.program,
            plan.policy,
            clock(),
            lease=plan.lease,
            handoffs=self.handoff is not None,
            capable=handoff.cached(self.handoff) if self.handoff else None,
            # The environment is the program's: its secrets never reach a line the guard writes.
            redact=Redactor(environ),
            oom_kills=plan.oom_kills_at_boot,
        )
        self.supervisor = Supervisor(run_dir, RPC_TIMEOUT_S)
        self.memory = cgroup.find()
        self.run_dir = run_dir
        self.ledger_path = plan.ledger_path
        self.clock = clock
        # Which supervisord the guard runs in: a kept run dir holds older boots' files.
        self.supervisord_started = supervisord_started
        self.supervisord_pid = supervisord_pid
        self.inbox: queue.Queue[Event | Handoff | OutputWaits | None] = queue.Queue()
        self.backlog = Backlog()
        self.timer_at: float | None = None
        self._written: Snapshot | None = None
        self.metrics = plan.metrics
        self._metrics_failed = False  # said once: the textfile is an aid, the guard goes on
        self.thread = threading.Thread(target=self._run, name="crashguard-worker", daemon=True)

    # -- plumbing ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._adopt()
        self.thread.start()

    def submit(self, event: Event | Handoff | OutputWaits | None) -> None:
        self.inbox.put(event)

    def output(self, program: str, stream: str, data: bytes) -> None:
        """The program wrote `data` on `stream` (in supervisord's thread): into the backlog, and
        the worker told once until it takes it, in turn with the events."""
        if program == self.guard.program and self.backlog.add(stream, data):
            self.submit(_OUTPUT_WAITS)

    def finish(self, timeout_s: float) -> None:
        """Handle every event already queued, then end the worker (waiting `timeout_s` at most):
        supervisord has stopped, and what its last events lead to is still to be written."""
        self.submit(None)
        self.thread.join(timeout_s)

    def stopping(self) -> bool:
        """The init asked everything to stop. A `stopping` older than supervisord is stale."""
        try:
            mtime = os.stat(os.path.join(self.run_dir, rundir.STOPPING_MARKER)).st_mtime
        except OSError:
            return False
        return self.supervisord_started is None or mtime >= self.supervisord_started - 1.0

    def _adopt(self) -> None:
        """Hold from the start when the init decided to (boot ledger) just before it started
        supervisord; any other state in the file is an earlier run's, and is replaced."""
        saved = guardstate.read(self.run_dir)
        if saved is None or saved.program not in (None, self.guard.program):
            return
        if saved.state == State.HELD and self._written_for_this_boot(saved):
            reason, retry = saved.held_reason or "held at boot", saved.retry_at is not None
            held = self.guard.hold(
                reason, saved.held_cause, self.clock(), retry=retry, how_to_leave=saved.how_to_leave
            )
            self._apply(held)

    def _written_for_this_boot(self, saved: Snapshot) -> bool:
        """A held state the init wrote for this boot, not one left in a kept run dir."""
        if self.supervisord_started is None:
            return True
        return saved.since >= self.supervisord_started - _HELD_STATE_MAX_AGE_S

    def _run(self) -> None:
        while True:
            timeout = None if self.timer_at is None else max(0.0, self.timer_at - self.clock())
            try:
                event = self.inbox.get(timeout=timeout)
            except queue.Empty:
                self.timer_at = None
                self._guarded(
                    "timer", lambda: self._apply(self.guard.on_timer(self.clock(), stopping=self.stopping()))
                )
                continue
            if event is None:
                self._guarded("output", self._take_output)
                return
            if isinstance(event, OutputWaits):
                self._guarded("output", self._take_output)
            elif isinstance(event, Handoff):
                self._guarded("restart handoff", lambda answer=event: self._answered(answer))
            else:
                self._guarded(event.name, lambda event=event: self._handle(event))

    def _take_output(self) -> None:
        for stream, text in self.backlog.take():
            self.guard.on_output(stream, text)

    def _answered(self, answer: Handoff) -> None:
        self._apply(self.guard.on_handoff(self.clock(), answer, stopping=self.stopping()))

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
        # What reaches out (a start, a question, a shutdown) waits until the state file says what
        # was decided: readers never see a consequence before its cause, and a shutdown ends this
        # process too.
        outward: list[Start | AskHandoff | ExitAction] = []
        for effect in effects:
            if isinstance(effect, Log):
                log.event(_logger, effect.level, effect.event, effect.message, **effect.fields)
            elif isinstance(effect, Schedule):
                self.timer_at = effect.at
            elif isinstance(effect, Cancel):
                self.timer_at = None
            elif isinstance(effect, MarkLedger):
                ledger.mark(self.ledger_path, effect.outcome, self.clock())
            else:
                outward.append(effect)
        self._write_state()
        for action in outward:
            if isinstance(action, Start):
                self._start()
            elif isinstance(action, AskHandoff):
                self._ask(action)
            else:
                self._exit_action(action.code)

    def _write_state(self) -> None:
        now = self.clock()
        snapshot = dataclasses.replace(
            self.guard.snapshot(now),
            supervisord_pid=self.supervisord_pid,
            supervisord_started=self.supervisord_started,
        )
        if snapshot != self._written:
            guardstate.write(self.run_dir, snapshot, now)
            self._written = snapshot
            self._publish_metrics()

    def _publish_metrics(self) -> None:
        """Rewrite the metrics' textfile from the run dir's files, as the listener and `status
        --prometheus` render them."""
        if self.metrics is None:
            return
        why = "the run dir cannot be written"
        try:
            text = metrics.render(self.run_dir, self.metrics.namespace, self.clock())
            written = metrics.write_textfile(self.run_dir, text)
        except Exception as error:  # whatever it met, the guard's own work goes on
            written, why = None, repr(error)
        if written is None and not self._metrics_failed:
            self._metrics_failed = True
            path = os.path.join(self.run_dir, rundir.METRICS_TEXTFILE)
            log.event(
                _logger,
                "warning",
                "metrics_textfile_failed",
                f"cannot write {path} ({why}): the textfile's metrics are stale until it can",
                path=path,
            )

    def _exit_action(self, code: int) -> None:
        try:
            rundir.write_exit_code(self.run_dir, code)
        except OSError as error:
            path = os.path.join(self.run_dir, rundir.EXIT_CODE)
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
            self.supervisor.shutdown()
        except Exception as error:  # said once; the init's own stop still ends supervisord
            log.event(
                _logger,
                "error",
                "crash_guard_rpc_failed",
                f"supervisord did not accept shutdown: {error!r}",
                call="supervisor.shutdown",
            )

    def _process_info(self) -> dict[str, Any] | None:
        try:
            return self.supervisor.process_info(self.guard.program)
        except Exception as error:  # whatever failed, the event is still decided, from less
            log.event(
                _logger,
                "debug",
                "crash_guard_rpc_failed",
                f"getProcessInfo failed: {error!r}",
                call="supervisor.getProcessInfo",
            )
            return None

    # -- events -----------------------------------------------------------------------------------
    def _handle(self, event: Event) -> None:
        name, headers, now = event.name, event.headers, event.now
        if name == "TICK_5":
            info = self._process_info()
            self._apply(self.guard.on_tick(self.clock(), info, stopping=self.stopping()))
            self._publish_metrics()  # what changes without an event: memory, backoff time, zombies
            return
        if headers.get("processname") != self.guard.program:
            return
        pid = int_or_none(headers.get("pid"))
        stopping = self.stopping()
        guard = self.guard
        if name == "PROCESS_STATE_STARTING":
            effects = guard.on_starting(now)
        elif name == "PROCESS_STATE_RUNNING":
            effects = guard.on_running(now, pid, procfs.started_at(pid) if pid else None)
        elif name == "PROCESS_STATE_EXITED":
            exit_code, uptime = self._exit_details()
            effects = guard.on_exited(
                now, exit_code, stopping=stopping, uptime_s=uptime, pid=pid, memory=self._figures()
            )
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

    def _figures(self) -> Memory:
        """The memory cgroup's figures now (all unknown without a memory cgroup)."""
        if self.memory is None:
            return Memory(None, None, None)
        return Memory(self.memory.oom_kills(), self.memory.limit(), self.memory.peak())

    def _exit_details(self) -> tuple[int | None, float | None]:
        info = self._process_info()
        if not info or str(info.get("statename")) not in ("EXITED", "BACKOFF", "FATAL"):
            return None, None
        code = int_or_none(info.get("exitstatus"))
        start, stop = info.get("start"), info.get("stop")
        uptime = float(stop - start) if isinstance(start, int) and isinstance(stop, int) and start else None
        return code, uptime

    def _start(self) -> None:
        try:
            self.supervisor.start_process(self.guard.program)
        except Exception as error:  # a broken command, a busy or gone supervisord: the policy decides
            fault, detail = _fault(error)
            self._apply(self.guard.on_start_failed(self.clock(), fault, detail, stopping=self.stopping()))

    def _ask(self, effect: AskHandoff) -> None:
        """Ask the program's CLI in a helper thread: its cold start must not hold the events up."""
        plan = self.handoff
        if plan is None:  # the guard asks only when there is a contract to ask
            return

        def ask() -> None:
            try:
                answer = handoff.ask(plan, effect.pid, effect.probe)
            except Exception as error:  # whatever went wrong, the policy gets an answer
                answer = Handoff(effect.pid, Answer.FAILED, repr(error))
            self.submit(answer)

        threading.Thread(target=ask, name="crashguard-handoff", daemon=True).start()


def _fault(error: Exception) -> tuple[str, str]:
    if isinstance(error, Fault):
        return fault_name(error), str(error.faultString)
    return "RPC_ERROR", repr(error)
