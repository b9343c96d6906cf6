"""A file's content copied by descriptor, the kernel doing the work: a reflink where the filesystem
offers one (the copy shares the blocks until either side writes), else copy_file_range, sendfile
or read and write, in that order, each fallback resuming where the last stopped. A file with holes
keeps them (SEEK_DATA and SEEK_HOLE), as `cp -a` does: a 1 GB sparse file stays a few kilobytes.

Used by every copy the boot makes of a tree (the migration's copier, the upgrade's checkpoints);
it knows nothing of owners, modes or names: its callers open both files and finish them.
"""

from __future__ import annotations

import errno
import fcntl
import os

# linux/fs.h: FICLONE, `_IOW(0x94, 9, int)`: the whole file, shared (btrfs, xfs with reflink=1).
_FICLONE = 0x40049409
# What a filesystem answers that does not share blocks, or not between these two files.
_NO_REFLINK = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.EPERM})
# copy_file_range refuses across filesystems (EXDEV, kernels >= 5.19 for most pairs), on kernels
# without it (ENOSYS) and on filesystems that do not implement it (EOPNOTSUPP, EINVAL).
_NO_COPY_FILE_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})
_COPY_CHUNK = 1 << 30  # bytes per copy_file_range/sendfile call: the kernel copies a file per call
_READ_CHUNK = 1 << 20


class Content:
    """Copies content between open files; remembers, for the next file, which of the kernel's ways
    a filesystem refused (shared by a copy's threads: the flags only ever go from True to False)."""

    def __init__(self, reflink: bool = True) -> None:
        self._reflink = reflink
        self._copy_file_range = True
        self._sendfile = True
        self._seek_data = True
        self.reflinked = 0  # files whose copy shares the original's blocks

    def copy(self, src: int, dst: int, seen: os.stat_result) -> int:
        """Copy the whole content of `src` (as `seen`) into the empty `dst`; the bytes copied."""
        if self._reflink and seen.st_size:
            try:
                fcntl.ioctl(dst, _FICLONE, src)
                self.reflinked += 1
                return seen.st_size
            except OSError as error:
                if error.errno not in _NO_REFLINK:
                    raise
                self._reflink = False
        if seen.st_blocks * 512 < seen.st_size and self._seek_data:
            try:
                return self._sparse(src, dst, seen.st_size)
            except OSError as error:
                if error.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                self._seek_data = False  # the source's filesystem cannot say where data is
                for fd in (src, dst):
                    os.lseek(fd, 0, os.SEEK_SET)
                os.ftruncate(dst, 0)
        return self._stream(src, dst)

    def _sparse(self, src: int, dst: int, size: int) -> int:
        """Copy only the data segments, each at its offset, then give the copy its size: the holes
        between them stay holes."""
        copied = offset = 0
        while offset < size:
            try:
                start = os.lseek(src, offset, os.SEEK_DATA)
            except OSError as error:
                if error.errno == errno.ENXIO:  # no data past `offset`: a hole up to the end
                    break
                raise
            end = os.lseek(src, start, os.SEEK_HOLE)
            os.lseek(src, start, os.SEEK_SET)
            os.lseek(dst, start, os.SEEK_SET)
            copied += self._stream(src, dst, end - start)
            offset = end
        os.ftruncate(dst, size)
        return copied

    def _stream(self, src: int, dst: int, length: int | None = None) -> int:
        """Copy `length` bytes (None: up to the end) from the current offsets."""
        copied = 0

        def left() -> int:
            return _COPY_CHUNK if length is None else min(_COPY_CHUNK, length - copied)

        if self._copy_file_range:
            try:
                while left() and (count := os.copy_file_range(src, dst, left())):
                    copied += count
                return copied
            except OSError as error:
                if error.errno not in _NO_COPY_FILE_RANGE:
                    raise
                self._copy_file_range = False
        if self._sendfile:
            try:
                while left() and (count := os.sendfile(dst, src, None, left())):
                    copied += count
                return copied
            except OSError as error:
                if error.errno not in (errno.EINVAL, errno.ENOSYS):
                    raise
                self._sendfile = False
        while left() and (chunk := os.read(src, min(_READ_CHUNK, left()))):
            view = memoryview(chunk)
            while view:
                view = view[os.write(dst, view) :]
            copied += len(chunk)
        return copied
