"""Trees copied by file descriptor, as `cp -a` would but owned by the target user: every copy the
boot makes of a tree the user could write to (the migration's staged items, the upgrade's
checkpoints and rollbacks).

Where it differs: a small pool of threads of its own, ended before the copy's caller is. When it
runs as root its reads happen on a tree the user could write to: nothing here follows a link, opens
a device or hands the user a file that was not theirs.

What a copy keeps: content (`content`: holes kept, blocks shared where it can), mode (a 0600 secret
stays 0600, and is never readable by anyone else while it is written), times, hard links (a file
with several names in the tree is copied once and linked, within the copy, under its other names),
extended attributes and ACLs where the target's filesystem takes them (what it refuses is counted
and reported once). What it does not: the owner (everything is the target user's), `security.*`
attributes (file capabilities would give the user privileges; LSM labels and integrity signatures
belong to the target's policy), device nodes, and the attributes of links, FIFOs and sockets.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..common import log
from ..common.fsops import DIR_FLAGS, walk_to
from ..common.plans import StopFlag
from .content import Content

if TYPE_CHECKING:
    from concurrent.futures import Future

PROGRESS_INTERVAL_S = 2.0
# An item copied whole is `<item>.part` until it is complete.
PART_SUFFIX = ".part"
# Regular files are copied by a small pool: copy_file_range releases the GIL, and with a cold page
# cache several reads in flight keep the disk busy (measured against one thread in
# docs/benchmarks/migration.md). Read when a copier is made: tests and the benchmark set it.
WORKERS = min(4, os.cpu_count() or 1)

# An attribute the target's filesystem does not take: none at all (EOPNOTSUPP), not from us
# (EPERM, EACCES), too large (E2BIG), or naming ids a user namespace cannot map (EINVAL, an ACL).
_ATTRIBUTE_REFUSED = frozenset({errno.EOPNOTSUPP, errno.EPERM, errno.EACCES, errno.E2BIG, errno.EINVAL})
# A first copy that cannot take another name: gone (an index of a changed source), or too many.
_NO_LINK = frozenset({errno.ENOENT, errno.EMLINK, errno.EPERM})


@dataclass
class Owner:
    """Hands what the init creates to the target user. Without CAP_CHOWN (--cap-drop ALL) chown
    fails with EPERM: the entry stays the init's, which is counted and reported once, never fatal.
    With no ids (the init runs as the user itself) what it creates is the user's already."""

    ids: tuple[int, int] | None
    refused: int = 0

    @property
    def uid(self) -> int:
        return os.geteuid() if self.ids is None else self.ids[0]

    def give(self, name: str | int, dir_fd: int | None = None) -> None:
        if self.ids is None:
            return
        try:
            if isinstance(name, int):
                os.fchown(name, *self.ids)
            else:
                os.chown(name, *self.ids, dir_fd=dir_fd, follow_symlinks=False)
        except PermissionError:
            self.refused += 1


class SourceError(Exception):
    """An OSError raised by a call on the source, kept apart from the target's errors."""

    def __init__(self, rel: str, error: OSError) -> None:
        super().__init__(rel, error)
        self.rel = rel
        self.error = error


class Interrupted(Exception):
    """The stop flag was seen during the copy: what is copied so far stays for the caller to resume
    or to drop."""


