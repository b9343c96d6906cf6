"""The `migration` phase: the state volume's layout kept, and legacy state moved into the
application's state dir once, never clobbering, never losing a file.

Who runs it: the boot's migration phase in PID 1 (its place in the boot is pipeline.py's), holding
the migration lock from its first step (`staging.lock`): as root, or, when the container was started
as the target user (`--user`, runAsNonRoot), as that user, copying only what it can read and
changing no owner. Everything it knows about the application (legacy paths, the volume's layout,
config file names, the home's links, the setting's name) arrives in the `MigrationPlan`.

The volume: its root holds the application's state dir (the target), the init's record dir, the
application's home and nothing else; whatever else is found there (an earlier version kept the
state at the root; a failed start leaves empty dirs) is moved into the target on every boot,
even with the migration set to off.

Choice of the source: the first legacy path that is a real directory holding data. A legacy path
that is a symbolic link into the volume was linked by an earlier version: migrated; a link
elsewhere is never followed. Later sources holding data are reported, never merged silently.
How the source reaches the target (rename, copy, merge, or a save aside when the target holds
different versions of its files) is in `decision`.

The modules, in the order a boot meets them: `decision` (what this boot does), `sources` (the
survey of the legacy paths), `staging` (the lock; start or resume a migration), `relocate` (the
volume's root), `compare` (a target that holds something), `copier`, `commit` (from a complete
staging to the record), `settle` (config name, home links); `journal` owns the files in the
record dir and `context` what the steps share.

Faults (EACCES/EPERM on the source, EROFS and ENOSPC on the target, entries vanishing, a source
replaced under the copy) are warnings, never exceptions out of `run`: a copy that fails before the
commit removes its staging, leaving the target as it was; a SIGKILL at any instant is finished by
the next boot (see `commit`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from ...common.fsops import describe, errno_name
from ...common.plans import MigrationMode, MigrationPlan, StopFlag
from ...common.report import PhaseRecorder, PhaseResult
from .context import PHASE, Context, Outcome
from .decision import decide
from .journal import Strategy

__all__ = ["PHASE", "MigrationResult", "Outcome", "Strategy", "run"]


@dataclass
class MigrationResult(PhaseResult):
    """The phase's result, with what steers the boot as typed fields (figures are for the report)."""

    outcome: Outcome = Outcome.NOTHING_TO_MIGRATE
    strategy: Strategy | None = None
    # Why the application must not start on this volume (its old state exists and did not make it
    # into the target: the target is not the user's state), or None.
    holds: str | None = None

    @property
    def moved_by_rename(self) -> bool:
        """The legacy tree was renamed in whole: it kept its old owners, which need repair."""
        return self.outcome is Outcome.MIGRATED and self.strategy is Strategy.RENAME


# The warnings that say why a migration did not finish (the first one is the cause).
_FAILURES = frozenset(
    {
        "migration_busy",
        "migration_failed",
        "migration_no_space",
        "migration_source_error",
        "migration_source_unreadable",
        "migration_source_vanished",
        "migration_staging_kept",
        "migration_target_read_only",
    }
)


def _holds(ctx: Context) -> str | None:
    """A migration of old state that failed holds the application: started on an empty target it
    would run as a new installation, and its new state would later conflict with the old. As the
    user, a legacy dir it cannot read is the user's choice (documented: one warning, the start)."""
    failed = ctx.outcome is Outcome.FAILED and (ctx.legacy_found or ctx.source is not None)
    blocked = ctx.outcome is Outcome.BLOCKED and ctx.plan.owner is not None
    if not (failed or blocked):
        return None
    said = next((w["message"] for w in ctx.recorder.warnings if w["event"] in _FAILURES), None)
    return ctx.failure or said or f"the migration of {ctx.source or 'the legacy state'} did not finish"


def run(plan: MigrationPlan, stop: StopFlag) -> PhaseResult:
    recorder = PhaseRecorder(PHASE)
    with contextlib.ExitStack() as descriptors:
        ctx = Context(plan, stop, recorder, descriptors)
        try:
            decide(ctx)
        except OSError as error:  # anything unforeseen on the filesystem: a warning, the boot goes on
            ctx.outcome = Outcome.FAILED
            recorder.warn(
                "migration_failed",
                f"migration into {plan.target} stopped: {describe(error)}",
                target=plan.target,
                errno=errno_name(error),
            )
        for fd in ctx.made:
            ctx.owner.give(fd)
        if ctx.owner.refused and plan.owner is not None:
            recorder.warn(
                "migration_chown_failed",
                f"{ctx.owner.refused} migrated entries could not be given to {plan.owner[0]}:"
                f"{plan.owner[1]} (EPERM: the init lacks CAP_CHOWN?); they stay owned by the init's user",
                count=ctx.owner.refused,
            )
    result = MigrationResult(
        **vars(recorder.result()), outcome=ctx.outcome, strategy=ctx.strategy, holds=_holds(ctx)
    )
    if plan.mode == MigrationMode.OFF:
        # Only the volume's layout was kept: the report says why nothing else happened.
        result.figures = {"reason": f"{plan.mode_setting}=off", "relocated": result.figures["relocated"]}
        result.status = "skipped" if result.status == "ok" else result.status
    return result
