"""The boot, in order: prepare, ownership, migration, privileges (the drop), upgrade, credentials
(with `AFTER_REPAIR` set, the verdict `after_repair` after the drop); started non-root: prepare,
migration, privileges (an access check), upgrade, credentials. With `CONFIG_SEED` set, `config_seed`
last, unless the boot holds.

It ends as the target user and hands the program, ready to start, back to `start`, which gives it to
`pid1/`. Only this module knows the order of the phases; the package, the README and the tests point
here. A phase that raises is a failed phase with a warning, never a crash: the program still starts,
on whatever the phases managed to do.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace

from ..common import environment, log
from ..common import report as reporting
from ..common.exits import Exit, by_signal
from ..common.guardstate import HoldCause
from ..common.plans import Booted, BootPlan, Hold, StopFlag
from ..common.report import PhaseResult
from . import after_repair, credentials, migration, ownership, preflight, prepare, privileges, seed, upgrade

_LOG = log.get("boot")


class _Boot:
    def __init__(
        self, plan: BootPlan, stop: StopFlag, on_phase: Callable[[str], None], config: PhaseResult
    ) -> None:
        self.plan = plan
        self.settings = plan.settings
        self.stop = stop
        self.on_phase = on_phase
        self.phases: list[PhaseResult] = [config]
        self.hold: Hold | None = None
        self.after_start: list[Callable[[], object]] = []

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

    def migrate(self) -> PhaseResult:
        """The migration phase; a migration that did not finish holds the program (its old state is
        not in place: it would start as a new installation), with the ways out."""
        plan = self.plan
        migrated = self.record("migration", lambda: migration.run(plan.migration, self.stop))
        reason = migrated.holds if isinstance(migrated, migration.MigrationResult) else None
        if migrated.status == "failed" and not isinstance(migrated, migration.MigrationResult):
            reason = f"the migration phase failed: {migrated.warnings[0]['message']}"
        if reason is not None:
            program, setting = plan.program.name, plan.migration.mode_setting
            self.hold = Hold(
                f"the old state was not migrated: {reason}",
                HoldCause.MIGRATION,
                how_to_leave=f"restart the container once the cause is fixed, to migrate; or set "
                f"{setting}=off and restart, to start without the old state; or run `supervisorctl "
                f"start {program}` to start it once as it is, without the old state",
                retry=False,
            )
        return migrated

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
            return self.ended(Exit.CONFIG)
        self.record("prepare", lambda: prepare.run(plan.prepare))
        self.record("ownership", lambda: ownership.run(plan.ownership, user, self.stop))
        if self.interrupted():
            return self.ended(by_signal(self.stop.signal_number))
        migrated = self.migrate()
        if isinstance(migrated, migration.MigrationResult) and migrated.moved_by_rename:
            # A renamed tree keeps its old owners (often root: the very EACCES this image fixes).
            moved = replace(plan.ownership, roots=(plan.migration.target,))
            self.record("ownership_migrated", lambda: ownership.run(moved, user, self.stop))
        if self.interrupted():
            return self.ended(by_signal(self.stop.signal_number))
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
            return self.ended(Exit.FAILED)
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
        self.migrate()
        directories = (settings.state_dir, settings.workspace_dir, settings.run_dir)
        self.record("privileges", lambda: privileges.check_access(settings.user, directories))

    def upgrade(self) -> None:
        """The upgrade gate, as the user, on the state the migration left: skipped when that state is
        not the user's (the boot holds already); its hold, and the pruning once the release started."""
        plan = self.plan.upgrade
        if self.hold is not None:
            self.note(PhaseResult.skipped("upgrade", "held: the old state was not migrated"))
            return
        upgraded = self.record("upgrade", lambda: upgrade.run(plan, self.stop))
        if not isinstance(upgraded, upgrade.UpgradeResult):  # it crashed: no way back was made
            reason = f"the upgrade phase failed: {upgraded.warnings[0]['message']}"
            self.hold = Hold(reason, HoldCause.UPGRADE_FAILED, retry=False)
            return
        self.hold = upgraded.holds
        if upgraded.after_start is not None:
            self.after_start.append(upgraded.after_start)

    def run(self) -> Booted:
        settings = self.settings
        if settings.started_as_root:
            ended = self.as_root()
            if ended is not None:
                return ended
        else:
            self.as_user()
        self.upgrade()
        if self.interrupted():  # a stop during a checkpoint: nothing was recorded, the boot ends
            return self.ended(by_signal(self.stop.signal_number))
        secret: list[str | None] = [None]

        def take_credentials() -> PhaseResult:
            result, secret[0] = credentials.run(self.plan.credentials, os.environ)
            return result

        self.record("credentials", take_credentials)
        if self.plan.seed.source and self.hold is None:  # held, the old state is not in place yet
            self.record("config_seed", lambda: seed.run(self.plan.seed))
        env = dict(self.plan.program.env)
        env.update(privileges.user_environment(settings.user))
        if self.plan.program_home is not None:
            env["HOME"] = self.plan.program_home
        if secret[0]:
            env.update({name: secret[0] for name in self.plan.credentials.given_as})
        program = replace(self.plan.program, env=environment.for_program(env))
        return Booted(self.phases, program, hold=self.hold, after_start=tuple(self.after_start))


def run(plan: BootPlan, stop: StopFlag, on_phase: Callable[[str], None], config: PhaseResult) -> Booted:
    """Run the boot's phases after `config` (the settings, read by `wiring`); `on_phase(text)` is
    told each phase as it starts (sd_notify STATUS=)."""
    return _Boot(plan, stop, on_phase, config).run()
