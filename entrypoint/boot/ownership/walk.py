"""The walk by directory descriptor that applies `rules`: open a root, scan a directory, enter a
subdirectory and verify it is the one listed, finish a directory once everything below it is done.

Where it differs: in the calling thread, in the threads of `threads`, and in the worker processes
that `processes` forks from PID 1, each walker on its own directories with this same code. One
`Walk` holds what they share: the target owner, the mount table, the open directories, the records
of skips and faults, and one tally per walker.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
from typing import Protocol

from ...common import fsops, log
from ...common.plans import OwnershipPlan
from .rules import PHASE, SKIP_REASONS, Child, Dir, Samples, Tally, Task, loses_setid

STOP_CHECK_EVERY = 256  # entries (a directory counting as one) between two looks at the stop flag

_logger = log.get(PHASE)


class Stop(Protocol):
    def is_set(self) -> bool: ...


class Walk:
    def __init__(self, plan: OwnershipPlan, stop: Stop) -> None:
        self.uid = plan.uid
        self.gid = plan.gid
        self.stop = stop
        self.interval = plan.progress_interval_s
        self.roots = plan.roots
        self.root_paths = frozenset(plan.roots)
        self.mounts = fsops.mount_points_below(self.root_paths)
        self.walked: list[str] = []  # the roots that were opened as directories
        self.tallies = [Tally()]  # [0]: the calling thread's, the roots' own entries included
        self.skipped = {reason: Samples() for reason in SKIP_REASONS}
        self.faults: dict[int, Samples] = {}
        self.failure: BaseException | None = None
        self.open_dirs: set[Dir] = set()
        self.halted = False  # set by an engine that ends the walk early: a stop relayed, a failure
        self._lock = threading.Lock()  # guards skip and fault records, `pending` counts if threaded
        self.threaded = False  # set by the thread engine before its threads start
        self.started = time.monotonic()

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
            self.faults.setdefault(error.errno or 0, Samples()).add(path)
        return False

    def stopping(self) -> bool:
        return self.halted or self.stop.is_set()

    def totals(self) -> tuple[int, int, int]:
        tallies = list(self.tallies)
        return (
            sum(t.seen for t in tallies),
            sum(t.changed for t in tallies),
            sum(t.setid_cleared for t in tallies),
        )

    def progress(self, now: float, next_line: float) -> float:
        """Write a progress line if it is time to; return when the next one is due."""
        if now < next_line:
            return next_line
        seen, changed, _ = self.totals()
        log.event(
            _logger,
            "info",
            "progress",
            f"ownership: {seen} entries seen, {changed} changed",
            phase=PHASE,
            seen=seen,
            changed=changed,
            rate_per_s=round(seen / (now - self.started)),
        )
        return next_line + self.interval * (1 + (now - next_line) // self.interval)

    # -- roots -------------------------------------------------------------------------------

    def open_roots(self) -> list[Task]:
        """Open every root, in the calling thread: what is left to walk, the first root on top."""
        opened = (self.open_root(path, self.tallies[0]) for path in self.roots)
        return [directory for directory in opened if directory is not None][::-1]

    def open_root(self, path: str, tally: Tally) -> Dir | None:
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
            fd = os.open(path, fsops.DIR_FLAGS)
        except OSError as error:
            self._open_failed(error, path, tally)
            return None
        directory = self.verify(fd, path, seen.st_dev, seen.st_ino, None)
        if directory is None:
            self.skip("replaced", path)
        else:
            self.walked.append(path)
        return directory

    # -- the walk ----------------------------------------------------------------------------

    def walk_here(self, stack: list[Task], tally: Tally, until: float | None) -> bool:
        """Walk depth first from `stack` (its top is its end) in the calling thread, until it is
        empty or the clock passes `until`; what is left stays in `stack`. False: stopped."""
        check_at = tally.seen
        while stack:
            # The stop flag and the clock, every STOP_CHECK_EVERY entries rather than every
            # directory: most directories hold a few entries, and each look costs a few calls.
            # A directory counts as one entry more, so that a run of empty ones is counted too.
            if tally.seen >= check_at:
                if self.stopping():
                    return False
                if until is not None and time.monotonic() >= until:
                    return True
                check_at = tally.seen + STOP_CHECK_EVERY
            check_at -= 1
            task = stack.pop()
            directory = task if isinstance(task, Dir) else self.enter(task, tally)
            if directory is None:
                continue
            children = self.scan(directory, tally)
            if children is None:
                return False
            if children:
                directory.pending += len(children)
                stack.extend(children)
            self.finish(directory, tally)
        return True

    def enter(self, child: Child, tally: Tally) -> Dir | None:
        """Open a listed subdirectory, without following it; None: it is not entered."""
        parent, name, seen = child
        path = f"{parent.path}/{name}"
        try:
            fd = os.open(name, fsops.DIR_FLAGS, dir_fd=parent.fd)
        except OSError as error:
            self._open_failed(error, path, tally)
            if error.errno == errno.EACCES:
                # Unreadable (no DAC override): its contents stay as they are, but its own entry
                # can still be re-owned by name, without following, like any non-directory.
                tally.changed += self._chown_by_name(parent.fd, name, path, seen) or 0
            directory = None
        else:
            directory = self.verify(fd, path, parent.dev, seen.st_ino, parent)
            if directory is None:
                self.skip("replaced", path)
        if directory is None:
            # A child that could not be entered still counts as done for its parent.
            self.finish(parent, tally)
        return directory

    def verify(self, fd: int, path: str, dev: int, ino: int, parent: Dir | None) -> Dir | None:
        """Keep `fd` only if it is the very directory the listing saw (same device and inode)."""
        try:
            opened = os.fstat(fd)
        except OSError as error:
            os.close(fd)
            self.fault(error, path)
            return None
        if opened.st_ino != ino or opened.st_dev != dev:
            os.close(fd)
            return None
        directory = Dir(fd, path, dev, opened.st_uid, opened.st_gid, parent)
        self.open_dirs.add(directory)
        return directory

    def _open_failed(self, error: OSError, path: str, tally: Tally) -> None:
        # ELOOP: it is a symlink now (O_NOFOLLOW); ENOTDIR: something else now. Either way it was
        # swapped after the listing saw a directory.
        if error.errno in (errno.ELOOP, errno.ENOTDIR):
            self.skip("replaced", path)
        elif self.fault(error, path):
            tally.seen -= 1  # counted when it was listed (or stat'ed, for a root); vanished since

    def scan(self, directory: Dir, tally: Tally) -> list[Child] | None:
        """Re-own the non-directories of one directory; return its subdirectories (None: stopped)."""
        fd, dev, uid, gid = directory.fd, directory.dev, self.uid, self.gid
        try:
            names = os.listdir(fd)
        except OSError as error:
            self.fault(error, directory.path)
            return []
        children: list[Child] = []
        lstat, chown = os.lstat, os.chown
        # Most walks have no mount point below their roots: no path to hash then.
        mounted = self.mounts.get(directory.path, ()) if self.mounts else ()
        for start in range(0, len(names), STOP_CHECK_EVERY):
            # The walk looks at the stop flag every STOP_CHECK_EVERY entries: here only for a
            # directory larger than that, between its chunks.
            if start and self.stopping():
                return None
            chunk = names if len(names) <= STOP_CHECK_EVERY else names[start : start + STOP_CHECK_EVERY]
            seen = len(chunk)
            changed = 0
            # The hot loop: one fstatat per entry (AT_SYMLINK_NOFOLLOW: os.lstat never follows
            # the entry), nothing else unless the entry needs work.
            for name in chunk:
                try:
                    entry = lstat(name, dir_fd=fd)
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
        self, dir_fd: int | None, name: str, path: str, entry: os.stat_result, tally: Tally
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
        if changed and stat.S_ISREG(entry.st_mode) and loses_setid(entry.st_mode):
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

    def finish(self, directory: Dir | None, tally: Tally) -> None:
        """One part of `directory` is done; when all are, re-own it, close it, and go up."""
        while directory is not None and directory.in_charge:
            if self.threaded:
                with self._lock:
                    directory.pending -= 1
                    if directory.pending:
                        return
            else:  # one walker: no lock, a measurable share of each directory (docs/benchmarks)
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
