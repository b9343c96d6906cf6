"""The comparison of a legacy tree with a target that already holds something: the paths the
target lacks, the entries both hold alike, and the conflicts (the same path, different content).

Before a merge or a save is journaled, it only reads, by file descriptor, never following a link:
directories in both are entered; regular files in both are alike when their bytes are; links in both
when their targets read the same; anything else in both is a conflict. Paths only in the target (the
leftovers of an earlier start, the application's own files) are not looked at.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from ...common.fsops import DIR_FLAGS
from ..treecopy import SourceError, from_source
from .context import Context

_CHUNK = 1 << 20
# O_NONBLOCK: an entry swapped for a FIFO since the lstat must not hang the boot in open().
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


@dataclass
class Comparison:
    missing: list[str] = field(default_factory=list)  # in the source only: to copy
    alike: int = 0
    conflicts: list[str] = field(default_factory=list)


def compare(ctx: Context, source_fd: int, target_fd: int) -> Comparison:
    found = Comparison()
    _walk(ctx, source_fd, target_fd, "", found)
    return found


def _walk(ctx: Context, source_fd: int, target_fd: int, prefix: str, found: Comparison) -> None:
    for name in sorted(from_source(prefix, os.listdir, source_fd)):
        rel = prefix + name
        if not prefix and name == ctx.record_name:
            continue
        try:
            theirs = os.lstat(name, dir_fd=target_fd)
        except FileNotFoundError:
            found.missing.append(rel)
            continue
        try:
            ours = from_source(rel, os.lstat, name, dir_fd=source_fd)
        except SourceError as error:
            if error.error.errno != errno.ENOENT:
                raise
            continue  # gone from the source since its listing: nothing to bring over
        if stat.S_ISDIR(ours.st_mode) and stat.S_ISDIR(theirs.st_mode):
            inner_source = from_source(rel, os.open, name, DIR_FLAGS, dir_fd=source_fd)
            try:
                inner_target = os.open(name, DIR_FLAGS, dir_fd=target_fd)
                try:
                    _walk(ctx, inner_source, inner_target, rel + "/", found)
                finally:
                    os.close(inner_target)
            finally:
                os.close(inner_source)
        elif _alike(source_fd, target_fd, name, rel, ours, theirs):
            found.alike += 1
        else:
            found.conflicts.append(rel)


def _alike(
    source_fd: int, target_fd: int, name: str, rel: str, ours: os.stat_result, theirs: os.stat_result
) -> bool:
    if stat.S_ISLNK(ours.st_mode) and stat.S_ISLNK(theirs.st_mode):
        return bool(
            from_source(rel, os.readlink, name, dir_fd=source_fd) == os.readlink(name, dir_fd=target_fd)
        )
    if not (stat.S_ISREG(ours.st_mode) and stat.S_ISREG(theirs.st_mode)) or ours.st_size != theirs.st_size:
        return False
    source = from_source(rel, os.open, name, _FILE_FLAGS, dir_fd=source_fd)
    try:
        target = os.open(name, _FILE_FLAGS, dir_fd=target_fd)
        try:
            # Regular files both, as opened (not a FIFO swapped in since the lstat), then bytes.
            if not (stat.S_ISREG(os.fstat(source).st_mode) and stat.S_ISREG(os.fstat(target).st_mode)):
                return False
            while chunk := from_source(rel, os.read, source, _CHUNK):
                if os.read(target, len(chunk)) != chunk:
                    return False
            return os.read(target, 1) == b""
        finally:
            os.close(target)
    finally:
        os.close(source)
