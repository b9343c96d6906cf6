"""Kernel helpers that work by file descriptor and never follow a link: the vocabulary the boot's
phases use on trees a user can write to.

Who uses it: the boot's phases (PID 1, as root, before the privilege drop); the state lock
(`statelock`), also in the operator's one-off commands. Nothing here decides
anything; each helper is one kernel operation made safe, or one fact the kernel knows.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterable, Iterator

from . import procfs

# Every directory the boot opens below a volume root: never through a link (O_NOFOLLOW), and an
# entry swapped for a FIFO since it was listed never blocks the open (O_NONBLOCK).
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
AT_FDCWD = -100
_RENAME_NOREPLACE = 1

_libc = ctypes.CDLL(None, use_errno=True)


def errno_name(error: OSError) -> str:
    """`EACCES`, `ENOSPC`, ...: the name users search for, not the number."""
    return errno.errorcode.get(error.errno or 0, str(error.errno))


def describe(error: OSError) -> str:
    return f"{error.strerror or error} ({errno_name(error)})"


def lexists(name: str, dir_fd: int | None = None) -> bool:
    try:
        os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True


def rename_noreplace(src_dir: int, src: str, dst_dir: int, dst: str) -> None:
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
    if lexists(dst, dst_dir):
        raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), dst)
    os.rename(src, dst, src_dir_fd=src_dir, dst_dir_fd=dst_dir)


def flock_within(fd: int, wait_s: float, given_up: Callable[[], bool] = lambda: False) -> bool:
    """An exclusive flock on `fd`, tried every 0.1 s for `wait_s` seconds or until `given_up()`:
    whether it was taken."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline or given_up():
                return False
            time.sleep(0.1)


def syncfs(fd: int) -> None:
    """Flush the filesystem holding `fd`. Before staged copies become visible: after a power cut,
    delayed allocation (ext4, xfs) would otherwise show renamed-in files empty."""
    if _libc.syncfs(fd) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@contextlib.contextmanager
def walk_to(dir_fd: int, rel: str) -> Iterator[int]:
    """The directory `rel` below `dir_fd`, opened one component at a time, never through a link."""
    opened: list[int] = []
    try:
        current = dir_fd
        for part in filter(None, rel.split("/")):
            current = os.open(part, DIR_FLAGS, dir_fd=current)
            opened.append(current)
        yield current
    finally:
        for fd in opened:
            os.close(fd)


def remove(name: str, dir_fd: int) -> None:
    """Remove an entry of any kind (a tree without following links); absent is fine."""
    try:
        seen = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(seen.st_mode):
        # Imported here: shutil (and what it imports: fnmatch, bz2 and lzma where they are) would
        # stay in PID 1 for its life, for a tree only a migration ever removes.
        import shutil

        shutil.rmtree(name, dir_fd=dir_fd)
    else:
        os.unlink(name, dir_fd=dir_fd)


def _mount_id(path: str) -> int | None:
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return procfs.mount_id(fd)
    finally:
        os.close(fd)


def is_mount_point(path: str) -> bool:
    """Compares mount ids, not devices: a bind mount of a directory of the same filesystem has the
    parent's st_dev, and os.path.ismount misses it (a rename of it would still fail with EBUSY)."""
    own, parent = _mount_id(path), _mount_id(os.path.dirname(path) or "/")
    if own is None or parent is None:  # no /proc: the device comparison is all there is
        return os.path.ismount(path)
    return own != parent


def mount_points_below(roots: Iterable[str]) -> dict[str, frozenset[str]]:
    """Mount points below the roots, as {directory path as given: names mounted in it}.

    For a walk that must not enter them: a bind mount from the root's own filesystem keeps its
    device number, so comparing devices does not see it; the mount table does. Without /proc this
    is empty and a device check still stops at every other filesystem.
    """
    points = [mount.point for mount in procfs.mounts()]
    found: dict[str, set[str]] = {}
    for root in roots:
        real = os.path.realpath(root).rstrip("/")
        for point in points:
            if point.startswith(real + "/"):
                parent, name = (root + point[len(real) :]).rsplit("/", 1)
                found.setdefault(parent, set()).add(name)
    return {parent: frozenset(names) for parent, names in found.items()}
