"""The `ownership` phase: re-own every entry under the volume roots that is not `uid:gid`.

Runs as root before the privilege drop. The trees it walks are writable by the user it hands them
to, so it treats their contents as hostile:

- Every name is resolved relative to a directory file descriptor, and no call follows a symbolic
  link: `fstatat`/`fchownat` with AT_SYMLINK_NOFOLLOW (a link is re-owned itself, lchown-style, its
  target never), and directories are opened with O_NOFOLLOW, then `fstat`ed and compared (device,
  inode) with what the listing's `lstat` saw. A directory swapped for a link or for another directory
  between the two is left alone (`replaced`), so a race can never steer the walk out of the tree.
- It stays on each root's filesystem: any entry whose device differs (a nested mount point), or
  that /proc/self/mountinfo lists as a mount point (a bind mount from the same filesystem, e.g. a
  bind-mounted file, has the same device), is reported (`mount_point`), neither entered nor
  re-owned.
- A non-directory with more than one hard link that is not already the target's is left alone
  (`hardlink`): its other names may be outside the tree, e.g. a link planted to /etc/shadow.
- A directory is re-owned only after everything below it (post-order): while its entries are
  being handled it keeps its old owner, so a user who could not write into it before cannot swap
  its entries under the walk either. In a directory the user could already write, a regular file
  swapped for a hard link between the `lstat` and the `fchownat` remains a window; the kernel's
  fs.protected_hardlinks=1 (the default of every mainstream distribution) closes it by refusing
  hard links to files the user does not own.
- A root is opened without following its last component: a root that is a symbolic link (say,
  planted by the user owning the directory above it) is reported (`symlink_root`), not followed.
- FIFOs, sockets and device nodes are re-owned by name, never opened (an open of a FIFO blocks,
  an open of a device can act on the hardware).
- Mode bits are never set. The kernel itself clears the set-user-ID bit (and set-group-ID when
  group-execute is set) of a regular file whose owner changes, and drops its file capabilities;
  that is kept on purpose (restoring it would mint set-ID programs of the target user) and counted
  as `setid_cleared`. 0600 secrets stay 0600.
- chown(2) is atomic per entry: whenever the walk stops (SIGTERM via the stop flag, or a fault),
  every entry is either old-owned or new-owned.

Faults (EPERM without CAP_CHOWN, EROFS, EACCES, ELOOP, entries vanishing) are counted and reported
as one warning per kind with a few sample paths; nothing is raised out of `run`.

Speed. The work is system calls, but on a warm cache each one takes ~2 µs, and the Python around
it as much again: one thread is CPU-bound, and threads do not add up (handing the GIL from thread
to thread costs as much as a call; bench/ownership). So a large tree is walked by worker
*processes*, one per CPU: the walk starts in the calling thread, and if it has not finished after
HANDOFF_S (a small tree, the common case, never pays for a fork), what is left of it is cut into
subtrees that forked workers take from a pipe, each one walking its subtrees with exactly the
code above, from the directory descriptors they inherit. The parent keeps the directories above
the subtrees and re-owns them, post-order still, once the workers report their subtrees done.
The parent polls the stop flag and raises a halt flag in shared memory that the workers check
between entries (as often as a walk in-process checks the stop flag); a worker that does not
stop within KILL_AFTER_S (blocked on NFS) is killed, which chown's atomicity makes safe too.
Workers report through a pipe as JSON and leave with os._exit, never through the caller's code.
A fork is only done from the main thread while no other thread exists (a lock another thread
holds would stay held in the child forever); otherwise, and with one CPU, the walk uses the
thread pool below: one thread, plus threads up to MAX_WORKERS only while the walk is seen
waiting on I/O (cold cache, NFS), where they overlap the waits. Threads share directories (not
single entries) through a LIFO stack, so each one mostly walks depth first on its own, and open
descriptors stay bounded by the tree's depth, not its width.
"""

