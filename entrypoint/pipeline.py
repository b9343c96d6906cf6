"""The boot, in order: config, prepare, ownership, migration, privileges, credentials; then
supervise (the program under supervisord) or run (a one-off command with tini's duties).

Only this module knows the order. Each phase is a function from its part of the plan to a
`PhaseResult`; the report collects them. A phase that raises is a failed phase with a warning,
never a crash: the program still starts, on whatever the phases managed to do.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

from . import (
    credentials,
    environment,
    ledger,
    log,
    migrate,
    notify,
    ownership,
    prepare,
    privileges,
    reaper,
    rundir,
    supervise,
)
from . import report as reporting
from .config import Settings
from .plan import MigrationPlan, OwnershipPlan, PreparePlan, Program, SecretPlan, StopFlag
from .report import PhaseResult

_LOG = log.get("boot")

Mode = Literal["supervise", "run"]
EXIT_PRIVILEGE_DROP_FAILED = 1


@dataclass(frozen=True)
class BootPlan:
    settings: Settings
    mode: Mode
    version: str
    prepare: PreparePlan
    ownership: OwnershipPlan
    migration: MigrationPlan
    credentials: SecretPlan
    program: Program
    ledger_path: str
    self_command: tuple[str, ...]


class _Boot:
    def __init__(self, plan: BootPlan, stop: StopFlag, started: float, config_result: PhaseResult) -> None:
        self.plan = plan
        self.settings = plan.settings
        self.stop = stop
        self.started = started
        self.phases: list[PhaseResult] = [config_result]
        self.readiness: notify.Readiness | None = None

    def record(self, name: str, phase: Callable[[], PhaseResult]) -> PhaseResult:
        if self.readiness is not None:
            self.readiness.status(f"boot: {name}")
        try:
            result = phase()
        except Exception as error:  # a bug in one phase must not become a crash loop
            result = PhaseResult(name, "failed", 0.0)
            result.warnings.append(
                reporting.warning("phase_crashed", f"{name} failed: {error}", error=type(error).__name__)
            )
        result.name = name  # the pipeline's label: one phase function may run twice, for two purposes
        return self.note(result)

    def note(self, result: PhaseResult) -> PhaseResult:
        """Collect a phase's result for the report and log it: its warnings, then its summary."""
        name = result.name
        self.phases.append(result)
        for item in result.warnings:
            fields = {key: value for key, value in item.items() if key not in ("event", "message")}
            log.event(_LOG, "warning", item["event"], item["message"], phase=name, **fields)
        log.event(
            _LOG,
            "info",
            "phase_finished",
            f"{name}: {result.status}",
            phase=name,
            status=result.status,
            duration_ms=result.duration_ms,
            figures=result.figures,
        )
        return result

    def health_check(self) -> tuple[bool, str]:
        # Imported here: xmlrpc and http.client cost PID 1 memory for as long as it lives, and only
        # readiness notification (a NOTIFY_SOCKET) asks PID 1 itself for health.
        from . import health

        return health.check(self.settings.run_dir, self.plan.program.name, self.settings.program_port)

    def interrupted(self) -> bool:
        if self.stop.is_set():
            log.event(
                _LOG,
                "warning",
                "boot_interrupted",
                "stop requested during the boot",
                signal=self.stop.signal_number,
            )
        return self.stop.is_set()

    def report(self) -> reporting.StartupReport:
        user = self.settings.user
        startup = reporting.StartupReport(
            version=self.plan.version,
            mode=self.plan.mode,
            user={"name": user.name, "uid": user.uid, "gid": user.gid},
            phases=self.phases,
            duration_ms=reporting.elapsed_ms(self.started),
        )
        path = reporting.write(startup, self.settings.run_dir)
        log.event(_LOG, "info", "startup_report", "boot finished", report_file=path, **startup.to_dict())
        return startup

    def prepare_as_root(self) -> int | None:
        plan, user = self.plan, self.settings.user
        self.record("prepare", lambda: prepare.run(plan.prepare))
        self.record("ownership", lambda: ownership.run(plan.ownership, user, self.stop))
        if self.interrupted():
            return 128 + self.stop.signal_number
        migration = self.record("migration", lambda: migrate.run(plan.migration, self.stop))
        if migration.figures.get("strategy") == "rename" and migration.figures.get("outcome") == "migrated":
            # A renamed tree keeps its old owners (often root: the very EACCES this image fixes).
            moved = replace(plan.ownership, roots=(plan.migration.target,))
            self.record("ownership_migrated", lambda: ownership.run(moved, user, self.stop))
        if self.interrupted():
            return 128 + self.stop.signal_number
        try:
            self.note(privileges.drop(user))
        except (privileges.PrivilegeDropError, OSError) as error:
            log.event(
                _LOG,
                "error",
                "privilege_drop_failed",
                f"refusing to continue: {error}",
                uid=user.uid,
                gid=user.gid,
            )
            return EXIT_PRIVILEGE_DROP_FAILED
        return None

    def run(self) -> int:
        settings = self.settings
        if self.plan.mode == "supervise":
            self.readiness = notify.Readiness.from_environ(os.environ, self.health_check, settings.run_dir)
        if settings.started_as_root:
            failed = self.prepare_as_root()
            if failed is not None:
                return failed
        else:
            directories = (settings.state_dir, settings.workspace_dir, settings.run_dir)
            self.record("privileges", lambda: privileges.check_access(settings.user, directories))
        secret: list[str | None] = [None]

        def take_credentials() -> PhaseResult:
            result, secret[0] = credentials.run(self.plan.credentials, os.environ)
            return result

        self.record("credentials", take_credentials)
        env = dict(self.plan.program.env)
        env.update(privileges.user_environment(settings.user))
        if secret[0]:
            env.update({name: secret[0] for name in self.plan.credentials.env_names})
        program = replace(self.plan.program, env=environment.for_program(env))
        original_mask = reaper.block_signals()
        if self.interrupted():  # a stop that arrived just before the block
            return 128 + self.stop.signal_number
        if self.plan.mode == "run":
            return self.run_command(program, original_mask)
        return self.supervise(program, original_mask)

    def run_command(self, program: Program, original_mask: set[int]) -> int:
        self.report()
        pid = reaper.spawn(program.argv, program.env, program.cwd, original_mask, take_terminal=os.isatty(0))
        status = reaper.supervise_child(pid, reaper.FORWARDED_TO_COMMAND)
        return reaper.exit_code(status)

    def supervise(self, program: Program, original_mask: set[int]) -> int:
        settings, plan = self.settings, self.plan
        layout = supervise.Layout(settings.run_dir)
        now = time.time()
        ledger.begin_boot(plan.ledger_path, now)
        hold = ledger.hold_reason(
            plan.ledger_path, settings.restart.crashloop_burst, settings.restart.crashloop_window_s, now
        )
        if hold is not None:
            log.event(
                _LOG,
                "error",
                "boot_held",
                f"{program.name} not started: {hold}. Fix the cause, then run "
                f"`supervisorctl start {program.name}` to leave hold",
                reason=hold,
            )
        try:
            supervise.clear_markers(layout)
            text = supervise.render(
                program, settings.restart, layout, plan.self_command, autostart=hold is None
            )
            supervise.write_config(layout, text)
        except OSError as error:
            log.event(
                _LOG,
                "error",
                "supervisor_config_failed",
                f"cannot write {layout.config}: {error.strerror}",
                path=layout.config,
            )
            ledger.mark(plan.ledger_path, "init_failed")
            return 1
        if hold is not None:
            ledger.write_held_state(settings.run_dir, hold)
        self.report()
        readiness = self.readiness
        code = supervise.run(
            program,
            settings.restart,
            layout,
            plan.self_command,
            original_mask,
            on_stop=readiness.stopping if readiness else lambda: None,
            tick=readiness.tick if readiness else lambda now: None,
        )
        if code != rundir.CRASH_LOOP_EXIT_CODE:  # the crash guard has marked its refusal itself
            ledger.mark(plan.ledger_path, "stopped" if code == 0 else "init_failed")
        return code


def boot(plan: BootPlan, stop: StopFlag, started: float, config_result: PhaseResult) -> int:
    return _Boot(plan, stop, started, config_result).run()
