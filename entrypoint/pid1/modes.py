"""PID 1's two ways to live after the boot: supervise the program under supervisord, or run a
one-off command with tini's duties.

It returns the container's exit code. The startup report goes out here, just before the first
process starts, so that it is the first thing `docker logs` shows of a boot.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ..common import guardplan, guardstate, ledger, log, rundir
from ..common import report as reporting
from ..common.exits import Exit, by_signal
from ..common.guardplan import GuardPlan
from ..common.guardstate import HoldCause
from ..common.plans import Booted, Hold, StopFlag
from ..common.report import PhaseResult
from ..common.settings import Settings
from . import reaper, supervision
from .notify import Readiness

_LOG = log.get("boot")
_AFTER_START_EVERY_S = 1.0
# A burst of orphans (a browser's helpers can leave thousands) is one write a second at most.
_ZOMBIES_PUBLISHED_EVERY_S = 1.0

Mode = Literal["supervise", "run"]


@dataclass(frozen=True)
class Pid1Plan:
    """What PID 1 needs besides the program: how to report, where the ledger is, how to start
    supervisord."""

    settings: Settings
    mode: Mode
    version: str
    started: float  # monotonic time the boot started
    supervisord: supervision.Launch  # how supervisord's process is made
    ignored_signals: frozenset[int]  # ignored by whoever started the init: ignored in its children
    guard: GuardPlan  # the crash guard's orders (supervise mode), with where the boot ledger is
    check: Callable[[str], tuple[bool, str]]  # the program's probes: check("startup"), check("live")


class _AfterStart:
    """What the boot left for once the program has started (its startup probe says so): asked every
    second from PID 1's loop, carried out once, in a thread (a removal of a large checkpoint must
    not hold PID 1's signals and reaping up)."""

    def __init__(self, check: Callable[[str], tuple[bool, str]], tasks: tuple[Callable[[], object], ...]):
        self.check = check
        self.tasks = tasks
        self.next_check = 0.0

    def tick(self, now: float) -> None:
        if not self.tasks or now < self.next_check:
            return
        self.next_check = now + _AFTER_START_EVERY_S
        try:
            started = self.check("startup")[0]
        except Exception:  # whatever the program answered, it is no start
            started = False
        if not started:
            return
        tasks, self.tasks = self.tasks, ()
        threading.Thread(target=lambda: _carry_out(tasks), name="after-start", daemon=True).start()


class _ZombieCount:
    """The orphans PID 1 has reaped, published in the run dir for the metrics
    (`rundir.ZOMBIES_REAPED`) from PID 1's loop, once they change."""

    def __init__(self, run_dir: str) -> None:
        self.run_dir = run_dir
        self.reaped = 0
        self.published = 0
        self.next_write = 0.0

    def add(self, reaped: int) -> None:
        self.reaped += reaped

    def tick(self, now: float) -> None:
        if self.reaped == self.published or now < self.next_write:
            return
        self.next_write = now + _ZOMBIES_PUBLISHED_EVERY_S
        try:
            rundir.write_number(self.run_dir, rundir.ZOMBIES_REAPED, self.reaped)
        except OSError:  # a run dir it cannot write: the metrics keep the last count, PID 1 goes on
            return
        self.published = self.reaped


def _carry_out(tasks: tuple[Callable[[], object], ...]) -> None:
    for task in tasks:
        try:
            task()
        except Exception as error:  # a chore that failed: said, and PID 1 goes on
            log.event(_LOG, "warning", "after_start_failed", f"after the start: {error!r}")


def _publish_report(plan: Pid1Plan, phases: list[PhaseResult], hold: Hold | None = None) -> None:
    user = plan.settings.user
    startup = reporting.StartupReport(
        version=plan.version,
        mode=plan.mode,
        user={"name": user.name, "uid": user.uid, "gid": user.gid},
        phases=phases,
        duration_ms=reporting.elapsed_ms(plan.started),
        held=None if hold is None else {"reason": hold.reason, "how_to_leave": hold.how_to_leave},
    )
    path = reporting.write(startup, plan.settings.run_dir)
    log.report_first(
        lambda: log.event(
            _LOG, "info", "startup_report", "boot finished", report_file=path, **startup.to_dict()
        )
    )