from __future__ import annotations

import errno
import json
import mmap
import os
import re
import select
import signal
import stat
import struct
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NoReturn, Protocol

from ..common import log
from ..common.plans import OwnershipPlan, StopFlag, TargetUser
from ..common.report import PhaseRecorder, PhaseResult
from . import access

PHASE = "ownership"
SAMPLES = 5  # sample paths kept per kind of fault or skip: enough to act on, never 100k lines
STOP_CHECK_EVERY = 256  # entries between two looks at the stop flag inside a large directory
MAX_WORKERS = 8  # threads at most, all but one waiting on the disk when it comes to that
BUSY_SHARE = 0.8  # the walk's threads run or wait for a CPU less than this: it waits on I/O
ENLIST_CHECK_S = 0.25  # how often the supervisor decides whether to add a thread
HANDOFF_S = 0.02  # a walk not done in-process by then goes to worker processes (~3 ms per fork)
MAX_PROCESSES = 8  # worker processes at most (one per CPU below that)
TASKS_PER_PROCESS = 8  # subtrees per worker at least, so that uneven ones even out
MAX_BATCHES = 1024  # queue records (4 bytes each): they fit a pipe of one page, the smallest
KILL_AFTER_S = 0.5  # a worker still running this long after the halt flag is killed
SKIP_REASONS = ("mount_point", "hardlink", "replaced", "vanished", "missing_root", "symlink_root")

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

_HINTS = {
    errno.EPERM: "the init lacks CAP_CHOWN (--cap-drop ALL?) or the volume is root-squashed NFS",
    errno.EROFS: "the volume is mounted read-only",
    errno.EACCES: "the init may not read or search these directories (capabilities dropped? FUSE?)",
    errno.ELOOP: "a path component is a symbolic link; it was not followed",
}

_logger = log.get(PHASE)


@dataclass(eq=False, slots=True)
class _Dir:
    """An opened, verified directory. `pending` counts its own listing plus each unfinished
    subdirectory; when it drops to 0 the directory itself is re-owned and its descriptor closed."""

    fd: int
    path: str
    dev: int
    uid: int
    gid: int
    parent: _Dir | None
    pending: int = 1
    # False in a worker process for the directories it inherited: the parent process re-owns
    # them once every worker is done with what is below them.
    in_charge: bool = True


# A subdirectory seen in a listing but not opened yet, as (parent, name, its lstat): opening is
# deferred to the thread that walks it, so a directory with 10k subdirectories does not hold 10k
# descriptors. A plain tuple: one is made per directory of the tree, on the hot path.
_Child = tuple[_Dir, str, os.stat_result]


class _Stop(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class _Tally:
    """One per thread, updated without a lock; the progress line reads them (a stale read is fine)."""

    seen: int = 0
    changed: int = 0
    setid_cleared: int = 0


@dataclass
class _Samples:
    count: int = 0
    paths: list[str] = field(default_factory=list)

    def add(self, path: str) -> None:
        self.count += 1
        if len(self.paths) < SAMPLES:
            self.paths.append(path)


def _depth(task: _Dir | _Child) -> int:
    """How far below its root a task is: 0 for a root, 1 for a directory in a root, and so on."""
    depth, parent = (0, task.parent) if isinstance(task, _Dir) else (1, task[0].parent)
    while parent is not None:
        depth, parent = depth + 1, parent.parent
    return depth


def _loses_setid(mode: int) -> bool:
    # The kernel's rule for a regular file whose owner changes: S_ISUID always goes; S_ISGID goes
    # only with group-execute (without it, S_ISGID marks mandatory locking, not a set-ID program).
    return bool(mode & stat.S_ISUID or (mode & stat.S_ISGID and mode & stat.S_IXGRP))


def _mounts_below(roots: Iterable[str]) -> dict[str, frozenset[str]]:
    """Mount points below the roots, as {directory path as walked: names mounted in it}.

    A bind mount from the root's own filesystem keeps its device number, so comparing devices
    does not see it; the mount table does. Without /proc this is empty and the device check
    still stops at every other filesystem.
    """
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as mountinfo:
            # Field 5 is the mount point, with space, tab, newline and backslash octal-escaped.
            points = [_unescape(line.split()[4]) for line in mountinfo if line.strip()]
    except (OSError, IndexError):
        return {}
    found: dict[str, set[str]] = {}
    for root in roots:
        real = os.path.realpath(root)
        for point in points:
            if point.startswith(real.rstrip("/") + "/"):
                parent, name = (root + point[len(real.rstrip("/")) :]).rsplit("/", 1)
                found.setdefault(parent, set()).add(name)
    return {parent: frozenset(names) for parent, names in found.items()}


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)


