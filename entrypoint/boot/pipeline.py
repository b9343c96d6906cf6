"""The boot, in order: prepare, ownership, migration, privileges (the drop), credentials (with
`AFTER_REPAIR` set, the verdict `after_repair` after the drop); started non-root: prepare,
migration, privileges (an access check), credentials.

Who runs it: the init as PID 1, once, at container start, as root when started as root (the only
steps that ever run as root), after `wiring` has read the settings (the `config` phase). It ends as
the target user and hands the program, ready to start, back to `wiring`, which gives it to
`pid1/`. Only this module knows the order of the phases. Each phase is a function from its part
of the plan to a `PhaseResult`; a phase that raises is a failed phase with a warning, never a
crash: the program still starts, on whatever the phases managed to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..common import environment, log
from ..common import report as reporting
from ..common.plans import BootPlan, Program, StopFlag
from ..common.report import PhaseResult
from ..common.settings import EX_CONFIG
from . import after_repair, credentials, migration, ownership, preflight, prepare, privileges

_LOG = log.get("boot")
EXIT_PRIVILEGE_DROP_FAILED = 1


@dataclass
class Booted:
    """What the boot hands to PID 1: the report's phases and the program with its whole
    environment, or the exit code when the boot ends the container instead."""

    phases: list[PhaseResult]
    program: Program
    exit_code: int | None = None


class _Boot:
    def __init__(
        self, plan: BootPlan, stop: StopFlag, on_phase: Callable[[str], None], config: PhaseResult
    ) -> None:
        self.plan = plan
        self.settings = plan.settings
        self.stop = stop
        self.on_phase = on_phase
        self.phases: list[PhaseResult] = [config]

    def record(self, name: str, phase: Callable[[], PhaseResult]) -> PhaseResult:
        self.on_phase(f"boot: {name}")
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

    def ended(self, code: int) -> Booted:
        return Booted(self.phases, self.plan.program, code)

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

    def as_root(self) -> Booted | None:
        """The root steps, then the drop; a Booted only when the boot ends here."""
        plan, user = self.plan, self.settings.user
        # Before any volume is touched: a drop that cannot happen is refused now, in one line.
        refusal = preflight.check(user, plan.runtime_paths)
        if refusal is not None:
            log.event(_LOG, "error", refusal.event, refusal.message, **refusal.fields)
            return self.ended(EX_CONFIG)
        self.record("prepare", lambda: prepare.run(plan.prepare))
        self.record("ownership", lambda: ownership.run(plan.ownership, user, self.stop))
        if self.interrupted():
            return self.ended(128 + self.stop.signal_number)
        migrated = self.record("migration", lambda: migration.run(plan.migration, self.stop))
        if isinstance(migrated, migration.MigrationResult) and migrated.moved_by_rename:
            # A renamed tree keeps its old owners (often root: the very EACCES this image fixes).
            moved = replace(plan.ownership, roots=(plan.migration.target,))
            self.record("ownership_migrated", lambda: ownership.run(moved, user, self.stop))
        if self.interrupted():
            return self.ended(128 + self.stop.signal_number)
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
            return self.ended(EXIT_PRIVILEGE_DROP_FAILED)
        then = self.settings.after_repair
        if then:
            # A deployment that runs as root only to repair: may it start without root again?
            self.record(after_repair.PHASE, lambda: after_repair.judge(self.phases, then, user))
        return None

    def as_user(self) -> None:
        """Started non-root: nothing to repair or drop; make what the user can, migrate what it can
        read, and say plainly what it cannot write."""
        plan, settings = self.plan, self.settings
        self.record("prepare", lambda: prepare.run(plan.prepare))
        self.record("migration", lambda: migration.run(plan.migration, self.stop))
        directories = (settings.state_dir, settings.workspace_dir, settings.run_dir)
        self.record("privileges", lambda: privileges.check_access(settings.user, directories))

    def run(self) -> Booted:
        settings = self.settings
        if settings.started_as_root:
            ended = self.as_root()
            if ended is not None:
                return ended
        else:
            self.as_user()
        secret: list[str | None] = [None]

        def take_credentials() -> PhaseResult:
            result, secret[0] = credentials.run(self.plan.credentials, os.environ)
            return result

        self.record("credentials", take_credentials)
        env = dict(self.plan.program.env)
        env.update(privileges.user_environment(settings.user))
        if self.plan.program_home is not None:
            env["HOME"] = self.plan.program_home
        if secret[0]:
            env.update({name: secret[0] for name in self.plan.credentials.given_as})
        program = replace(self.plan.program, env=environment.for_program(env))
        return Booted(self.phases, program)


def run(plan: BootPlan, stop: StopFlag, on_phase: Callable[[str], None], config: PhaseResult) -> Booted:
    """Run the boot's phases after `config` (the settings, read by `wiring`); `on_phase(text)` is
    told each phase as it starts (sd_notify STATUS=)."""
    return _Boot(plan, stop, on_phase, config).run()
