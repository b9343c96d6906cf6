"""The `upgrade` phase: before a release of the application other than the last one that ran on
this state first touches it (its gateway, or its CLI, whose start runs its own bootstrap on the
state), a checkpoint to go back to and the release's own word on the state; an older release than
the newest that ran is held, the state unchanged. `gate` decides; `checkpoint` takes and prunes
checkpoints; `sqlitecopy` consolidates their databases; `preflight` asks the new release;
`rollback` and `restore` (the operator's commands) put a checkpoint, or an archive of the
application's own, in place of the state through `swap`, whose journal a boot finishes.

Who runs it: the boot's upgrade phase in PID 1 (its place is pipeline.py's), after the privilege
drop, as the target user, holding the state lock from its first step for the rest of PID 1's life
(`common/statelock`: no operator's rollback or restore runs beside a live application); the
operator's `checkpoint`, `checkpoints`, `rollback` and `restore`, one-off processes that drop to
the target user first. What a boot of the same release costs is one read of the history (and a
look for a swap's journal); its modules import the rest only when the release changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from ...common import statelock, swapjournal
from ...common.fsops import describe, errno_name
from ...common.guardstate import HoldCause
from ...common.plans import Hold, StopFlag, UpgradePlan
from ...common.report import PhaseRecorder, PhaseResult
from ...common.settings import Name
from ..treecopy import Interrupted, SourceError
from .gate import decide

PHASE = "upgrade"
# Another init or an operator's rollback on the same volume: this long, then the boot holds.
LOCK_WAIT_S = 60.0


@dataclass
class UpgradeResult(PhaseResult):
    """The phase's result, with what steers the boot as typed fields."""

    holds: Hold | None = None
    lock: int | None = None  # the state lock's descriptor, held by PID 1 from now on
    # Once the new release has started: the old checkpoints pruned (this boot took one).
    after_start: Callable[[], object] | None = None


def run(plan: UpgradePlan, stop: StopFlag) -> UpgradeResult:
    recorder = PhaseRecorder(PHASE)
    try:
        lock = statelock.take(plan.record_dir, LOCK_WAIT_S)
    except statelock.StateBusy:
        reason = (
            f"another process holds this state (a rollback, a checkpoint, a second container on the "
            f"same volume) for more than {LOCK_WAIT_S:g}s: {plan.program} was not started"
        )
        recorder.warn("upgrade_state_busy", reason)
        return _ended(recorder, Hold(reason, HoldCause.STATE_BUSY, retry=False))
    except OSError as error:  # a record dir it cannot write: the gate cannot keep a way back
        return _failed(plan, recorder, describe(error), None, path=error.filename, errno=errno_name(error))
    try:
        if os.path.lexists(os.path.join(plan.record_dir, swapjournal.FILE)):
            _finish_swap(recorder, plan.record_dir)
        elif os.path.lexists(swapjournal.staging(plan.record_dir)):  # a swap killed while it staged
            import shutil  # only here: what PID 1 imports stays in its memory as long as it lives

            shutil.rmtree(swapjournal.staging(plan.record_dir), ignore_errors=True)
        decided = decide(plan, recorder, stop)
    except swapjournal.Unreadable as unreadable:  # the state may be half swapped: nothing starts on it
        return _failed(plan, recorder, str(unreadable), lock)
    except Interrupted:
        recorder.figures["interrupted"] = True  # the checkpoint's staging is gone; the boot ends
        return _ended(recorder, None, lock)
    except (OSError, SourceError) as error:
        fault = error.error if isinstance(error, SourceError) else error
        return _failed(plan, recorder, describe(fault), lock, path=fault.filename, errno=errno_name(fault))
    prune = None
    if decided.checkpoint is not None:
        from . import checkpoint  # the gate took one with it

        keep, spare = plan.settings.keep, decided.came_from
        prune = partial(checkpoint.prune, plan.record_dir, keep, spare)
    return _ended(recorder, decided.holds, lock, prune)


def _finish_swap(recorder: PhaseRecorder, record_dir: str) -> None:
    """A rollback or restore killed half-way, finished before anything starts on a state it may
    have left without its trees."""
    from . import swap  # only here: a boot with no journal imports none of it

    done = swap.resume(record_dir)
    if done is not None:
        recorder.warn(
            f"{done.kind}_finished",
            f"a {done.kind} of {done.source} was interrupted: it was finished now",
            source=done.source,
            aside=done.aside,
        )


def _failed(
    plan: UpgradePlan, recorder: PhaseRecorder, what: str, lock: int | None, **fields: object
) -> UpgradeResult:
    """A gate that could not finish keeps the new release from the state: no start without a way back."""
    setting = plan.variables[Name.UPGRADE_CHECKPOINT]
    reason = f"the upgrade gate could not finish ({what}): {plan.program} was not started"
    recorder.warn("upgrade_failed", reason, **fields)
    how = f"fix what the warning names and restart; or set {setting}=off to start without a checkpoint"
    return _ended(recorder, Hold(reason, HoldCause.UPGRADE_FAILED, how_to_leave=how, retry=False), lock)


def _ended(
    recorder: PhaseRecorder,
    holds: Hold | None,
    lock: int | None = None,
    after_start: Callable[[], object] | None = None,
) -> UpgradeResult:
    return UpgradeResult(**vars(recorder.result()), holds=holds, lock=lock, after_start=after_start)
