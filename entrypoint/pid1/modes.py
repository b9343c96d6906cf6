"""PID 1's two ways to live after the boot: supervise the program under supervisord, or run a
one-off command with tini's duties.

Who runs it: the init as PID 1, as the target user (the boot has dropped privileges), once the
boot's phases are done; it returns the container's exit code. The startup report goes out here,
just before the first process starts, so that it is the first thing `docker logs` shows of a boot.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Literal

from ..common import guardplan, guardstate, ledger, log, rundir
from ..common import report as reporting
from ..common.guardplan import GuardPlan
from ..common.plans import Program, StopFlag
from ..common.report import PhaseResult
from ..common.settings import Settings
from . import reaper, supervisord
from .notify import Readiness

_LOG = log.get("boot")

Mode = Literal["supervise", "run"]
EXIT_SUPERVISOR_FAILED = 1


@dataclass(frozen=True)
class Pid1Plan:
    """What PID 1 needs besides the program: how to report, where the ledger is, how to start
    supervisord."""

    settings: Settings
    mode: Mode
    version: str
    started: float  # monotonic time the boot started
    supervisord: supervisord.Launch  # how supervisord's process is made
    ignored_signals: frozenset[int]  # ignored by whoever started the init: ignored in its children
    guard: GuardPlan  # the crash guard's orders (supervise mode), with where the boot ledger is


def _publish_report(plan: Pid1Plan, phases: list[PhaseResult]) -> None:
    user = plan.settings.user
    startup = reporting.StartupReport(
        version=plan.version,
        mode=plan.mode,
        user={"name": user.name, "uid": user.uid, "gid": user.gid},
        phases=phases,
        duration_ms=reporting.elapsed_ms(plan.started),
    )
    path = reporting.write(startup, plan.settings.run_dir)
    log.event(_LOG, "info", "startup_report", "boot finished", report_file=path, **startup.to_dict())


def run(
    plan: Pid1Plan, program: Program, phases: list[PhaseResult], stop: StopFlag, readiness: Readiness | None
) -> int:
    """Block the signals PID 1 collects, then run the program in the plan's mode."""
    original_mask = reaper.block_signals()
    if stop.is_set():  # a stop that arrived during the boot's last steps, before the block
        log.event(
            _LOG, "warning", "boot_interrupted", "stop requested during the boot", signal=stop.signal_number
        )
        return 128 + stop.signal_number
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
    return _supervise(plan, program, phases, original_mask, readiness)


def _supervise(
    plan: Pid1Plan,
    program: Program,
    phases: list[PhaseResult],
    original_mask: set[int],
    readiness: Readiness | None,
) -> int:
    settings = plan.settings
    layout = supervisord.Layout(settings.run_dir)
    now = time.time()
    ledger.begin_boot(plan.guard.ledger_path, now)
    restart = settings.restart
    hold = ledger.hold_reason(
        plan.guard.ledger_path, restart.crashloop_burst, restart.crashloop_window_s, now
    )
    if hold is not None:
        log.event(
            _LOG,
            "error",
            "boot_held",
            f"{program.name} not started: {hold}; {guardstate.leave_hold_hint(program.name)}",
            reason=hold,
        )
    try:
        supervisord.clear_markers(layout)
        guardplan.write(settings.run_dir, plan.guard)
        text = supervisord.render(program, restart, layout, autostart=hold is None)
        supervisord.write_config(layout, text)
    except OSError as error:
        log.event(
            _LOG,
            "error",
            "supervisor_config_failed",
            f"cannot write {layout.config}: {error.strerror}",
            path=layout.config,
        )
        ledger.mark(plan.guard.ledger_path, ledger.Outcome.INIT_FAILED)
        return EXIT_SUPERVISOR_FAILED
    if hold is not None:
        guardstate.hold_at_boot(settings.run_dir, program.name, hold, now)
    _publish_report(plan, phases)
    code = supervisord.run(
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
            plan.guard.ledger_path, ledger.Outcome.STOPPED if code == 0 else ledger.Outcome.INIT_FAILED
        )
    return code
