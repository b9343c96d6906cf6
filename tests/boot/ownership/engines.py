"""The engines that can walk a tree in the `ownership` phase, by name, each through its own entry
point: a test that takes the `engine` fixture runs once per engine, in this process (`run_phase`)
or in a child process (`run_isolated`, which passes the name). No pytest here: the child imports
this module too.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from entrypoint.boot import ownership
from entrypoint.boot.ownership import frame, processes, threads
from entrypoint.common.plans import OwnershipPlan, StopFlag, TargetUser
from entrypoint.common.report import PhaseResult

Engine = Callable[[OwnershipPlan, TargetUser, StopFlag], PhaseResult]

ENGINES: dict[str, Engine] = {
    # As the init chooses: trees as small as most tests make stay in the calling thread; a large
    # one goes to worker processes (more than one CPU) or threads.
    "auto": ownership.run,
    # The calling thread alone, start to end: no thread, no fork.
    "inline": frame.inline,
    # Two threads from the start, sharing directories (the init adds threads only on I/O waits).
    "threads": partial(threads.walk, workers=2),
    # Two worker processes, handed the whole walk at once, whatever its size.
    "processes": partial(processes.walk, processes=2),
}
