"""After a repair: have the root steps left anything that still needs root? The verdict a
deployment that runs as root only to repair (`<PREFIX>AFTER_REPAIR` set, as by a repair overlay)
reads in the startup report, to know when it may start without root again.

Where it differs: as the target user, after the drop of a boot started as root, and only when that
setting is set. It judges the phases' results, nothing else: no volume is read again. A start as the
user needs every volume owned by it and nothing left to migrate; the root steps vouch for both only
when the ownership walk ran and every phase ended without a warning (a conflict, an entry left
alone, a legacy tree that could not be read: each is a reason to keep root, and to read the warning
above it).
"""

from __future__ import annotations

from ..common.plans import TargetUser
from ..common.report import PhaseRecorder, PhaseResult

PHASE = "after_repair"
_NOT_DONE = ("warned", "failed")


def judge(phases: list[PhaseResult], then: str, user: TargetUser) -> PhaseResult:
    """The verdict on `phases` (the boot's so far, the drop included); `then` is what to do once
    the root steps are done, in the deployment's own words."""
    recorder = PhaseRecorder(PHASE)
    pending = [
        f"{phase.name} {phase.status} ({', '.join(w['event'] for w in phase.warnings) or 'no warning'})"
        for phase in phases
        if phase.status in _NOT_DONE
    ]
    walked = any(phase.name == "ownership" and phase.status != "skipped" for phase in phases)
    if not walked:
        pending.append("ownership skipped: nothing vouches for the volumes' owners")
    ids = f"{user.uid}:{user.gid}"
    if pending:
        recorder.warn(
            "repair_pending",
            f"the root steps are not done: {'; '.join(pending)}. Keep starting as root; fix what the "
            "warnings above say, then restart",
            pending=pending,
        )
        recorder.figures.update(ready=False)
        return recorder.result()
    recorder.figures.update(
        ready=True,
        message=f"the root steps are done: every volume is owned by {user.name} ({ids}) and no old "
        f"state is left to migrate; a start as {ids} needs no root now: {then}",
        next=then,
    )
    return recorder.result()
