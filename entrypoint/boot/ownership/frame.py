"""What every engine of the ownership walk runs inside: the roots opened, the engine's walk, then
the figures, the warnings and the writability check that make the phase's result.

In the calling thread. The phase's `run` chooses an engine and passes it here; tests and benchmarks
pass one engine of their choosing (`inline` below, `threads.walk`, `processes.walk`), so that the
phase's own signature needs no knob for them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from ...common.plans import OwnershipMode, OwnershipPlan, StopFlag, TargetUser
from ...common.report import PhaseRecorder, PhaseResult
from .. import access
from .rules import PHASE, Task, warn
from .walk import Walk


class Crew(NamedTuple):
    """Who walked besides the calling thread, for the figures."""

    threads: int
    processes: int


# Walks what is left on the stack (the roots, opened), the first root on top, until it is done
# or the walk stops.
Engine = Callable[[Walk, list[Task]], Crew]


def run_with(plan: OwnershipPlan, user: TargetUser, stop: StopFlag, engine: Engine) -> PhaseResult:
    """Re-own everything under `plan.roots` that is not `plan.uid:plan.gid` with `engine`;
    never raises."""
    if plan.mode == OwnershipMode.OFF:
        return PhaseResult.skipped(PHASE, "disabled")
    recorder = PhaseRecorder(PHASE)
    walk = Walk(plan, stop)
    crew = engine(walk, walk.open_roots())
    walk.close_remaining()

    interrupted = stop.is_set()
    seen, changed, setid_cleared = walk.totals()
    recorder.figures.update(
        roots=list(plan.roots),
        workers=crew.processes or max(1, crew.threads),
        processes=crew.processes,
        seen=seen,
        changed=changed,
        skipped={reason: samples.count for reason, samples in walk.skipped.items()},
        errors=sum(samples.count for samples in walk.faults.values()),
        setid_cleared=setid_cleared,
        interrupted=interrupted,
    )
    warn(recorder, walk.skipped, walk.faults)
    if walk.failure is not None:
        recorder.failed = True
        recorder.warn("ownership_failed", f"the walk stopped on an internal error: {walk.failure!r}")
    if not interrupted:
        _check_writable(recorder, user, walk.walked)
    return recorder.result()


def inline(plan: OwnershipPlan, user: TargetUser, stop: StopFlag) -> PhaseResult:
    """The phase in the calling thread alone: no thread started, no process forked."""
    return run_with(plan, user, stop, in_calling_thread)


def in_calling_thread(walk: Walk, stack: list[Task]) -> Crew:
    """Walk everything in the calling thread, with a progress line every interval it runs."""
    next_line = walk.started + walk.interval
    while walk.walk_here(stack, walk.tallies[0], next_line) and stack:
        next_line = walk.progress(time.monotonic(), next_line)
    return Crew(threads=0, processes=0)


def _check_writable(recorder: PhaseRecorder, user: TargetUser, roots: list[str]) -> None:
    """Ask the kernel, as the target user, whether each walked root directory is writable."""
    unwritable = access.unwritable_for(user, roots)
    recorder.figures["unwritable"] = unwritable
    for path in unwritable:
        recorder.warn(
            "ownership_root_unwritable",
            f"{path} is not writable by {user.name} ({user.uid}:{user.gid}); the program may fail on it",
            path=path,
        )