def run(plan: Pid1Plan, booted: Booted, stop: StopFlag, readiness: Readiness | None) -> int:
    """Block the signals PID 1 collects, then run the booted program in the plan's mode."""
    program, phases = booted.program, booted.phases
    original_mask = reaper.block_signals()
    if stop.is_set():  # a stop that arrived during the boot's last steps, before the block
        log.event(
            _LOG, "warning", "boot_interrupted", "stop requested during the boot", signal=stop.signal_number
        )
        return by_signal(stop.signal_number)
    if plan.mode == "run":
        _publish_report(plan, phases)
        pid = reaper.spawn(
            program.argv,
            program.env,
            program.cwd,
            original_mask,
            plan.ignored_signals,
            take_terminal=os.isatty(0),
        )
        return reaper.exit_code(reaper.supervise_child(pid, reaper.FORWARDED_TO_COMMAND))
    return _supervise(plan, booted, original_mask, readiness)


def _hold(plan: Pid1Plan, booted: Booted, now: float) -> Hold | None:
    """Whether the program starts: not when the boot says so (its state is not in place), nor when
    the boot ledger finds this container restarted into refusals again and again."""
    if booted.hold is not None:
        return booted.hold
    restart = plan.settings.restart
    streak = ledger.hold_reason(
        plan.guard.ledger_path, restart.crashloop_burst, restart.crashloop_window_s, now
    )
    return None if streak is None else Hold(f"boot ledger: {streak}", HoldCause.BOOT_LOOP)


def _supervise(plan: Pid1Plan, booted: Booted, original_mask: set[int], readiness: Readiness | None) -> int:
    settings, program = plan.settings, booted.program
    layout = supervision.Layout(settings.run_dir)
    now = time.time()
    ledger.begin_boot(plan.guard.ledger_path, now)
    restart = settings.restart
    hold = _hold(plan, booted, now)
    if hold is not None:
        how = hold.how_to_leave or guardstate.leave_hold_hint(program.name)
        log.event(
            _LOG,
            "error",
            "boot_held",
            f"{program.name} not started: {hold.reason}; {how}",
            reason=hold.reason,
            cause=hold.cause,
            how_to_leave=how,
        )
    try:
        supervision.clear_markers(layout)
        guardplan.write(settings.run_dir, plan.guard)
        text = supervision.render(
            program, restart, layout, plan.supervisord.interfaces, autostart=hold is None
        )
        supervision.write_config(layout, text)
    except OSError as error:
        log.event(
            _LOG,
            "error",
            "supervisor_config_failed",
            f"cannot write {layout.config}: {error.strerror}",
            path=layout.config,
        )
        ledger.mark(plan.guard.ledger_path, ledger.Outcome.INIT_FAILED)
        return Exit.FAILED
    if hold is not None:
        guardstate.hold_at_boot(settings.run_dir, program.name, hold, now)
    _publish_report(plan, booted.phases, hold)
    after = _AfterStart(plan.check, booted.after_start)
    zombies = _ZombieCount(settings.run_dir)

    def tick(now: float) -> None:
        after.tick(now)
        zombies.tick(now)
        if readiness is not None:
            readiness.tick(now)

    code = supervision.run(
        program,
        restart,
        layout,
        plan.supervisord,
        original_mask,
        plan.ignored_signals,
        on_stop=readiness.stopping if readiness else lambda: None,
        tick=tick,
        on_reaped=zombies.add,
    )
    if rundir.read_exit_code(settings.run_dir) is None:  # else the crash guard marked its refusal
        ledger.mark(
            plan.guard.ledger_path, ledger.Outcome.STOPPED if code == Exit.OK else ledger.Outcome.INIT_FAILED
        )
    return code
