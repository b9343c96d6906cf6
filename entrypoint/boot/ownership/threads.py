"""The thread engine: the walk in threads of PID 1, one at first, more only while it waits on I/O.

Where it differs: threads of PID 1, where a fork is not safe (another thread exists, or this is not
the main thread) or there is one CPU: the calling thread supervises, the threads it starts walk. On
a warm cache the walk is CPU-bound and threads do not add up, since they take turns on the GIL
(measured in docs/benchmarks/ownership.md); so one thread walks, and threads up to MAX_WORKERS are
added only while the walk is seen waiting on I/O (cold cache, NFS), where they overlap the waits.
Threads share directories (not single entries) through a LIFO stack, so each one mostly walks depth
first on its own, and open descriptors stay bounded by the tree's depth, not its width.
"""

from __future__ import annotations

import threading
import time
from functools import partial

from ...common.plans import OwnershipPlan, StopFlag, TargetUser
from ...common.report import PhaseResult
from . import frame
from .frame import Crew
from .rules import PHASE, Dir, Tally, Task
from .walk import Walk

MAX_WORKERS = 8  # threads at most, all but one waiting on the disk when it comes to that
BUSY_SHARE = 0.8  # the walk's threads run or wait for a CPU less than this: it waits on I/O
ENLIST_CHECK_S = 0.25  # how often the supervisor decides whether to add a thread


def walk(plan: OwnershipPlan, user: TargetUser, stop: StopFlag, *, workers: int | None = None) -> PhaseResult:
    """The phase with this engine alone: exactly `workers` threads, or, with None, one plus threads
    added while the walk waits on I/O (as the init walks where it cannot fork)."""
    return frame.run_with(plan, user, stop, partial(in_threads, workers=workers))


def in_threads(walk: Walk, stack: list[Task], workers: int | None = None) -> Crew:
    """Walk `stack` in threads until it is done or the walk stops; the calling thread waits."""
    walk.threaded = True
    pool = _Pool(walk, stack)
    pool.enlist(max(1, workers or 1))
    _supervise(pool, adaptive=workers is None)
    return Crew(threads=len(pool.threads), processes=0)


class _Pool:
    """The walk's threads and the directories they share."""

    def __init__(self, walk: Walk, stack: list[Task]) -> None:
        self.walk = walk
        self.threads: list[threading.Thread] = []
        self.thread_ids: list[int] = []  # kernel ids, for /proc/self/task/<id>/schedstat
        self._shared: list[Task] = list(stack)
        self._cond = threading.Condition(threading.Lock())  # guards `_shared`, `_idle`, the halt
        self._idle = 0
        self._done = False

    def enlist(self, count: int = 1) -> None:
        """Start `count` more threads, unless the walk is over: all of them, also when the first
        ones finish a small tree before the last one starts (the crew is the one asked for)."""
        with self._cond:
            if self._done or self.walk.halted:
                return
            tallies = [Tally() for _ in range(count)]
            crew = [
                threading.Thread(target=self._run, args=(tally,), name=PHASE, daemon=True)
                for tally in tallies
            ]
            self.walk.tallies.extend(tallies)
            self.threads.extend(crew)
        for thread in crew:
            thread.start()

    def halt(self) -> None:
        with self._cond:
            self.walk.halted = True
            self._cond.notify_all()

    def alive(self) -> threading.Thread | None:
        return next((thread for thread in self.threads if thread.is_alive()), None)

    def busy_ns(self) -> int | None:
        """Nanoseconds the walk's threads spent on a CPU or queued for one (None: /proc says
        nothing). What is left of the wall time, they slept: on the disk, or for the GIL."""
        total, read = 0, 0
        for thread_id in list(self.thread_ids):
            try:
                with open(f"/proc/self/task/{thread_id}/schedstat", encoding="ascii") as schedstat:
                    on_cpu, queued, _ = schedstat.read().split()
            except (OSError, ValueError):
                continue  # a thread that just ended, or no /proc at all
            total += int(on_cpu) + int(queued)
            read += 1
        # Nothing readable while threads run: no /proc (or no schedstat), so nothing is known.
        return total if read or not self.thread_ids else None

    def _run(self, tally: Tally) -> None:
        self.thread_ids.append(threading.get_native_id())
        try:
            self._work(tally)
        except BaseException as error:  # a bug must end the walk, never hang the other threads
            self.walk.failure = error
            self.halt()

    def _work(self, tally: Tally) -> None:
        walk = self.walk
        local: list[Task] = []
        while True:
            if not local:
                task = self._take()
                if task is None:
                    return
                local.append(task)
            task = local.pop()
            directory = task if isinstance(task, Dir) else walk.enter(task, tally)
            if directory is None:
                continue
            children = walk.scan(directory, tally)
            if children is None:  # stopped in the middle of the listing
                self.halt()
                return
            if children:
                # No lock: no other thread can see these children (and so decrement) yet.
                directory.pending += len(children)
                local.extend(children)
                if self._idle and len(local) > 1:
                    self._share(local)
            walk.finish(directory, tally)
            if walk.stopping():
                self.halt()
                return

    def _take(self) -> Task | None:
        """The next shared directory, or None once every thread is idle with nothing shared."""
        with self._cond:
            self._idle += 1
            while not self._shared and not self.walk.halted and self._idle < len(self.threads):
                self._cond.wait()
            if self._shared and not self.walk.halted:
                self._idle -= 1
                return self._shared.pop()
            self._done = True  # every thread idle with nothing shared, or halted: no more enlisting
            self._cond.notify_all()
            return None

    def _share(self, local: list[Task]) -> None:
        # Called only while another thread waits (the lock and the wake-up cost more than a
        # directory's worth of work when everyone is busy). The bottom half of the stack is given
        # away: the directories nearest the top of the tree, likely the largest pieces of work.
        half = len(local) // 2
        with self._cond:
            self._shared.extend(local[:half])
            self._cond.notify(self._idle)
        del local[:half]


def _supervise(pool: _Pool, *, adaptive: bool) -> None:
    """Wait for the walk: relay the stop flag, add threads while it is I/O-bound, and write a
    progress line every interval once it runs that long."""
    walk = pool.walk
    next_line = walk.started + walk.interval
    checked_at, busy_at = walk.started, pool.busy_ns()
    while (thread := pool.alive()) is not None:
        thread.join(min(0.1, max(0.0, next_line - time.monotonic())))
        # Threads poll the stop flag themselves; relaying it also wakes the idle ones, and one
        # blocked in a slow system call (NFS) does not keep the others from stopping.
        if walk.stop.is_set():
            pool.halt()
        now = time.monotonic()
        if adaptive and busy_at is not None and now - checked_at >= ENLIST_CHECK_S:
            # Threads waiting for the GIL sleep, so while one thread holds it the walk counts as
            # busy for a whole CPU; less than that, and at times every thread was blocked on the
            # disk (cold cache, NFS): one more thread overlaps those waits. Waiting in the run
            # queue (other work on the machine) counts as busy: more threads would not help.
            busy = pool.busy_ns()
            waiting = busy is not None and (busy - busy_at) / 1e9 / (now - checked_at) < BUSY_SHARE
            if waiting and len(pool.threads) < MAX_WORKERS:
                pool.enlist()
            checked_at, busy_at = now, busy
        next_line = walk.progress(now, next_line)
