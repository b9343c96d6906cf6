"""The worker-process engine: what is left of a large walk, cut into subtrees, walked by processes
forked from PID 1, one per CPU.

Where it differs: the cut, the fan-out and the collection run in the calling thread; `_worker` runs
in the processes forked from it, as root too, until it leaves with os._exit. On a warm cache the
walk is CPU-bound and threads of one process do not add up (docs/benchmarks/ownership.md), so a walk
still running after the phase's hand-off time goes to processes: workers take subtrees from a pipe
and walk each with the very code `walk` runs in-process, from the directory descriptors they
inherit. The parent keeps the directories above the subtrees and re-owns them, post-order still,
once the workers report their subtrees done. It polls the stop flag and raises a halt flag in shared
memory that the workers check between entries (as often as a walk in-process checks the stop flag);
a worker that does not stop within KILL_AFTER_S (blocked on NFS) is killed, which chown's atomicity
makes safe. Workers report through a pipe as JSON.
"""

from __future__ import annotations

import json
import mmap
import os
import select
import signal
import struct
import threading
import time
from functools import partial
from typing import NoReturn

from ...common.plans import OwnershipPlan, StopFlag, TargetUser
from ...common.report import PhaseResult
from . import frame
from .frame import Crew
from .rules import SKIP_REASONS, Child, Dir, Samples, Tally, Task
from .walk import Walk

MAX_PROCESSES = 8  # worker processes at most (one per CPU below that)
TASKS_PER_PROCESS = 8  # subtrees per worker at least, so that uneven ones even out
MAX_BATCHES = 1024  # queue records (4 bytes each): they fit a pipe of one page, the smallest
KILL_AFTER_S = 0.5  # a worker still running this long after the halt flag is killed

_SLOT = struct.Struct("=3q")  # a worker's running tally: seen, changed, setid_cleared
_HALT = 8  # bytes before the slots; the first one is the halt flag


def walk(plan: OwnershipPlan, user: TargetUser, stop: StopFlag, *, processes: int) -> PhaseResult:
    """The phase with this engine alone: the whole walk handed to `processes` workers at once, in
    as few pieces as that takes, so that a small tree is too (tests, benchmarks). Where a fork is
    not safe (see `fork_is_safe`), or with 0, the calling thread walks alone."""
    return frame.run_with(plan, user, stop, partial(_at_once, count=processes))


def _at_once(walk: Walk, stack: list[Task], count: int) -> Crew:
    if count <= 0 or not fork_is_safe():
        return frame.in_calling_thread(walk, stack)
    return Crew(threads=0, processes=hand_over(walk, stack, count, pieces=count))


def fork_is_safe() -> bool:
    # Another thread may hold a lock (the logging module's, the allocator's) at the moment of the
    # fork, and it would stay held in the child forever; signal dispositions can only be reset
    # from the main thread.
    return (
        hasattr(os, "fork")
        and threading.current_thread() is threading.main_thread()
        and threading.active_count() == 1
    )


def available() -> int:
    """How many workers the init's walk may fork: one per CPU, at most MAX_PROCESSES; none with
    one CPU, or where a fork is not safe."""
    if not fork_is_safe():
        return 0
    cpus = len(os.sched_getaffinity(0))
    return min(cpus, MAX_PROCESSES) if cpus > 1 else 0


def hand_over(walk: Walk, stack: list[Task], count: int, pieces: int) -> int:
    """Cut what is left on `stack` into `pieces` subtrees (where the tree has that many), walk
    them in up to `count` workers, then re-own their parents here. Returns how many workers ran
    (0: none, the walk was done, stopped or went on here)."""
    tasks = _cut(walk, stack, walk.tallies[0], pieces) if stack else None
    if not tasks:
        return 0
    return _fan_out(walk, tasks, min(count, len(tasks)))


