"""The `migration` phase: move legacy state into the state directory once, never clobbering.

Runs as root, after the ownership phase and before the privilege drop. Everything it knows about
the application (legacy paths, config file names, the hidden record directory, the setting's name)
arrives in the `MigrationPlan`.

Choice of the source: the first legacy path that is a real directory holding data. A legacy path
that is a symbolic link to the target was migrated before; a link elsewhere is never followed (the
user owns the directory it sits in and could point it at /etc). Later sources holding data are
reported as conflicts, never merged silently.

Everything the phase writes lives in the record directory inside the target, on the target's own
filesystem, so that every step into place is a `rename` within one filesystem:

    <target>/<record dir>/migration.json              the record: a later boot is a no-op
    <target>/<record dir>/migration-staging/
        journal.json                                  what this migration is doing (see below)
        tree/                                         strategy "rename": the source directory itself
        items/<i>, items/<i>.part                     strategy "copy": copies, `.part` while incomplete

Strategies:
- rename: the source directory is renamed into the staging in one step, then each top-level entry
  is renamed into the target. Possible only when the source is on the target's mount and is not a
  mount point itself; the kernel answers EBUSY (a mount point) or EXDEV (another mount), and then
- copy: each top-level entry is copied into `items/<i>.part`, renamed to `items/<i>` once complete,
  and after all of them are staged (and flushed with syncfs) they are renamed into the target.
  `merge-missing` is a copy whose items are only the paths missing from the target.
The target is never written in place: what appears in it is a complete entry, moved by a rename
that refuses to replace anything (renameat2 RENAME_NOREPLACE).

Crash safety. The journal is written (atomically, fsynced) before each step that matters, and each
step is idempotent, so a SIGKILL at any instant followed by a new boot converges to the state an
uninterrupted run reaches:
- "staging" + copy: completed items are kept, `.part` ones are redone, provided the source is still
  the same directory (device, inode); otherwise the staging is discarded and the migration starts over.
- "staging" + rename: if `tree` exists the rename happened and the commit proceeds; if not, the
  staging (journal only) is discarded.
- "committing": every move whose staged entry still exists is done; the others were done already.
A copied source is only read until the record is in place; only then is a plain source directory
renamed aside (later replaced by a link), a mount point never. The journal is removed last.

Faults (EACCES/EPERM on the source, EROFS and ENOSPC on the target, entries vanishing, a source
replaced under the copy) are warnings, never exceptions out of `run`: a copy that fails before the
commit removes its staging, leaving the target as it was.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import errno
import fcntl
import functools
import json
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ..common import log
from ..common.plans import MigrationPlan, StopFlag
from ..common.report import PhaseRecorder, PhaseResult

PHASE = "migration"
RECORD_FILE = "migration.json"
STAGING_DIR = "migration-staging"
JOURNAL_FILE = "journal.json"
TREE_DIR = "tree"
ITEMS_DIR = "items"
PART_SUFFIX = ".part"
FORMAT_VERSION = 1
PROGRESS_INTERVAL_S = 2.0
# Regular files are copied by a small pool: copy_file_range releases the GIL, and with a cold page
# cache several reads in flight keep the disk busy (1 GiB of mixed state, 2 cores: 4.1 s with one
# thread, 2.8 s with two).
WORKERS = min(4, os.cpu_count() or 1)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A source that cannot be moved but may still be readable: a mount point (EBUSY), another mount
# (EXDEV), an immutable directory or a sticky parent (EPERM, EACCES). All of them get copied.
_RENAME_FALLBACK = frozenset({errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES})
# copy_file_range refuses across filesystems (EXDEV, kernels >= 5.19 for most pairs), on kernels
# without it (ENOSYS) and on filesystems that do not implement it (EOPNOTSUPP, EINVAL).
_NO_COPY_FILE_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})
_COPY_CHUNK = 1 << 30  # bytes per copy_file_range/sendfile call: the kernel copies a file per call
_READ_CHUNK = 1 << 20
_RENAME_NOREPLACE = 1
_AT_FDCWD = -100

_logger = log.get(PHASE)
_libc = ctypes.CDLL(None, use_errno=True)


class Outcome(enum.StrEnum):
    NOTHING_TO_MIGRATE = "nothing-to-migrate"
    ALREADY_MIGRATED = "already-migrated"
    MIGRATED = "migrated"
    CONFLICT = "conflict"
    BLOCKED = "blocked"  # the first legacy dir holding data cannot be read
    INTERRUPTED = "interrupted"
    FAILED = "failed"


@dataclass
class MigrationResult(PhaseResult):
    """The phase's result, with what steers the boot as typed fields (figures are for the report)."""

    outcome: Outcome = Outcome.NOTHING_TO_MIGRATE
    strategy: str | None = None

    @property
    def moved_by_rename(self) -> bool:
        """The legacy tree was renamed in whole: it kept its old owners, which need repair."""
        return self.outcome is Outcome.MIGRATED and self.strategy == "rename"


def run(plan: MigrationPlan, stop: StopFlag) -> PhaseResult:
    if plan.mode == "off":
        return PhaseResult.skipped(PHASE, f"{plan.mode_setting}=off")
    recorder = PhaseRecorder(PHASE)
    recorder.figures.update(
        outcome="nothing-to-migrate",
        source=None,
        strategy=None,
        entries=0,
        bytes=0,
        conflicts=0,
        record=None,
        interrupted=False,
    )
    with contextlib.ExitStack() as descriptors:
        migration = _Migration(plan, stop, recorder, descriptors)
        try:
            migration.run()
            # The application writes its own records here after the privilege drop. Given last:
            # until then root must be able to search it even without CAP_DAC_OVERRIDE.
            if migration.created_record_dir:
                with contextlib.suppress(FileNotFoundError):
                    migration.owner.give(migration.record_dir)
        except OSError as error:  # anything unforeseen on the filesystem: a warning, the boot goes on
            recorder.warn(
                "migration_failed",
                f"migration into {plan.target} stopped: {_describe(error)}",
                target=plan.target,
                errno=_errno_name(error),
            )
        if migration.owner.refused:
            recorder.warn(
                "migration_chown_failed",
                f"{migration.owner.refused} migrated entries could not be given to {plan.uid}:{plan.gid} "
                "(EPERM: the init lacks CAP_CHOWN?); they stay owned by the init's user",
                count=migration.owner.refused,
            )
    result = recorder.result()
    return MigrationResult(
        **vars(result), outcome=Outcome(recorder.figures["outcome"]), strategy=recorder.figures["strategy"]
    )


