"""The `ownership` phase: re-own every entry under the volume roots that is not `uid:gid`.

Who runs it: the boot's ownership phase in PID 1, as root (its place in the boot is pipeline.py's,
which runs it once more over a legacy tree that migration renamed into place, since a rename keeps
the old owners). The trees it walks are writable by the user it hands them to, so it treats their
contents as hostile. Where each duty lives:

- `rules`: what the walk may touch (links, mounts, hard links, post-order, set-ID bits), and the
  warnings about what it left alone;
- `walk`: the walk by directory descriptor that applies them, the same code in every engine;
- `frame`: the roots opened, an engine's walk, the figures and warnings of the result;
- the engines: `frame.inline` (the calling thread alone), `threads` (threads of PID 1, more only
  while the walk waits on I/O), `processes` (worker processes forked from PID 1, one per CPU).

`run` below chooses among them; each engine also has an entry point of its own, for the tests
and benchmarks that run one engine on purpose.
"""

from __future__ import annotations

from ...common.plans import OwnershipPlan, StopFlag, TargetUser
from ...common.report import PhaseResult
from . import frame, processes, threads
from .frame import Crew
from .rules import Task
from .walk import Walk

# A walk not done in the calling thread by then goes to worker processes: small trees, the common
# restart, never pay for a fork (what a fork costs: docs/benchmarks/ownership.md).
HANDOFF_S = 0.02


def run(plan: OwnershipPlan, user: TargetUser, stop: StopFlag) -> PhaseResult:
    """Re-own everything under `plan.roots` that is not `plan.uid:plan.gid`; never raises.

    The walk starts in the calling thread; if it is not done after HANDOFF_S, what is left goes to
    one worker process per CPU, when a fork is safe here and there is more than one CPU.
    Otherwise it walks in threads: one, plus threads added while it waits on I/O.
    """
    return frame.run_with(plan, user, stop, _choose)


def _choose(walk: Walk, stack: list[Task]) -> Crew:
    count = processes.available()  # 0: one CPU, or a fork is not safe here (another thread runs)
    if not count:
        return threads.in_threads(walk, stack)
    if not walk.walk_here(stack, walk.tallies[0], walk.started + HANDOFF_S):
        return Crew(threads=0, processes=0)  # stopped
    pieces = count * processes.TASKS_PER_PROCESS
    return Crew(threads=0, processes=processes.hand_over(walk, stack, count, pieces))