def _cut(walk: Walk, stack: list[Task], tally: Tally, want: int) -> list[Child] | None:
    """What is left of the walk as subtrees not entered yet, the shallowest first. None: stopped.

    The shallowest subtrees are listed here, a level at a time, until that level alone has
    `want` of them (or the tree ends). A depth-first walk paused midway leaves a few large
    subtrees near the top among many small deep ones; a worker that took one of the large
    ones would be left walking it alone. Roots still to walk (open already) are always
    listed here: workers only get directories to enter, whose parents stay in this process."""
    tasks = list(stack)
    while tasks:
        depths = [_depth(task) for task in tasks]
        top = min(depths)
        if top > 0 and depths.count(top) >= want:
            break
        rest: list[Task] = []
        for task, depth in zip(tasks, depths, strict=True):
            if depth != top:
                rest.append(task)
                continue
            directory = task if isinstance(task, Dir) else walk.enter(task, tally)
            children = [] if directory is None else walk.scan(directory, tally)
            if children is None or walk.stopping():
                return None
            if directory is not None:
                directory.pending += len(children)
                walk.finish(directory, tally)
            rest += children
        tasks = rest
    # The largest pieces first: workers take them in this order, the small ones even out last.
    return sorted((task for task in tasks if not isinstance(task, Dir)), key=_depth)


def _depth(task: Task) -> int:
    """How far below its root a task is: 0 for a root, 1 for a directory in a root, and so on."""
    depth, parent = (0, task.parent) if isinstance(task, Dir) else (1, task[0].parent)
    while parent is not None:
        depth, parent = depth + 1, parent.parent
    return depth


class _Board:
    """Memory shared by the parent and its workers (an anonymous mmap is MAP_SHARED, so a fork
    keeps it shared): the halt flag, and each worker's running tally, read by the parent for the
    progress lines and for the figures of a worker that had to be killed."""

    def __init__(self, slots: int) -> None:
        self.memory = mmap.mmap(-1, _HALT + _SLOT.size * slots)

    def halt(self) -> None:
        self.memory[0] = 1

    def halted(self) -> bool:
        return self.memory[0] != 0

    def publish(self, slot: int, tally: Tally) -> None:
        _SLOT.pack_into(
            self.memory, _HALT + _SLOT.size * slot, tally.seen, tally.changed, tally.setid_cleared
        )

    def read(self, slot: int, tally: Tally) -> None:
        tally.seen, tally.changed, tally.setid_cleared = _SLOT.unpack_from(
            self.memory, _HALT + _SLOT.size * slot
        )


class _WorkerStop:
    """The stop flag as a worker sees it. The walk polls it every STOP_CHECK_EVERY entries,
    which is also often enough to publish the worker's tally."""

    def __init__(self, board: _Board, slot: int, tally: Tally) -> None:
        self.board, self.slot, self.tally = board, slot, tally

    def is_set(self) -> bool:
        self.board.publish(self.slot, self.tally)
        return self.board.halted()


