"""Room on a volume, measured before a copy begins: what the copy will take, what the volume has.

Used by every copy the boot makes of a tree (the migration, the upgrade's checkpoints): a copy that
cannot fit is refused before its first byte, with both numbers, instead of failing half-way with
ENOSPC. What a tree takes is what its entries occupy on disk (their blocks: a sparse file counts its
data, not its size), each hard-linked file once; links are never followed and the walk never
leaves the tree's filesystem (a mount point inside it is its own).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from ..common.fsops import DIR_FLAGS

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


@dataclass(frozen=True)
class Room:
    needed: int  # bytes the copy will occupy
    free: int | None  # bytes the volume has for the target user (statvfs f_bavail); None: unknown

    @property
    def enough(self) -> bool:
        return self.free is None or self.needed <= self.free


class NoRoom(OSError):
    """A copy refused before it began: the volume has less room than the copy needs."""

    def __init__(self, room: Room, volume: str) -> None:
        super().__init__(errno.ENOSPC, os.strerror(errno.ENOSPC), volume)
        self.room = room


def size(count: int) -> str:
    """`60.0 MiB`: bytes as people read them (binary units, as `du -h` and `df -h` print)."""
    value = float(count)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"


def free(fd: int) -> int | None:
    """The bytes an unprivileged writer may still use on the filesystem of `fd` (the blocks kept
    for root are not the target user's: the gateway writes as that user afterwards); None for a
    filesystem that keeps no count (ramfs, some FUSE ones say 0 blocks in all)."""
    info = os.fstatvfs(fd)
    return info.f_bavail * info.f_frsize if info.f_blocks else None


def needed(dir_fd: int, names: Iterable[str]) -> int:
    """What the entries `names` (paths relative to `dir_fd`) occupy, everything below included.
    Raises OSError, its `filename` the path (relative to `dir_fd`) that could not be read."""
    seen: set[tuple[int, int]] = set()
    device = os.fstat(dir_fd).st_dev
    return sum(_occupied(dir_fd, name, device, seen) for name in names)


def _occupied(dir_fd: int, rel: str, device: int, seen: set[tuple[int, int]]) -> int:
    parent, _, name = rel.rpartition("/")
    try:
        fd = os.open(parent, DIR_FLAGS, dir_fd=dir_fd) if parent else os.dup(dir_fd)
    except OSError as error:
        raise OSError(error.errno, error.strerror, parent) from error
    try:
        return _entry(fd, name, rel, device, seen)
    finally:
        os.close(fd)


def _entry(dir_fd: int, name: str, rel: str, device: int, seen: set[tuple[int, int]]) -> int:
    try:
        info = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:  # gone since it was listed: it takes nothing
        return 0
    except OSError as error:
        raise OSError(error.errno, error.strerror, rel) from error
    if info.st_dev != device:  # another filesystem mounted inside: not part of this tree
        return 0
    if info.st_nlink > 1 and not stat.S_ISDIR(info.st_mode):
        if (info.st_dev, info.st_ino) in seen:
            return 0
        seen.add((info.st_dev, info.st_ino))
    taken = info.st_blocks * 512
    if not stat.S_ISDIR(info.st_mode):
        return taken
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return taken
    except OSError as error:
        raise OSError(error.errno, error.strerror, rel) from error
    try:
        try:
            children = os.listdir(fd)
        except OSError as error:
            raise OSError(error.errno, error.strerror, rel) from error
        return taken + sum(_entry(fd, child, f"{rel}/{child}", device, seen) for child in children)
    finally:
        os.close(fd)