class _Walk:
    def __init__(self, plan: OwnershipPlan, stop: StopFlag, roots: Iterable[str]) -> None:
        self.uid = plan.uid
        self.gid = plan.gid
        self.stop: _Stop = stop
        self.root_paths = frozenset(roots)
        self.mounts = _mounts_below(self.root_paths)
        self.walked: list[str] = []  # the roots that were opened as directories
        self.tallies = [_Tally()]  # [0]: the roots' own entries, counted by the calling thread
        self.threads: list[threading.Thread] = []
        self.thread_ids: list[int] = []  # kernel ids, for /proc/self/task/<id>/schedstat
        self.skipped = {reason: _Samples() for reason in SKIP_REASONS}
        self.faults: dict[int, _Samples] = {}
        self.failure: BaseException | None = None
        self.open_dirs: set[_Dir] = set()
        self._lock = threading.Lock()  # guards `pending` counts, skip and fault records
        self._shared: list[_Dir | _Child] = []
        self._cond = threading.Condition(threading.Lock())  # guards `_shared`, `_idle`, `_halt`
        self._idle = 0
        self._halt = False
        self._done = False

    # -- bookkeeping -------------------------------------------------------------------------

    def skip(self, reason: str, path: str) -> None:
        with self._lock:
            self.skipped[reason].add(path)

    def fault(self, error: OSError, path: str) -> bool:
        """Record a failed call; True when the entry vanished (then it is not counted as seen:
        `seen` and `skipped.vanished` never count the same entry)."""
        if error.errno == errno.ENOENT:  # removed between the listing and the call: a race, not a fault
            self.skip("vanished", path)
            return True
        with self._lock:
            self.faults.setdefault(error.errno or 0, _Samples()).add(path)
        return False

    def stopping(self) -> bool:
        return self._halt or self.stop.is_set()

    def halt(self) -> None:
        with self._cond:
            self._halt = True
            self._cond.notify_all()

    # -- roots -------------------------------------------------------------------------------

    def open_root(self, path: str, tally: _Tally) -> _Dir | None:
        """Open a root for the walk; a root that is not a directory is handled as a single entry."""
        try:
            seen = os.stat(path, follow_symlinks=False)
        except OSError as error:
            if error.errno == errno.ENOENT:
                self.skip("missing_root", path)
            else:
                self.fault(error, path)
            return None
        tally.seen += 1
        if stat.S_ISLNK(seen.st_mode):
            # A root replaced by a link (the user owns the directory above it) would hand the
            # target of the link to the user: never followed, never re-owned.
            self.skip("symlink_root", path)
            return None
        if not stat.S_ISDIR(seen.st_mode):
            tally.changed += self._own_entry(None, path, path, seen, tally)
            return None
        try:
            fd = os.open(path, _DIR_FLAGS)
        except OSError as error:
            self._open_failed(error, path, tally)
            return None
        directory = self._verified(fd, path, seen.st_dev, seen.st_ino, None)
        if directory is None:
            self.skip("replaced", path)
        else:
            self.walked.append(path)
        return directory

    def seed(self, tasks: list[_Dir | _Child]) -> None:
        self._shared.extend(tasks)

    # -- in the calling thread, and in worker processes --------------------------------------

    def walk_here(self, stack: list[_Dir | _Child], tally: _Tally, until: float | None) -> bool:
        """Walk depth first from `stack` (its top is its end) in the calling thread, until it is
        empty or the clock passes `until`; what is left stays in `stack`. False: stopped."""
        while stack:
            if until is not None and time.monotonic() >= until:
                return True
            task = stack.pop()
            directory = task if isinstance(task, _Dir) else self._enter(task, tally)
            if directory is None:
                continue
            children = self._scan(directory, tally)
            if children is None:
                return False
            directory.pending += len(children)
            stack.extend(children)
            self._finish(directory, tally)
            if self.stopping():
                return False
        return True

    def split(self, stack: list[_Dir | _Child], tally: _Tally, want: int) -> list[_Child] | None:
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
            rest: list[_Dir | _Child] = []
            for task, depth in zip(tasks, depths, strict=True):
                if depth != top:
                    rest.append(task)
                    continue
                directory = task if isinstance(task, _Dir) else self._enter(task, tally)
                children = [] if directory is None else self._scan(directory, tally)
                if children is None or self.stopping():
                    return None
                if directory is not None:
                    directory.pending += len(children)
                    self._finish(directory, tally)
                rest += children
            tasks = rest
        # The largest pieces first: workers take them in this order, the small ones even out last.
        return sorted((task for task in tasks if not isinstance(task, _Dir)), key=_depth)

    # -- the threads -------------------------------------------------------------------------

    def enlist(self) -> None:
        """Start one more thread, unless the walk is over."""
        with self._cond:
            if self._done or self._halt:
                return
            tally = _Tally()
            self.tallies.append(tally)
            thread = threading.Thread(target=self._run, args=(tally,), name=PHASE, daemon=True)
            self.threads.append(thread)
        thread.start()

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

    # -- the walk ----------------------------------------------------------------------------

    def _run(self, tally: _Tally) -> None:
        self.thread_ids.append(threading.get_native_id())
        try:
            self._work(tally)
        except BaseException as error:  # a bug must end the walk, never hang the other threads
            self.failure = error
            self.halt()

    def _work(self, tally: _Tally) -> None:
        local: list[_Dir | _Child] = []
        while True:
            if not local:
                task = self._take()
                if task is None:
                    return
                local.append(task)
            task = local.pop()
            directory = task if isinstance(task, _Dir) else self._enter(task, tally)
            if directory is None:
                continue
            children = self._scan(directory, tally)
            if children is None:  # stopped in the middle of the listing
                self.halt()
                return
            if children:
                # No lock: no other thread can see these children (and so decrement) yet.
                directory.pending += len(children)
                local.extend(children)
                if self._idle and len(local) > 1:
                    self._share(local)
            self._finish(directory, tally)
            if self.stopping():
                self.halt()
                return

    def _take(self) -> _Dir | _Child | None:
        """The next shared directory, or None once every thread is idle with nothing shared."""
        with self._cond:
            self._idle += 1
            while not self._shared and not self._halt and self._idle < len(self.threads):
                self._cond.wait()
            if self._shared and not self._halt:
                self._idle -= 1
                return self._shared.pop()
            self._done = True  # every thread idle with nothing shared, or halted: no more enlisting
            self._cond.notify_all()
            return None

    def _share(self, local: list[_Dir | _Child]) -> None:
        # Called only while another thread waits (the lock and the wake-up cost more than a
        # directory's worth of work when everyone is busy). The bottom half of the stack is given
        # away: the directories nearest the top of the tree, likely the largest pieces of work.
        half = len(local) // 2
        with self._cond:
            self._shared.extend(local[:half])
            self._cond.notify(self._idle)
        del local[:half]

    def _enter(self, child: _Child, tally: _Tally) -> _Dir | None:
        parent, name, seen = child
        path = f"{parent.path}/{name}"
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent.fd)
        except OSError as error:
            self._open_failed(error, path, tally)
            if error.errno == errno.EACCES:
                # Unreadable (no DAC override): its contents stay as they are, but its own entry
                # can still be re-owned by name, without following, like any non-directory.
                tally.changed += self._chown_by_name(parent.fd, name, path, seen) or 0
            directory = None
        else:
            directory = self._verified(fd, path, parent.dev, seen.st_ino, parent)
            if directory is None:
                self.skip("replaced", path)
        if directory is None:
            # A child that could not be entered still counts as done for its parent.
            self._finish(parent, tally)
        return directory

    def _verified(self, fd: int, path: str, dev: int, ino: int, parent: _Dir | None) -> _Dir | None:
        """Keep `fd` only if it is the very directory the listing saw (same device and inode)."""
        try:
            opened = os.fstat(fd)
        except OSError as error:
            os.close(fd)
            self.fault(error, path)
            return None
        if (opened.st_dev, opened.st_ino) != (dev, ino):
            os.close(fd)
            return None
        directory = _Dir(fd, path, dev, opened.st_uid, opened.st_gid, parent)
        self.open_dirs.add(directory)
        return directory

    def _open_failed(self, error: OSError, path: str, tally: _Tally) -> None:
        # ELOOP: it is a symlink now (O_NOFOLLOW); ENOTDIR: something else now. Either way it was
        # swapped after the listing saw a directory.
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            self.skip("replaced", path)
        elif self.fault(error, path):
            tally.seen -= 1  # counted when it was listed (or stat'ed, for a root); vanished since

    def _scan(self, directory: _Dir, tally: _Tally) -> list[_Child] | None:
        """Re-own the non-directories of one directory; return its subdirectories (None: stopped)."""
        fd, dev, uid, gid = directory.fd, directory.dev, self.uid, self.gid
        try:
            names = os.listdir(fd)
        except OSError as error:
            self.fault(error, directory.path)
            return []
        children: list[_Child] = []
        lstat, chown = os.stat, os.chown
        mounted = self.mounts.get(directory.path, ())
        for start in range(0, len(names), STOP_CHECK_EVERY):
            if self.stopping():
                return None
            chunk = names[start : start + STOP_CHECK_EVERY]
            seen = len(chunk)
            changed = 0
            # The hot loop: one fstatat per entry, nothing else unless the entry needs work.
            for name in chunk:
                try:
                    entry = lstat(name, dir_fd=fd, follow_symlinks=False)
                except OSError as error:
                    seen -= 1
                    self.fault(error, f"{directory.path}/{name}")
                    continue
                if entry.st_dev != dev or name in mounted:
                    self._mount_point(f"{directory.path}/{name}")
                elif entry.st_mode & 0o170000 == 0o040000:  # S_IFDIR
                    children.append((directory, name, entry))
                elif entry.st_uid != uid or entry.st_gid != gid:
                    if entry.st_nlink == 1 and not entry.st_mode & 0o6000:
                        # The common case inlined (a method call per entry is a measurable share
                        # of a first-start walk): one link, no set-ID bit to report.
                        try:
                            chown(name, uid, gid, dir_fd=fd, follow_symlinks=False)
                            changed += 1
                        except OSError as error:
                            if self.fault(error, f"{directory.path}/{name}"):
                                seen -= 1
                    else:
                        changed += self._own_entry(fd, name, f"{directory.path}/{name}", entry, tally)
            tally.seen += seen
            tally.changed += changed
        return children

    def _mount_point(self, path: str) -> None:
        # Another filesystem: a volume of its own, a bind-mounted file. Not entered, not re-owned;
        # reported unless it is one of the roots, walked on its own terms.
        if path not in self.root_paths:
            self.skip("mount_point", path)

    def _own_entry(
        self, dir_fd: int | None, name: str, path: str, entry: os.stat_result, tally: _Tally
    ) -> int:
        """Re-own one non-directory by name, without following it; 1 if it changed."""
        if entry.st_uid == self.uid and entry.st_gid == self.gid:
            return 0
        if entry.st_nlink > 1:
            self.skip("hardlink", path)
            return 0
        changed = self._chown_by_name(dir_fd, name, path, entry)
        if changed is None:  # vanished after its stat
            tally.seen -= 1
            return 0
        if changed and stat.S_ISREG(entry.st_mode) and _loses_setid(entry.st_mode):
            tally.setid_cleared += 1
        return changed

    def _chown_by_name(self, dir_fd: int | None, name: str, path: str, entry: os.stat_result) -> int | None:
        """fchownat(AT_SYMLINK_NOFOLLOW) if the owner differs: a link is re-owned, never followed.

        1 if changed, 0 if not (right already, or a fault), None if the entry vanished."""
        if entry.st_uid == self.uid and entry.st_gid == self.gid:
            return 0
        try:
            os.chown(name, self.uid, self.gid, dir_fd=dir_fd, follow_symlinks=False)
        except OSError as error:
            return None if self.fault(error, path) else 0
        return 1

    def _finish(self, directory: _Dir | None, tally: _Tally) -> None:
        """One part of `directory` is done; when all are, re-own it, close it, and go up."""
        while directory is not None and directory.in_charge:
            with self._lock:
                directory.pending -= 1
                if directory.pending:
                    return
            if (directory.uid, directory.gid) != (self.uid, self.gid):
                try:
                    # fchown on the descriptor: exactly the inode that was verified, whatever
                    # its name points at by now.
                    os.fchown(directory.fd, self.uid, self.gid)
                    tally.changed += 1
                except OSError as error:
                    self.fault(error, directory.path)
            self.open_dirs.discard(directory)
            os.close(directory.fd)
            directory = directory.parent

    def close_remaining(self) -> None:
        """After a stop: close what is still open; those directories keep their old owner."""
        for directory in list(self.open_dirs):
            os.close(directory.fd)
        self.open_dirs.clear()

    def totals(self) -> tuple[int, int, int]:
        tallies = list(self.tallies)
        return (
            sum(t.seen for t in tallies),
            sum(t.changed for t in tallies),
            sum(t.setid_cleared for t in tallies),
        )