# -- small kernel helpers ------------------------------------------------------------------------


def _errno_name(error: OSError) -> str:
    return errno.errorcode.get(error.errno or 0, str(error.errno))


def _describe(error: OSError) -> str:
    return f"{error.strerror or error} ({_errno_name(error)})"


def _lexists(name: str, dir_fd: int) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def _rename_noreplace(src_dir: int, src: str, dst_dir: int, dst: str) -> None:
    """rename(2) that fails with EEXIST rather than replace an entry: the kernel guards against
    clobbering, not an earlier check that a concurrent writer could make stale."""
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is not None:
        if renameat2(src_dir, os.fsencode(src), dst_dir, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(code, os.strerror(code), src, None, dst)
    # A filesystem or libc without RENAME_NOREPLACE: check, then rename. The migration lock keeps
    # other inits out; only a foreign writer could slip in between.
    if _lexists(dst, dst_dir):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir)


def _syncfs(fd: int) -> None:
    """Flush the filesystem holding `fd`. Before staged copies become visible: after a power cut,
    delayed allocation (ext4, xfs) would otherwise show renamed-in files empty."""
    if _libc.syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@dataclass
class _Owner:
    """Hands what the init creates to the target user. Without CAP_CHOWN (--cap-drop ALL) chown
    fails with EPERM: the entry stays the init's, which is counted and reported once, never fatal."""

    uid: int
    gid: int
    refused: int = 0

    def give(self, name: str | int, dir_fd: int | None = None) -> None:
        try:
            if isinstance(name, int):
                os.fchown(name, self.uid, self.gid)
            else:
                os.chown(name, self.uid, self.gid, dir_fd=dir_fd, follow_symlinks=False)
        except PermissionError:
            self.refused += 1


def _write_json(dir_fd: int, name: str, data: dict[str, Any], owner: _Owner | None = None) -> None:
    """Replace `name` atomically: a reader (or the next boot) sees the old or the new file, whole."""
    temporary = name + ".tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(temporary, flags, 0o600, dir_fd=dir_fd), "wb") as handle:
        handle.write((json.dumps(data, indent=2) + "\n").encode())
        handle.flush()
        if owner is not None:
            owner.give(handle.fileno())
        os.fsync(handle.fileno())  # the content is on disk before the name points at it
    os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)


