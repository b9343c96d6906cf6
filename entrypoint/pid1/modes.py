"""PID 1's two ways to live after the boot: supervise the program under supervisord, or run a
one-off command with tini's duties.

It returns the container's exit code. The startup report goes out here, just before the first
process starts, so that it is the first thing `docker logs` shows of a boot.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Literal

from ..common import guardplan, guardstate, ledger, log, rundir
from ..common import report as reporting
from ..common.exits import Exit, by_signal
from ..common.guardplan import GuardPlan
from ..common.plans import Booted, Hold, StopFlag
from ..common.report import PhaseResult
from ..common.settings import Settings
from . import reaper, supervision
from .notify import Readiness

_LOG = log.get("boot")

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
    log.event(_LOG, "info", "startup_report", "boot finished", report_file=path, **startup.to_dict())


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
    return None if streak is None else Hold(f"boot ledger: {streak}")


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
    code = supervision.run(
        program,
        restart,
        layout,
        plan.supervisord,
        original_mask,
        plan.ignored_signals,
        on_stop=readiness.stopping if readiness else lambda: None,
        tick=readiness.tick if readiness else lambda now: None,
    )
    if rundir.read_exit_code(settings.run_dir) is None:  # else the crash guard marked its refusal
        ledger.mark(
            plan.guard.ledger_path, ledger.Outcome.STOPPED if code == Exit.OK else ledger.Outcome.INIT_FAILED
        )
    return code