def run(
    plan: OwnershipPlan,
    user: TargetUser,
    stop: StopFlag,
    *,
    workers: int | None = None,
    processes: int | None = None,
) -> PhaseResult:
    """Re-own everything under `plan.roots` that is not `plan.uid:plan.gid`; never raises.

    With the defaults (the init's choice) the walk starts in the calling thread and, if it is not
    done after HANDOFF_S, hands what is left to one worker process per CPU (see the module's
    docstring), when a fork is safe here and there is more than one CPU; otherwise it walks with
    one thread plus threads added while it waits on I/O. `processes=N` hands everything to N
    worker processes at once (benchmarks, tests of that path; still only when a fork is safe),
    `processes=0` never forks. `workers=N` walks with exactly N threads, never forking.
    """
    if plan.mode == "off":
        return PhaseResult.skipped(PHASE, "disabled")
    recorder = PhaseRecorder(PHASE)
    walk = _Walk(plan, stop, plan.roots)
    started = time.monotonic()
    interval = plan.progress_interval_s

    opened = (walk.open_root(path, walk.tallies[0]) for path in plan.roots)
    stack: list[_Dir | _Child] = [directory for directory in opened if directory is not None][::-1]
    wanted = 0 if workers is not None or not _fork_is_safe() else _process_count(processes)
    forks = 0
    if wanted:
        # Small trees end here, in the calling thread, without paying for a fork. Asked for
        # processes, hand over at once, in as few pieces as that takes (tests: a small tree).
        until, pieces = (started, wanted) if processes else (started + HANDOFF_S, wanted * TASKS_PER_PROCESS)
        if walk.walk_here(stack, walk.tallies[0], until) and stack:
            tasks = walk.split(stack, walk.tallies[0], pieces)
            if tasks:
                forks = _fan_out(walk, tasks, min(wanted, len(tasks)), interval, started)
    else:
        walk.seed(stack)
        for _ in range(max(1, workers or 1)):
            walk.enlist()
        _supervise(walk, interval, started, adaptive=workers is None)
    walk.close_remaining()

    interrupted = stop.is_set()
    seen, changed, setid_cleared = walk.totals()
    recorder.figures.update(
        roots=list(plan.roots),
        workers=forks or max(1, len(walk.threads)),
        processes=forks,
        seen=seen,
        changed=changed,
        skipped={reason: samples.count for reason, samples in walk.skipped.items()},
        errors=sum(samples.count for samples in walk.faults.values()),
        setid_cleared=setid_cleared,
        interrupted=interrupted,
    )
    _warn(recorder, walk)
    if walk.failure is not None:
        recorder.failed = True
        recorder.warn("ownership_failed", f"the walk stopped on an internal error: {walk.failure!r}")
    if not interrupted:
        _check_writable(recorder, user, walk.walked)
    return recorder.result()