def _fan_out(walk: Walk, tasks: list[Child], count: int) -> int:
    """Walk `tasks` in `count` worker processes, then re-own their parents here; returns how
    many workers were started (0: none could be, the walk went on in-process)."""
    # Consecutive tasks go in one batch when there are more than the queue pipe holds.
    size = -(-len(tasks) // MAX_BATCHES)
    batches = [tasks[start : start + size] for start in range(0, len(tasks), size)]
    board = _Board(count)
    queue_read, queue_write = os.pipe()
    # Written whole before any worker starts: each read of 4 bytes then takes one record.
    os.write(queue_write, b"".join(index.to_bytes(4, "little") for index in range(len(batches))))
    os.close(queue_write)
    results: dict[int, tuple[int, bytearray]] = {}  # pipe from a worker -> its pid, what it sent
    try:
        for slot in range(count):
            result_read, result_write = os.pipe()
            try:
                pid = os.fork()
            except OSError:  # EAGAIN, ENOMEM: go on with the workers there are
                os.close(result_read)
                os.close(result_write)
                break
            if pid == 0:
                for fd in (result_read, *results):
                    os.close(fd)
                _worker(walk, batches, queue_read, result_write, board, slot)
            os.close(result_write)
            results[result_read] = (pid, bytearray())
    finally:
        os.close(queue_read)
    if not results:
        walk.walk_here(list(tasks), walk.tallies[0], None)
        return 0

    tallies = [Tally() for _ in range(count)]
    walk.tallies.extend(tallies)
    try:
        reports = _collect(walk, results, board, tallies)
    finally:
        for pid, _ in results.values():  # only after a failure of the collection itself
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        for fd in results:
            os.close(fd)
    for slot, tally in enumerate(tallies):
        board.read(slot, tally)
    done = _merge(walk, reports)
    if not walk.stopping():
        for index in done:
            for parent, _, _ in batches[index]:
                walk.finish(parent, walk.tallies[0])
    return len(reports)


def _collect(
    walk: Walk, results: dict[int, tuple[int, bytearray]], board: _Board, tallies: list[Tally]
) -> list[bytes | None]:
    """Wait for every worker: read its report, relay the stop flag, write the progress lines.
    Returns each worker's report (None: it ended without one)."""
    reports: list[bytes | None] = []
    next_line = walk.started + walk.interval
    halted_at: float | None = None
    while results:
        readable, _, _ = select.select(
            list(results), [], [], max(0.0, min(0.1, next_line - time.monotonic()))
        )
        for fd in readable:
            chunk = os.read(fd, 65536)
            if chunk:
                results[fd][1].extend(chunk)
                continue
            pid, sent = results.pop(fd)
            os.close(fd)
            # The init is PID 1, but its reaper does not run during the phases: this is the
            # only wait for this child.
            _, status = os.waitpid(pid, 0)
            reports.append(bytes(sent) if os.waitstatus_to_exitcode(status) == 0 else None)
        now = time.monotonic()
        if halted_at is None and walk.stop.is_set():
            board.halt()
            halted_at = now
        elif halted_at is not None and now - halted_at >= KILL_AFTER_S:
            for pid, _ in results.values():
                os.kill(pid, signal.SIGKILL)
            halted_at = float("inf")  # killed once; their pipes close now
        for slot, tally in enumerate(tallies):
            board.read(slot, tally)
        next_line = walk.progress(now, next_line)
    return reports


def _worker(
    walk: Walk, batches: list[list[Child]], queue: int, out: int, board: _Board, slot: int
) -> NoReturn:
    """A forked worker: walk batches taken from the queue, report, and leave with os._exit (never
    through the caller's code, which the parent runs on)."""
    code = 1
    try:
        # Signals are the parent's to handle (the init's handlers would set a copy of its stop
        # flag nobody reads, and its wakeup fd is the parent's): a SIGTERM or SIGINT sent here
        # ends the worker, between two system calls, which chown's atomicity makes safe.
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        for directory in walk.open_dirs:
            directory.in_charge = False
        tally = Tally()
        walk.tallies = [tally]
        walk.skipped = {reason: Samples() for reason in SKIP_REASONS}
        walk.faults = {}
        walk.stop = _WorkerStop(board, slot, tally)
        done: list[int] = []
        failure = None
        try:
            while record := os.read(queue, 4):
                index = int.from_bytes(record, "little")
                if not walk.walk_here(list(batches[index]), tally, None):
                    break
                done.append(index)
        except Exception as error:  # reported, so that the parent fails the phase with it
            failure = repr(error)
        board.publish(slot, tally)
        report = {
            "done": done,
            "failure": failure,
            "skipped": {reason: [s.count, s.paths] for reason, s in walk.skipped.items()},
            "faults": {number: [s.count, s.paths] for number, s in walk.faults.items()},
        }
        data = json.dumps(report).encode("ascii")  # names undecodable as UTF-8 travel as \udcXX
        while data:
            data = data[os.write(out, data) :]
        code = 0
    finally:
        os._exit(code)


def _merge(walk: Walk, reports: list[bytes | None]) -> list[int]:
    """Add the workers' skips and faults to the walk's; return the batches they finished."""
    done: list[int] = []
    for raw in reports:
        if raw is None:
            if not walk.stop.is_set():  # killed after a stop is expected; otherwise a bug
                walk.failure = walk.failure or RuntimeError("a worker process ended without a report")
            continue
        report = json.loads(raw)
        done += report["done"]
        if report["failure"] is not None:
            walk.failure = walk.failure or RuntimeError(f"in a worker process: {report['failure']}")
        for reason, (count, paths) in report["skipped"].items():
            walk.skipped[reason].absorb(count, paths)
        for number, (count, paths) in report["faults"].items():
            walk.faults.setdefault(int(number), Samples()).absorb(count, paths)
    return done