def from_source(rel: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except OSError as error:
        raise SourceError(rel, error) from error


class Copier:
    """Copies entry trees by file descriptor: no link is ever followed, the kernel moves the bytes,
    and a file is private (0600 or 0700, the init's) until its content, owner, mode, attributes
    and times are set. Directories are walked by the calling thread; the regular files of each
    directory go to the pool (when there is one) and are all finished before the directory gets
    its times and its descriptors are closed. `close()` ends the pool.

    Each staged item is copied to `<item>.part` in the items directory; the first copy of every
    file with several names is remembered as (item, path inside it), the path it keeps once the
    item is renamed complete, so that its other names, in any item, become links to it."""

    def __init__(
        self, owner: Owner, stop: StopFlag, source_uid: int, progress: tuple[logging.Logger, str]
    ) -> None:
        self.owner = owner
        self.stop = stop
        self.progress = progress  # the logger and event of the lines said while a long copy runs
        # A file with several names is copied only when it is the legacy dir's owner's or the
        # target user's: another user's (a link planted to /etc/shadow) would hand its content over.
        self.trusted_uids = {source_uid, owner.uid}
        # One worker would only add a hand-off per file: the calling thread copies then. Imported
        # here, as the pool is made: PID 1 keeps what it imports for its life, and most boots have
        # nothing to copy.
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="copy") if WORKERS > 1 else None
        self.entries = 0
        self.bytes = 0
        self.linked = 0
        self._tally = threading.Lock()  # counts and first copies are shared with the pool's threads
        self.vanished: list[str] = []
        self.devices: list[str] = []
        self.hardlinks: list[str] = []
        self.attributes_refused: list[str] = []
        self.first_copies: dict[tuple[int, int], tuple[str, str]] = {}
        self.items_fd = -1
        self.item = self.item_rel = ""
        self.content = Content()
        self._next_progress = time.monotonic() + PROGRESS_INTERVAL_S

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()

    def copy_item(self, source_fd: int, rel: str, items_fd: int, item: str) -> None:
        """Copy the source's `rel` to `<item>.part` in the items directory, complete on return."""
        self.items_fd, self.item, self.item_rel = items_fd, item, rel
        parent, _, name = rel.rpartition("/")
        with contextlib.ExitStack() as stack:
            try:
                parent_fd = stack.enter_context(walk_to(source_fd, parent))
            except OSError as error:
                if error.errno == errno.ENOENT:
                    self.vanished.append(rel)  # its directory went since the listing: nothing made
                    return
                raise SourceError(parent, error) from error
            self.copy_all(parent_fd, items_fd, [(name, item + PART_SUFFIX, rel)])

    def index(self, source_fd: int, rel: str, item: str) -> None:
        """Remember the files with several names in an item that an earlier boot staged whole, so
        that their other names are linked to those copies as in a boot that staged everything."""
        parent, _, name = rel.rpartition("/")
        try:
            with walk_to(source_fd, parent) as parent_fd:
                self._index(parent_fd, name, item, "")
        except FileNotFoundError:
            return  # changed since: its other names are copied instead, nothing is lost
        except OSError as error:
            raise SourceError(rel, error) from error

    def _index(self, dir_fd: int, name: str, item: str, inner: str) -> None:
        seen = os.lstat(name, dir_fd=dir_fd)
        if stat.S_ISREG(seen.st_mode) and seen.st_nlink > 1:
            self.first_copies.setdefault((seen.st_dev, seen.st_ino), (item, inner))
        elif stat.S_ISDIR(seen.st_mode):
            fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
            try:
                for child in os.listdir(fd):
                    self._index(fd, child, item, f"{inner}/{child}" if inner else child)
            finally:
                os.close(fd)

    def copy_all(self, src: int, dst: int, entries: list[tuple[str, str, str]]) -> None:
        """Copy each (name, copy's name, relative path) of `src` into `dst`, queued files included:
        everything is complete (or has failed) when this returns."""
        from concurrent.futures import wait  # loaded with the pool (see __init__)

        pending: list[Future[None]] = []
        try:
            for name, dst_name, rel in entries:
                self._copy(src, name, dst, dst_name, rel, pending)
        finally:
            # Even when stopping on an error: a worker still using these descriptors after they
            # are closed could, once the number is reused, write into another directory.
            wait(pending)
        for future in pending:
            future.result()  # the first failure of a worker, raised here

    def _copy(
        self, src_dir: int, name: str, dst_dir: int, dst_name: str, rel: str, pending: list[Future[None]]
    ) -> None:
        """Copy one entry of any kind; a regular file goes to the pool, its future into `pending`."""
        self._tick()
        try:
            seen = from_source(rel, os.lstat, name, dir_fd=src_dir)
        except SourceError as error:
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
        except SourceError as error:
            self._vanished(error)

    def _vanished(self, error: SourceError) -> None:
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
            raise Interrupted
        now = time.monotonic()
        if now >= self._next_progress:
            self._next_progress = now + PROGRESS_INTERVAL_S
            logger, event = self.progress
            log.event(
                logger,
                "info",
                event,
                f"copied {self.entries} entries, {self.bytes} bytes",
                entries=self.entries,
                bytes=self.bytes,
            )

    def _directory(self, src_dir: int, name: str, dst_dir: int, dst_name: str, rel: str) -> None:
        src = from_source(rel, os.open, name, DIR_FLAGS, dir_fd=src_dir)
        try:
            seen = os.fstat(src)  # of the directory actually opened, not of what the lstat saw
            names = sorted(from_source(rel, os.listdir, src))
            os.mkdir(dst_name, 0o700, dir_fd=dst_dir)
            dst = os.open(dst_name, DIR_FLAGS, dir_fd=dst_dir)
            try:
                self.copy_all(src, dst, [(child, child, f"{rel}/{child}") for child in names])
                self._finish(src, dst, seen, rel)  # last: creating each child changed its mtime
            finally:
                os.close(dst)
        finally:
            os.close(src)
        self._count(1)

    def _file(self, src_dir: int, name: str, dst_dir: int, dst_name: str, rel: str) -> None:
        # O_NONBLOCK: an entry swapped for a FIFO since the lstat must not hang the boot in open().
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        src = from_source(rel, os.open, name, flags, dir_fd=src_dir)
        try:
            seen = os.fstat(src)
            if not stat.S_ISREG(seen.st_mode):
                raise SourceError(
                    rel, OSError(errno.EAGAIN, "replaced by another kind of file during the copy")
                )
            if seen.st_nlink > 1 and seen.st_uid not in self.trusted_uids:
                self.hardlinks.append(rel)  # it stays in the source (the ownership phase refuses
                return  # to re-own these for the same reason)
            dst = self._create(dst_dir, dst_name, rel, seen)
            if dst is None:
                self._count(1)
                return
            try:
                size = self.content.copy(src, dst, seen)
                self._finish(src, dst, seen, rel)
            finally:
                os.close(dst)
        finally:
            os.close(src)
        self._count(1, size)

    def _create(self, dst_dir: int, dst_name: str, rel: str, seen: os.stat_result) -> int | None:
        """The copy's file, empty and 0600 (a secret is never readable by others, not even for an
        instant); None when it became another name of the copy of a file already staged."""
        create = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        if seen.st_nlink == 1:
            return os.open(dst_name, create, 0o600, dir_fd=dst_dir)
        key = (seen.st_dev, seen.st_ino)
        with self._tally:  # a name is linked, or claims the copy, before another thread looks
            first = self.first_copies.get(key)
            if first is not None and self._link(first, dst_dir, dst_name):
                self.linked += 1
                return None
            fd = os.open(dst_name, create, 0o600, dir_fd=dst_dir)
            inner = "" if rel == self.item_rel else rel[len(self.item_rel) + 1 :]
            self.first_copies[key] = (self.item, inner)
            return fd

    def _link(self, first: tuple[str, str], dst_dir: int, dst_name: str) -> bool:
        item, inner = first
        staged = item + (PART_SUFFIX if item == self.item else "") + (f"/{inner}" if inner else "")
        parent, _, name = staged.rpartition("/")
        try:
            with walk_to(self.items_fd, parent) as parent_fd:
                os.link(name, dst_name, src_dir_fd=parent_fd, dst_dir_fd=dst_dir, follow_symlinks=False)
        except OSError as error:
            if error.errno not in _NO_LINK:
                raise
            return False
        return True

    def _special(
        self, src_dir: int, name: str, dst_dir: int, dst_name: str, rel: str, seen: os.stat_result
    ) -> None:
        kind = stat.S_IFMT(seen.st_mode)
        if kind == stat.S_IFLNK:
            os.symlink(from_source(rel, os.readlink, name, dir_fd=src_dir), dst_name, dir_fd=dst_dir)
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

    def _finish(self, src: int, dst: int, seen: os.stat_result, rel: str) -> None:
        self.owner.give(dst)
        # After the chown, which clears set-ID bits. Keeping them mints nothing: the owner (the
        # target user) could set them on its own file anyway.
        os.fchmod(dst, stat.S_IMODE(seen.st_mode))
        # After the mode: an access ACL sets the group bits to its mask, as it does on the source.
        self._attributes(src, dst, rel)
        os.utime(dst, ns=(seen.st_atime_ns, seen.st_mtime_ns))

    def _attributes(self, src: int, dst: int, rel: str) -> None:
        """Extended attributes and ACLs (system.posix_acl_*), by descriptor: never through a link."""
        try:
            names = from_source(rel, os.listxattr, src)
        except SourceError as error:
            if error.error.errno != errno.EOPNOTSUPP:
                raise
            return  # the source's filesystem has none
        for name in names:
            if name.startswith("security."):
                continue
            try:
                value = from_source(rel, os.getxattr, src, name)
            except SourceError as error:
                if error.error.errno != errno.ENODATA:
                    raise
                continue  # removed since the listing
            try:
                os.setxattr(dst, name, value)
            except OSError as error:
                if error.errno not in _ATTRIBUTE_REFUSED:
                    raise
                self.attributes_refused.append(f"{rel} ({name})")