def _fork_is_safe() -> bool:
    # Another thread may hold a lock (the logging module's, the allocator's) at the moment of the
    # fork, and it would stay held in the child forever; signal dispositions can only be reset
    # from the main thread.
    return (
        hasattr(os, "fork")
        and threading.current_thread() is threading.main_thread()
        and threading.active_count() == 1
    )


def _process_count(asked: int | None) -> int:
    if asked is not None:
        return max(0, asked)
    cpus = len(os.sched_getaffinity(0))
    return min(cpus, MAX_PROCESSES) if cpus > 1 else 0


def _supervise(walk: _Walk, interval: float, started: float, *, adaptive: bool) -> None:
    """Wait for the walk: relay the stop flag, add threads while it is I/O-bound, and write a
    progress line every `interval` once it runs that long."""
    next_line = started + interval
    checked_at, busy_at = started, walk.busy_ns()
    while (thread := walk.alive()) is not None:
        thread.join(min(0.1, max(0.0, next_line - time.monotonic())))
        # Workers poll the stop flag themselves; relaying it also wakes the idle ones, and one
        # blocked in a slow system call (NFS) does not keep the others from stopping.
        if walk.stop.is_set():
            walk.halt()
        now = time.monotonic()
        if adaptive and busy_at is not None and now - checked_at >= ENLIST_CHECK_S:
            # Threads waiting for the GIL sleep, so while one thread holds it the walk counts as
            # busy for a whole CPU; less than that, and at times every thread was blocked on the
            # disk (cold cache, NFS): one more thread overlaps those waits. Waiting in the run
            # queue (other work on the machine) counts as busy: more threads would not help.
            busy = walk.busy_ns()
            waiting = busy is not None and (busy - busy_at) / 1e9 / (now - checked_at) < BUSY_SHARE
            if waiting and len(walk.threads) < MAX_WORKERS:
                walk.enlist()
            checked_at, busy_at = now, busy
        next_line = _progress(walk, started, now, next_line, interval)