def _read_json(dir_fd: int, name: str) -> dict[str, Any] | None:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    with open(fd, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except ValueError:
            return None
    return data if isinstance(data, dict) and data.get("version") == FORMAT_VERSION else None


@contextlib.contextmanager
def _walk_to(dir_fd: int, rel: str) -> Iterator[int]:
    """The directory `rel` below `dir_fd`, opened one component at a time, never through a link."""
    opened: list[int] = []
    try:
        current = dir_fd
        for part in filter(None, rel.split("/")):
            current = os.open(part, _DIR_FLAGS, dir_fd=current)
            opened.append(current)
        yield current
    finally:
        for fd in opened:
            os.close(fd)


def _remove(name: str, dir_fd: int) -> None:
    """Remove an entry of any kind (a tree without following links); absent is fine."""
    try:
        seen = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(seen.st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _measure(dir_fd: int, name: str) -> tuple[int, int]:
    """Entries (the tree's root included) and bytes of regular files under `name`, no link followed."""
    seen = os.lstat(name, dir_fd=dir_fd)
    if not stat.S_ISDIR(seen.st_mode):
        return 1, seen.st_size if stat.S_ISREG(seen.st_mode) else 0
    entries, size = 1, 0
    fd = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            child_entries, child_size = _measure(fd, child)
            entries += child_entries
            size += child_size
    finally:
        os.close(fd)
    return entries, size


def _mount_id(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key == "mnt_id":
                    return int(value)
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    return None


def _is_mount_point(path: str) -> bool:
    """Compares mount ids, not devices: a bind mount of a directory of the same filesystem has the
    parent's st_dev, and os.path.ismount misses it (the rename would still fail with EBUSY)."""
    own, parent = _mount_id(path), _mount_id(os.path.dirname(path) or "/")
    if own is None or parent is None:  # no /proc: the device comparison is all there is
        return os.path.ismount(path)
    return own != parent


# -- the copy ------------------------------------------------------------------------------------


class _SourceError(Exception):
    """An OSError raised by a call on the source, kept apart from the target's errors."""

    def __init__(self, rel: str, error: OSError) -> None:
        super().__init__(rel, error)
        self.rel = rel
        self.error = error


class _Interrupted(Exception):
    pass


def _from_source(rel: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except OSError as error:
        raise _SourceError(rel, error) from error


class _Copier:
    """Copies entry trees by file descriptor: no link is ever followed, the kernel moves the bytes,
    and a file is private (0600 or 0700, root's) until its content, owner, mode and times are set.
    Directories are walked by the calling thread; the regular files of each directory go to `pool`
    (when there is one) and are all finished before the directory gets its times and its
    descriptors are closed."""

    def __init__(self, owner: _Owner, stop: StopFlag, pool: ThreadPoolExecutor | None) -> None:
        self.owner = owner
        self.stop = stop
        self.pool = pool
        self.entries = 0
        self.bytes = 0
        self._tally = threading.Lock()  # entries and bytes are added to by the pool's threads
        self.vanished: list[str] = []
        self.devices: list[str] = []
        self.hardlinks: list[str] = []
        self._copy_file_range = True
        self._sendfile = True
        self._next_progress = time.monotonic() + PROGRESS_INTERVAL_S

    def copy(
        self, src_dir: int, name: str, dst_dir: int, dst_name: str, rel: str, pending: list[Future[None]]
    ) -> None:
        """Copy one entry of any kind; a regular file goes to the pool, its future into `pending`."""
        self._tick()
        try:
            seen = _from_source(rel, os.lstat, name, dir_fd=src_dir)
        except _SourceError as error:
            self._vanished(error)
            return
        if stat.S_ISREG(seen.st_mode):
            copy_file = functools.partial(
                self._skipping_vanished, self._file, src_dir, name, dst_dir, dst_name, rel
            )
            if self.pool is None:
                copy_file()
            else:
                pending.append(self.pool.submit(copy_file))
        elif stat.S_ISDIR(seen.st_mode):
            self._skipping_vanished(self._directory, src_dir, name, dst_dir, dst_name, rel)
        else:
            self._skipping_vanished(self._special, src_dir, name, dst_dir, dst_name, rel, seen)

    def _skipping_vanished(self, copy: Callable[..., None], *args: Any) -> None:
        try:
            copy(*args)
        except _SourceError as error:
            self._vanished(error)

    def _vanished(self, error: _SourceError) -> None:
        # Removed between the listing and the call: it is in neither place, nothing is lost.
        # Every call that can see ENOENT precedes the creation of the copy, so none is left.
        if error.error.errno != errno.ENOENT:
            raise error
        self.vanished.append(error.rel)

    def _count(self, entries: int, size: int = 0) -> None:
        with self._tally:
            self.entries += entries
            self.bytes += size

    def _tick(self) -> None:
        if self.stop.is_set():
            raise _Interrupted
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_INTERVAL_S
            log.event(
                _logger,
                "info",
                "migration_progress",
                f"copied {self.entries} entries, {self.bytes} bytes",
                entries=self.entries,
                bytes=self.bytes,
            )

    def _directory(self, src_dir: int, name: str, dst_dir: int, dst_name: str, rel: str) -> None:
        src = _from_source(rel, os.open, name, _DIR_FLAGS, dir_fd=src_dir)
        try:
            seen = os.fstat(src)  # of the directory actually opened, not of what the lstat saw
            names = sorted(_from_source(rel, os.listdir, src))
            os.mkdir(dst_name, 0o700, dir_fd=dst_dir)
            dst = os.open(dst_name, _DIR_FLAGS, dir_fd=dst_dir)
            try:
                self.copy_all(src, dst, [(child, child, f"{rel}/{child}") for child in names])
                self._finish(dst, seen)  # last: creating each child changed the directory's mtime
            finally:
                os.close(dst)
        finally:
            os.close(src)
        self._count(1)

    def copy_all(self, src: int, dst: int, entries: list[tuple[str, str, str]]) -> None:
        """Copy each (name, copy's name, relative path) of `src` into `dst`, queued files included:
        everything is complete (or has failed) when this returns."""
        pending: list[Future[None]] = []
        try:
            for name, dst_name, rel in entries:
                self.copy(src, name, dst, dst_name, rel, pending)
        finally:
            # Even when stopping on an error: a worker still using these descriptors after they
            # are closed could, once the number is reused, write into another directory.
            wait(pending)
        for future in pending:
            future.result()  # the first failure of a worker, raised here

    def _file(self, src_dir: int, name: str, dst_dir: int, dst_name: str, rel: str) -> None:
        # O_NONBLOCK: an entry swapped for a FIFO since the lstat must not hang the boot in open().
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        src = _from_source(rel, os.open, name, flags, dir_fd=src_dir)
        try:
            seen = os.fstat(src)
            if not stat.S_ISREG(seen.st_mode):
                raise _SourceError(
                    rel, OSError(errno.EAGAIN, "replaced by another kind of file during the copy")
                )
            if seen.st_nlink > 1 and seen.st_uid != self.owner.uid:
                # Another name of a file someone else owns, e.g. a link planted to /etc/shadow:
                # copying it as root would hand its content to the user (the ownership phase
                # refuses to re-own these for the same reason). It stays in the source.
                self.hardlinks.append(rel)
                return
            # 0600 until the end: a secret is never readable by others, not even for an instant.
            create = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            dst = os.open(dst_name, create, 0o600, dir_fd=dst_dir)
            try:
                size = self._data(src, dst)
                self._finish(dst, seen)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        self._count(1, size)

    def _special(
        self, src_dir: int, name: str, dst_dir: int, dst_name: str, rel: str, seen: os.stat_result
    ) -> None:
        kind = stat.S_IFMT(seen.st_mode)
        if kind == stat.S_IFLNK:
            os.symlink(_from_source(rel, os.readlink, name, dir_fd=src_dir), dst_name, dir_fd=dst_dir)
        elif kind in (stat.S_IFIFO, stat.S_IFSOCK):
            os.mknod(dst_name, kind | 0o600, dir_fd=dst_dir)
        else:
            # A device node recreated in a volume the unprivileged user owns would hand it the device.
            self.devices.append(rel)
            return
        self.owner.give(dst_name, dst_dir)
        if kind != stat.S_IFLNK:  # a link has no mode of its own; chmod would follow it
            os.chmod(dst_name, stat.S_IMODE(seen.st_mode), dir_fd=dst_dir)
        os.utime(dst_name, ns=(seen.st_atime_ns, seen.st_mtime_ns), dir_fd=dst_dir, follow_symlinks=False)
        self._count(1)

    def _finish(self, fd: int, seen: os.stat_result) -> None:
        self.owner.give(fd)
        # After the chown, which clears set-ID bits. Keeping them mints nothing: the owner (the
        # target user) could set them on its own file anyway.
        os.fchmod(fd, stat.S_IMODE(seen.st_mode))
        os.utime(fd, ns=(seen.st_atime_ns, seen.st_mtime_ns))

    def _data(self, src: int, dst: int) -> int:
        """Copy from the current offsets to the end; each fallback resumes where the last stopped."""
        copied = 0
        if self._copy_file_range:
            try:
                while count := os.copy_file_range(src, dst, _COPY_CHUNK):
                    copied += count
                return copied
            except OSError as error:
                if error.errno not in _NO_COPY_FILE_RANGE:
                    raise
                self._copy_file_range = False
        if self._sendfile:
            try:
                while count := os.sendfile(dst, src, None, _COPY_CHUNK):
                    copied += count
                return copied
            except OSError as error:
                if error.errno not in (errno.EINVAL, errno.ENOSYS):
                    raise
                self._sendfile = False
        while chunk := os.read(src, _READ_CHUNK):
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view) :]
            copied += len(chunk)
        return copied


# -- the phase -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """A legacy path as found. kind: absent, linked (to the target), foreign-link, not-dir, empty,
    data, unreadable, is-target, holds-target."""

    path: str
    kind: str
    detail: str = ""


class _Migration:
    def __init__(
        self, plan: MigrationPlan, stop: StopFlag, recorder: PhaseRecorder, descriptors: contextlib.ExitStack
    ) -> None:
        self.plan = plan
        self.stop = stop
        self.recorder = recorder
        self.figures = recorder.figures
        self.descriptors = descriptors
        self.target_real = os.path.realpath(plan.target)
        self.record_dir = os.path.join(plan.target, plan.record_dir_name)
        self.staging = os.path.join(self.record_dir, STAGING_DIR)
        self.created_record_dir = False
        self.record_fd: int | None = None  # the locked record directory, once locked
        self.kept_existing = 0
        self.owner = _Owner(plan.uid, plan.gid)

    def _open(self, path: str, dir_fd: int | None = None, flags: int = _DIR_FLAGS) -> int:
        fd = os.open(path, flags, dir_fd=dir_fd)
        self.descriptors.callback(os.close, fd)
        return fd

    # -- top level ----------------------------------------------------------------------------

    def run(self) -> None:
        sources = [self._survey(path) for path in self.plan.sources]
        self._report_odd(sources)
        try:
            # The target is the operator's setting: following a link in it is the operator's intent.
            target_fd: int | None = self._open(
                self.plan.target, flags=os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
            )
        except FileNotFoundError:
            target_fd = None
        if target_fd is not None and _lexists(
            os.path.join(self.plan.record_dir_name, STAGING_DIR), target_fd
        ):
            outcome = self._resume(target_fd)
            if outcome == "finished":
                self._settle(sources, self.figures["source"])
            if outcome != "discarded":
                return
        record = None if target_fd is None else self._read_record(target_fd)
        if record is not None:
            self.figures.update(
                outcome="already-migrated",
                source=record.get("source"),
                strategy=record.get("strategy"),
                entries=record.get("entries", 0),
                bytes=record.get("bytes", 0),
                record=os.path.join(self.record_dir, RECORD_FILE),
            )
            self._settle(sources, record.get("source"))
            return
        # The first source holding data wins; one that cannot be read may be it, so it holds back
        # the later ones (reported by _report_odd) rather than letting them jump the queue.
        chosen = next((source for source in sources if source.kind in ("data", "unreadable")), None)
        if chosen is None or chosen.kind == "unreadable":
            # Legacy paths that are only our links, with no record, were linked by a boot that
            # found nothing to migrate: still nothing to migrate.
            if chosen is not None:
                self.figures["outcome"] = "blocked"
            self._settle(sources, None)
            return
        self.figures["source"] = chosen.path
        target_data = [] if target_fd is None else self._target_entries(target_fd)
        if target_data and self.plan.mode != "merge-missing":
            self.figures["outcome"] = "conflict"
            self._conflict(
                "migration_conflict",
                f"{chosen.path} holds legacy state but {self.plan.target} already holds data and no record "
                f"of an earlier migration: nothing was copied and the gateway starts on {self.plan.target}. "
                f"Set {self.plan.mode_setting}=merge-missing to copy only the entries missing from "
                f"{self.plan.target} (never overwriting one), or move one of the two away.",
                source=chosen.path,
                target=self.plan.target,
                setting=f"{self.plan.mode_setting}=merge-missing",
            )
            self._settle(sources, chosen.path)
            return
        if self.stop.is_set():
            self.figures.update(outcome="interrupted", interrupted=True)
            return
        if self._migrate(chosen, target_fd, merge=bool(target_data)):
            self._settle(sources, chosen.path)

    # -- the sources --------------------------------------------------------------------------

    def _survey(self, path: str) -> _Source:
        try:
            seen = os.lstat(path)
        except FileNotFoundError:
            return _Source(path, "absent")
        except OSError as error:
            return _Source(path, "unreadable", _describe(error))
        if stat.S_ISLNK(seen.st_mode):
            linked = os.path.realpath(path) == self.target_real
            return _Source(path, "linked" if linked else "foreign-link")
        if not stat.S_ISDIR(seen.st_mode):
            return _Source(path, "not-dir")
        real = os.path.realpath(path)
        if real == self.target_real:
            return _Source(path, "is-target")
        if self.target_real.startswith(real.rstrip("/") + "/"):
            return _Source(path, "holds-target")
        try:
            names = [name for name in os.listdir(path) if name != self.plan.record_dir_name]
        except OSError as error:
            return _Source(path, "unreadable", _describe(error))
        return _Source(path, "data" if names else "empty")

    def _report_odd(self, sources: list[_Source]) -> None:
        for source in sources:
            if source.kind == "foreign-link":
                self.recorder.warn(
                    "migration_source_link_ignored",
                    f"{source.path} is a symbolic link to {os.path.realpath(source.path)}, not to "
                    f"{self.plan.target}: it was not followed and nothing was migrated from it",
                    source=source.path,
                )
            elif source.kind == "not-dir":
                self.recorder.warn(
                    "migration_source_not_directory",
                    f"{source.path} is not a directory: nothing was migrated from it",
                    source=source.path,
                )
            elif source.kind == "holds-target":
                self.recorder.warn(
                    "migration_source_holds_target",
                    f"{self.plan.target} lies inside {source.path}: it cannot be migrated into itself",
                    source=source.path,
                )
            elif source.kind == "unreadable":
                self.recorder.warn(
                    "migration_source_unreadable",
                    f"cannot read {source.path}: {source.detail}; a legacy directory that cannot be "
                    "read holds back the migration of any later one",
                    source=source.path,
                )

    def _report_later(self, sources: list[_Source], migrated: str | None) -> None:
        """Every other source holding data is a conflict: it was not merged."""
        for source in sources:
            if migrated is None or source.kind != "data" or source.path == migrated:
                continue
            self._conflict(
                "migration_source_conflict",
                f"{source.path} also holds state, but only {migrated} (the first legacy directory "
                f"holding data) is migrated into {self.plan.target}: {source.path} was left as it is; "
                "merge what you need from it by hand",
                source=source.path,
                migrated_from=migrated,
                target=self.plan.target,
            )

    def _conflict(self, event: str, message: str, **fields: Any) -> None:
        self.figures["conflicts"] += 1
        self.recorder.warn(event, message, **fields)

    # -- the target ---------------------------------------------------------------------------

    def _target_entries(self, target_fd: int) -> list[str]:
        return [name for name in os.listdir(target_fd) if name != self.plan.record_dir_name]

    def _read_record(self, target_fd: int) -> dict[str, Any] | None:
        try:
            with _walk_to(target_fd, self.plan.record_dir_name) as record_fd:
                return _read_json(record_fd, RECORD_FILE)
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _lock(self, target_fd: int) -> int | None:
        """The record directory, created when missing, locked against a second init sharing the volume.
        Locked once per run: flock locks of two open() of one directory exclude each other."""
        if self.record_fd is not None:
            return self.record_fd
        name = self.plan.record_dir_name
        try:
            os.mkdir(name, 0o700, dir_fd=target_fd)
        except FileExistsError:
            pass
        else:
            self.created_record_dir = True  # given to the target user when the phase ends
        record_fd = self._open(name, target_fd)
        try:
            fcntl.flock(record_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.recorder.warn(
                "migration_busy",
                f"another init holds the migration lock on {self.record_dir}: this one migrates nothing",
                target=self.plan.target,
            )
            return None
        self.record_fd = record_fd
        return record_fd

    def _create_target(self) -> int:
        os.mkdir(self.plan.target, 0o700)
        self.owner.give(self.plan.target)
        return self._open(self.plan.target)

    # -- a new migration ----------------------------------------------------------------------

    def _migrate(self, source: _Source, target_fd: int | None, merge: bool) -> bool:
        """Migrate `source`; True when it ended settled (done, or failed with the staging removed)."""
        try:
            if target_fd is None:
                target_fd = self._create_target()
            record_fd = self._lock(target_fd)
        except OSError as error:
            self._fault(error, kept=False)
            return True
        if record_fd is None:
            return False
        # Under the lock: an init that held it a moment ago may have finished the migration, or
        # been killed during it (its staging is resumed at the next boot).
        if _lexists(STAGING_DIR, record_fd):
            return False
        if self._read_record(target_fd) is not None:
            self.figures["outcome"] = "already-migrated"
            return True
        try:
            source_fd = self._open(source.path)
            opened = os.fstat(source_fd)
        except OSError as error:
            self._fault(_SourceError("", error), kept=False)
            return True
        now = time.time()
        journal: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "state": "staging",
            "strategy": "merge-missing" if merge else "rename",
            "source": source.path,
            "source_id": [opened.st_dev, opened.st_ino],
            "source_mount": _is_mount_point(source.path),
            "aside": f"{source.path}.migrated-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}",
            "target": self.plan.target,
            "started": log.rfc3339(now),
            "moves": [],
        }
        log.event(
            _logger,
            "info",
            "migration_started",
            f"migrating {source.path} into {self.plan.target}",
            source=source.path,
            target=self.plan.target,
            source_mount=journal["source_mount"],
        )
        try:
            os.mkdir(STAGING_DIR, 0o700, dir_fd=record_fd)
            staging_fd = self._open(STAGING_DIR, record_fd)
            if not merge and self._try_rename(journal, staging_fd):
                return self._finish(journal, target_fd, record_fd, staging_fd)
            if merge:
                paths = self._missing(source_fd, target_fd)
                journal["kept_existing"] = self.kept_existing
            else:
                paths = sorted(_from_source("", os.listdir, source_fd))
                paths = [name for name in paths if name != self.plan.record_dir_name]
            journal["moves"] = [[f"{ITEMS_DIR}/{index}", rel] for index, rel in enumerate(paths)]
            _write_json(staging_fd, JOURNAL_FILE, journal)
        except (_SourceError, OSError) as error:
            self._fault(error, kept=False)
            self._discard(record_fd)
            return True
        return self._stage(journal, source_fd, target_fd, record_fd, staging_fd)

    def _try_rename(self, journal: dict[str, Any], staging_fd: int) -> bool:
        _write_json(staging_fd, JOURNAL_FILE, journal)
        try:
            os.rename(journal["source"], TREE_DIR, dst_dir_fd=staging_fd)
        except OSError as error:
            if error.errno not in _RENAME_FALLBACK:
                raise _SourceError("", error) from error
            log.event(
                _logger,
                "info",
                "migration_copy_fallback",
                f"{journal['source']} cannot be renamed into {self.plan.target} "
                f"({_describe(error)}): copying instead",
                errno=_errno_name(error),
            )
            # EBUSY is the kernel's own word that the source is a mount point, whatever /proc said.
            journal.update(
                strategy="copy", source_mount=journal["source_mount"] or error.errno == errno.EBUSY
            )
            self.figures["rename_refused"] = _errno_name(error)
            return False
        return True

    def _missing(self, source_fd: int, target_fd: int, prefix: str = "") -> list[str]:
        """merge-missing: the paths of the source absent from the target. Directories present in
        both are entered; anything else present in both is the target's and stays."""
        missing: list[str] = []
        for name in sorted(_from_source(prefix, os.listdir, source_fd)):
            rel = prefix + name
            if not prefix and name == self.plan.record_dir_name:
                continue
            try:
                existing = os.lstat(name, dir_fd=target_fd)
            except FileNotFoundError:
                missing.append(rel)
                continue
            try:
                seen = _from_source(rel, os.lstat, name, dir_fd=source_fd)
            except _SourceError as error:
                if error.error.errno != errno.ENOENT:
                    raise
                continue
            if not (stat.S_ISDIR(seen.st_mode) and stat.S_ISDIR(existing.st_mode)):
                self.kept_existing += 1
                continue
            inner_source = _from_source(rel, os.open, name, _DIR_FLAGS, dir_fd=source_fd)
            try:
                inner_target = os.open(name, _DIR_FLAGS, dir_fd=target_fd)
                try:
                    missing += self._missing(inner_source, inner_target, rel + "/")
                finally:
                    os.close(inner_target)
            finally:
                os.close(inner_source)
        return missing

    # -- staging, commit, record --------------------------------------------------------------

    def _stage(
        self, journal: dict[str, Any], source_fd: int, target_fd: int, record_fd: int, staging_fd: int
    ) -> bool:
        """Copy every item not staged yet, then finish. False when stopped (the staging resumes)."""
        # One worker would only add a hand-off per file: the calling thread copies then.
        pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="migration") if WORKERS > 1 else None
        copier = _Copier(self.owner, self.stop, pool)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(ITEMS_DIR, 0o700, dir_fd=staging_fd)
            with _walk_to(staging_fd, ITEMS_DIR) as items_fd:
                for staged, rel in journal["moves"]:
                    name = staged.rpartition("/")[2]
                    if _lexists(name, items_fd):
                        continue  # staged whole by an earlier run
                    _remove(name + PART_SUFFIX, items_fd)  # half a copy, from a killed run
                    self._copy_item(copier, source_fd, rel, items_fd, name + PART_SUFFIX)
                    if _lexists(name + PART_SUFFIX, items_fd):
                        os.rename(name + PART_SUFFIX, name, src_dir_fd=items_fd, dst_dir_fd=items_fd)
        except _Interrupted:
            self.figures.update(outcome="interrupted", interrupted=True)
            return False
        except (_SourceError, OSError) as error:
            self._fault(error, kept=False)
            self._discard(record_fd)
            return True
        finally:
            if pool is not None:
                pool.shutdown()
            self._report_copier(copier)
        return self._finish(journal, target_fd, record_fd, staging_fd)

    def _copy_item(self, copier: _Copier, source_fd: int, rel: str, dst_fd: int, dst_name: str) -> None:
        parent, _, name = rel.rpartition("/")
        with contextlib.ExitStack() as stack:
            try:
                parent_fd = stack.enter_context(_walk_to(source_fd, parent))
            except OSError as error:
                if error.errno == errno.ENOENT:
                    copier.vanished.append(rel)
                    return
                raise _SourceError(parent, error) from error
            copier.copy_all(parent_fd, dst_fd, [(name, dst_name, rel)])

    def _report_copier(self, copier: _Copier) -> None:
        if copier.vanished:
            self.figures["vanished"] = self.figures.get("vanished", 0) + len(copier.vanished)
        if copier.devices:
            self.recorder.warn(
                "migration_devices_skipped",
                f"{len(copier.devices)} device node(s) in the legacy state were not copied "
                f"(e.g. {copier.devices[0]}): a device node in a user-owned volume would hand "
                "the device over to that user",
                paths=copier.devices[:5],
            )
        if copier.hardlinks:
            self.recorder.warn(
                "migration_hardlinks_skipped",
                f"{len(copier.hardlinks)} file(s) with several hard links, owned by another user, were "
                f"not copied (e.g. {copier.hardlinks[0]}); they remain in the source",
                paths=copier.hardlinks[:5],
            )

    def _finish(self, journal: dict[str, Any], target_fd: int, record_fd: int, staging_fd: int) -> bool:
        """From a complete staging to the record: commit, set the source aside, record, clean up."""
        try:
            if journal["state"] == "staging":
                entries, size = self._measure_staged(journal, staging_fd)
                if journal["strategy"] != "rename":
                    _syncfs(staging_fd)
                journal.update(state="committing", entries=entries, bytes=size)
                _write_json(staging_fd, JOURNAL_FILE, journal)
        except OSError as error:
            # Still before the commit: a copy can be dropped (the source has it all); a renamed
            # tree is the source itself and stays where it is for the next boot.
            renamed = journal["strategy"] == "rename"
            self._fault(error, kept=renamed)
            if not renamed:
                self._discard(record_fd)
            return not renamed
        try:
            log.event(_logger, "info", "migration_commit", f"moving staged entries into {self.plan.target}")
            self._commit(journal, target_fd, staging_fd)
            source_after = self._set_aside(journal)
            record = {
                "version": FORMAT_VERSION,
                "source": journal["source"],
                "strategy": journal["strategy"],
                "entries": journal["entries"],
                "bytes": journal["bytes"],
                "time": journal["started"],
                "result": "migrated",
                "source_after": source_after,
            }
            if "kept_existing" in journal:
                record["kept_existing"] = journal["kept_existing"]
            _write_json(record_fd, RECORD_FILE, record, owner=self.owner)
            _syncfs(record_fd)  # the record is durable before the staging (and its journal) goes
            self._clean(record_fd, staging_fd)
        except OSError as error:
            self._fault(error, kept=True)
            return False
        self.figures.update(
            outcome="migrated",
            source=journal["source"],
            strategy=journal["strategy"],
            entries=journal["entries"],
            bytes=journal["bytes"],
            record=os.path.join(self.record_dir, RECORD_FILE),
            source_after=source_after,
        )
        if "kept_existing" in journal:
            self.figures["kept_existing"] = journal["kept_existing"]
        log.event(
            _logger,
            "info",
            "migration_done",
            f"migrated {journal['source']} into {self.plan.target}",
            **{key: value for key, value in record.items() if key != "version"},
        )
        return True

    def _measure_staged(self, journal: dict[str, Any], staging_fd: int) -> tuple[int, int]:
        entries, size = 0, 0
        for staged, _ in self._moves(journal, staging_fd):
            parent, _, name = staged.rpartition("/")
            with _walk_to(staging_fd, parent) as parent_fd:
                if _lexists(name, parent_fd):
                    staged_entries, staged_size = _measure(parent_fd, name)
                    entries += staged_entries
                    size += staged_size
        return entries, size

    def _moves(self, journal: dict[str, Any], staging_fd: int) -> list[list[str]]:
        if journal["strategy"] != "rename":
            return journal["moves"]
        # The renamed tree is the list: what is still in it is still to move.
        try:
            with _walk_to(staging_fd, TREE_DIR) as tree_fd:
                names = sorted(os.listdir(tree_fd))
        except FileNotFoundError:
            return []
        return [[f"{TREE_DIR}/{name}", name] for name in names if name != self.plan.record_dir_name]

    def _commit(self, journal: dict[str, Any], target_fd: int, staging_fd: int) -> None:
        for staged, rel in self._moves(journal, staging_fd):
            staged_parent, _, staged_name = staged.rpartition("/")
            parent, _, name = rel.rpartition("/")
            with contextlib.ExitStack() as stack:
                try:
                    from_fd = stack.enter_context(_walk_to(staging_fd, staged_parent))
                except FileNotFoundError:
                    continue  # the cleanup of a run killed after its commit removed it: all moved
                if not _lexists(staged_name, from_fd):
                    continue  # moved by an earlier run, or it vanished from the source before its copy
                to_fd = stack.enter_context(_walk_to(target_fd, parent))
                _rename_noreplace(from_fd, staged_name, to_fd, name)

    def _set_aside(self, journal: dict[str, Any]) -> str:
        """Rename a plain source directory aside once its content is in the target; a mount is
        never touched (it may be read-only, and it is the host's)."""
        source, aside = journal["source"], journal["aside"]
        if journal["strategy"] == "rename":
            return f"moved into {self.plan.target}"
        if journal["source_mount"]:
            return "left in place: a mount point is never modified"
        try:
            seen = os.lstat(source)
        except FileNotFoundError:
            seen = None
        if seen is None or stat.S_ISLNK(seen.st_mode):
            if os.path.lexists(aside):  # renamed by an earlier run that was interrupted after it
                return f"renamed to {aside}"
            return "left in place: it was removed during the migration"
        if [seen.st_dev, seen.st_ino] != journal["source_id"]:
            return "left in place: it was replaced during the migration"
        try:
            _rename_noreplace(_AT_FDCWD, source, _AT_FDCWD, aside)
        except OSError as error:
            self.recorder.warn(
                "migration_source_kept",
                f"{source} was migrated but could not be renamed aside to {aside} ({_describe(error)}): "
                "it stays as it is, and paths the application hard-codes under it do not reach "
                f"{self.plan.target}",
                source=source,
                errno=_errno_name(error),
            )
            return f"left in place: {_describe(error)}"
        return f"renamed to {aside}"

    def _clean(self, record_fd: int, staging_fd: int) -> None:
        """The journal goes last: until then a new boot can redo any step of the commit. Anything
        else goes first, a journal.json.tmp left by a kill mid-write included."""
        for name in os.listdir(staging_fd):
            if name != JOURNAL_FILE:
                _remove(name, staging_fd)
        os.unlink(JOURNAL_FILE, dir_fd=staging_fd)
        os.rmdir(STAGING_DIR, dir_fd=record_fd)

    def _discard(self, record_fd: int) -> None:
        """Drop a staging that holds copies only (never a renamed tree) and leave the target as it was."""
        try:
            with _walk_to(record_fd, STAGING_DIR) as staging_fd:
                if _lexists(TREE_DIR, staging_fd):
                    self.recorder.warn(
                        "migration_staging_kept",
                        f"{self.staging}/{TREE_DIR} holds a renamed legacy directory but no usable journal: "
                        "it was left alone; move its entries into place by hand",
                        path=f"{self.staging}/{TREE_DIR}",
                    )
                    return
                for name in (ITEMS_DIR, JOURNAL_FILE, JOURNAL_FILE + ".tmp"):
                    _remove(name, staging_fd)
            os.rmdir(STAGING_DIR, dir_fd=record_fd)
            if self.created_record_dir:
                with contextlib.suppress(OSError):
                    os.rmdir(self.record_dir)
        except FileNotFoundError:
            pass
        except OSError as error:
            self.recorder.warn(
                "migration_staging_not_removed",
                f"could not remove {self.staging}: {_describe(error)}",
                path=self.staging,
                errno=_errno_name(error),
            )

    # -- after a kill -------------------------------------------------------------------------

    def _resume(self, target_fd: int) -> str:
        """Continue what a killed boot left: "finished", "discarded" (start afresh) or "stopped"."""
        try:
            record_fd = self._lock(target_fd)
        except OSError as error:
            self._fault(error, kept=True)
            return "stopped"
        if record_fd is None:
            return "stopped"
        staging_fd = self._open(STAGING_DIR, record_fd)
        journal = _read_json(staging_fd, JOURNAL_FILE)
        self.figures["resumed"] = True
        if journal is None or (journal["strategy"] == "rename" and not _lexists(TREE_DIR, staging_fd)):
            self._discard(record_fd)
            return "stopped" if _lexists(STAGING_DIR, record_fd) else "discarded"
        log.event(
            _logger,
            "info",
            "migration_resumed",
            f"resuming the migration of {journal['source']} ({journal['state']})",
            source=journal["source"],
            strategy=journal["strategy"],
            state=journal["state"],
        )
        self.figures.update(source=journal["source"], strategy=journal["strategy"])
        if journal["state"] == "staging" and journal["strategy"] != "rename":
            try:
                source_fd = self._open(journal["source"])
                opened = os.fstat(source_fd)
            except OSError:
                opened = None
            if opened is None or [opened.st_dev, opened.st_ino] != journal["source_id"]:
                # Not the directory the staged copies came from: they describe nothing any more.
                self._discard(record_fd)
                return "discarded"
            finished = self._stage(journal, source_fd, target_fd, record_fd, staging_fd)
        else:
            finished = self._finish(journal, target_fd, record_fd, staging_fd)
        return "finished" if finished and self.figures["outcome"] == "migrated" else "stopped"

    def _fault(self, error: OSError | _SourceError, kept: bool) -> None:
        where = (
            f"the staged copy is kept in {self.staging} and the migration resumes at the next boot"
            if kept
            else f"the staging was removed and {self.plan.target} left as it was"
        )
        self.figures["outcome"] = "failed"
        if isinstance(error, _SourceError):
            source = self.figures["source"] or ""
            path = os.path.join(source, error.rel) if error.rel else source
            code = error.error.errno
            event = {
                errno.EACCES: "migration_source_unreadable",
                errno.EPERM: "migration_source_unreadable",
                errno.ENOENT: "migration_source_vanished",
            }.get(code or 0, "migration_source_error")
            self.recorder.warn(
                event,
                f"cannot read {path}: {_describe(error.error)}; {where}",
                source=source,
                path=path,
                errno=_errno_name(error.error),
            )
            return
        event = {
            errno.ENOSPC: "migration_no_space",
            errno.EDQUOT: "migration_no_space",
            errno.EROFS: "migration_target_read_only",
        }.get(error.errno or 0, "migration_failed")
        self.recorder.warn(
            event,
            f"migration into {self.plan.target} failed: {_describe(error)}; {where}",
            target=self.plan.target,
            path=error.filename,
            errno=_errno_name(error),
        )

    # -- every boot ---------------------------------------------------------------------------

    def _settle(self, sources: list[_Source], migrated: str | None) -> None:
        """With no migration pending: conflicts, config name, links from the legacy paths."""
        self._report_later(sources, migrated)
        try:
            target_fd = self._open(self.plan.target, flags=os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return  # no target yet: the links would dangle
        self._rename_config(target_fd)
        self._link_legacy()

    def _rename_config(self, target_fd: int) -> None:
        preferred, *older = self.plan.config_names or ("",)
        if not preferred or _lexists(preferred, target_fd):
            return
        for name in older:
            if not _lexists(name, target_fd):
                continue
            try:
                _rename_noreplace(target_fd, name, target_fd, preferred)
            except OSError as error:
                self.recorder.warn(
                    "migration_config_rename_failed",
                    f"could not rename {name} to {preferred} in {self.plan.target}: {_describe(error)}",
                    path=os.path.join(self.plan.target, name),
                    errno=_errno_name(error),
                )
                return
            self.figures["config_renamed"] = f"{name} -> {preferred}"
            return

    @staticmethod
    def _empty_plain_dir(path: str) -> bool:
        """An empty directory that is not a mount point (one that cannot be listed is not known empty)."""
        try:
            return not os.listdir(path) and not _is_mount_point(path)
        except OSError:
            return False

    def _link_legacy(self) -> None:
        """Each legacy path that is absent (or a plain empty directory) becomes a link to the target,
        so that paths the application hard-codes under a legacy name land in the target."""
        created: list[str] = []
        for path in self.plan.sources:
            try:
                seen = os.lstat(path)
            except FileNotFoundError:
                seen = None
            except OSError:
                continue
            if (os.path.realpath(os.path.dirname(path)) + "/").startswith(self.target_real + "/"):
                continue  # a link inside the target to the target would be a loop, not a legacy path
            try:
                if seen is not None:
                    if not stat.S_ISDIR(seen.st_mode) or os.path.realpath(path) == self.target_real:
                        continue
                    if self.target_real.startswith(os.path.realpath(path).rstrip("/") + "/"):
                        continue
                    if not self._empty_plain_dir(path):
                        continue
                    os.rmdir(path)
                os.symlink(self.plan.target, path)
                self.owner.give(path)
            except (FileNotFoundError, FileExistsError):
                continue  # no parent directory (no such home), or something appeared meanwhile
            except OSError as error:
                self.recorder.warn(
                    "migration_link_failed",
                    f"could not link {path} to {self.plan.target}: {_describe(error)}",
                    path=path,
                    errno=_errno_name(error),
                )
                continue
            created.append(path)
        if created:
            self.figures["links"] = created