def _progress(walk: _Walk, started: float, now: float, next_line: float, interval: float) -> float:
    """Write a progress line if it is time to; return when the next one is due."""
    if now < next_line:
        return next_line
    seen, changed, _ = walk.totals()
    log.event(
        _logger,
        "info",
        "progress",
        f"ownership: {seen} entries seen, {changed} changed",
        phase=PHASE,
        seen=seen,
        changed=changed,
        rate_per_s=round(seen / (now - started)),
    )
    return next_line + interval * (1 + (now - next_line) // interval)


# -- worker processes --------------------------------------------------------------------------

_SLOT = struct.Struct("=3q")  # a worker's running tally: seen, changed, setid_cleared
_HALT = 8  # bytes before the slots; the first one is the halt flag


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

    def publish(self, slot: int, tally: _Tally) -> None:
        _SLOT.pack_into(
            self.memory, _HALT + _SLOT.size * slot, tally.seen, tally.changed, tally.setid_cleared
        )

    def read(self, slot: int, tally: _Tally) -> None:
        tally.seen, tally.changed, tally.setid_cleared = _SLOT.unpack_from(
            self.memory, _HALT + _SLOT.size * slot
        )


class _WorkerStop:
    """The stop flag as a worker sees it. The walk polls it between directories and every
    STOP_CHECK_EVERY entries, which is also often enough to publish the worker's tally."""

    def __init__(self, board: _Board, slot: int, tally: _Tally) -> None:
        self.board, self.slot, self.tally = board, slot, tally

    def is_set(self) -> bool:
        self.board.publish(self.slot, self.tally)
        return self.board.halted()


def _fan_out(walk: _Walk, tasks: list[_Child], count: int, interval: float, started: float) -> int:
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

    tallies = [_Tally() for _ in range(count)]
    walk.tallies.extend(tallies)
    try:
        reports = _collect(walk, results, board, tallies, interval, started)
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
                walk._finish(parent, walk.tallies[0])
    return len(reports)


def _collect(
    walk: _Walk,
    results: dict[int, tuple[int, bytearray]],
    board: _Board,
    tallies: list[_Tally],
    interval: float,
    started: float,
) -> list[bytes | None]:
    """Wait for every worker: read its report, relay the stop flag, write the progress lines.
    Returns each worker's report (None: it ended without one)."""
    reports: list[bytes | None] = []
    next_line = started + interval
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
        next_line = _progress(walk, started, now, next_line, interval)
    return reports


def _worker(
    walk: _Walk, batches: list[list[_Child]], queue: int, out: int, board: _Board, slot: int
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
        tally = _Tally()
        walk.tallies = [tally]
        walk.skipped = {reason: _Samples() for reason in SKIP_REASONS}
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


def _merge(walk: _Walk, reports: list[bytes | None]) -> list[int]:
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
            _absorb(walk.skipped[reason], count, paths)
        for number, (count, paths) in report["faults"].items():
            _absorb(walk.faults.setdefault(int(number), _Samples()), count, paths)
    return done


def _absorb(samples: _Samples, count: int, paths: list[str]) -> None:
    samples.count += count
    samples.paths += paths[: SAMPLES - len(samples.paths)]


def _warn(recorder: PhaseRecorder, walk: _Walk) -> None:
    for path in walk.skipped["missing_root"].paths:
        recorder.warn("ownership_root_missing", f"{path} does not exist; nothing to re-own", path=path)
    for path in walk.skipped["symlink_root"].paths:
        recorder.warn(
            "ownership_root_symlink",
            f"{path} is a symbolic link; it is not followed (name the real directory instead)",
            path=path,
        )
    messages = {
        "mount_point": "mount point(s) inside the roots were not entered; list them as roots to re-own them",
        "hardlink": "file(s) with several hard links were left alone: their other names may be outside",
        "replaced": "entry(ies) were replaced while the walk ran (a race or an attack); left alone",
        "vanished": "entry(ies) disappeared while the walk ran",
    }
    for reason, text in messages.items():
        samples = walk.skipped[reason]
        if samples.count:
            recorder.warn(
                f"ownership_{reason}", f"{samples.count} {text}", count=samples.count, samples=samples.paths
            )
    for number, samples in sorted(walk.faults.items()):
        name = errno.errorcode.get(number, str(number))
        hint = _HINTS.get(number, os.strerror(number))
        recorder.warn(
            "ownership_error",
            f"{samples.count} entry(ies) failed with {name}: {hint}",
            errno=name,
            count=samples.count,
            samples=samples.paths,
        )


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
