"""The SQLite databases of a copied tree, each made one consolidated file with SQLite's online backup
API: what was committed in its write-ahead log is in it, and no `-wal`, `-shm` or `-journal` lies
beside it (the application's own preflight refuses a file with one).

Where it differs: it works on a copy the upgrade has just made in its staging directory, never on
the live state: the copy of a database and its log, taken while no writer runs, is consistent, and
opening it there changes nothing the application will see.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator

from ...common.checkpoints import Database

_HEADER = b"SQLite format 3\x00"
SIDECARS = ("-wal", "-shm", "-journal")
_LOGS = ("-wal", "-journal")  # the sidecars that can hold committed (or to be undone) pages
_CHUNK = 1 << 20
# A database is whole pages, each a power of two from 512 bytes: its size is a multiple of 512.
_PAGE_MIN = 512


def databases(root: str) -> Iterator[str]:
    """The SQLite databases under `root` (by their header), links never followed."""
    for directory, _, files in os.walk(root):
        for name in sorted(files):
            if name.endswith(SIDECARS):
                continue
            path = os.path.join(directory, name)
            with contextlib.suppress(OSError):
                size = os.lstat(path).st_size  # the copy's inode, just made: no disk read
                if size < _PAGE_MIN or size % _PAGE_MIN:
                    continue  # not whole pages: not a database (and its header is not read from disk)
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
                try:
                    if stat.S_ISREG(os.fstat(fd).st_mode) and os.pread(fd, len(_HEADER), 0) == _HEADER:
                        yield path
                finally:
                    os.close(fd)


def consolidate(path: str) -> None:
    """Make the database at `path` (a copy, with its sidecars) one file, nothing committed lost."""
    if not any(_holds_pages(path + log) for log in _LOGS):
        # No log with pages in it: the file already holds every commit (a writer that closed
        # cleanly checkpointed its log), and copying it again through SQLite would only cost time.
        # What lies beside it is empty logs and an index into a log there is not.
        _remove_sidecars(path)
        return
    # Imported here: only an upgrade's checkpoint needs SQLite, and PID 1 keeps what it imports.
    import sqlite3

    consolidated = path + ".consolidated"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(consolidated)
    # Read-write, as the copy is ours: a hot journal left by a killed writer is rolled back first.
    source = sqlite3.connect(path)
    try:
        target = sqlite3.connect(consolidated)
        try:
            source.backup(target)  # the pages as a reader sees them: the log's committed frames too
        finally:
            target.close()
    except sqlite3.Error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(consolidated)
        raise
    finally:
        source.close()
    os.rename(consolidated, path)
    _remove_sidecars(path)


def _remove_sidecars(path: str) -> None:
    for sidecar in SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + sidecar)


def _holds_pages(path: str) -> bool:
    try:
        return os.lstat(path).st_size > 0
    except FileNotFoundError:
        return False


def copied(path: str, inside: str) -> Database:
    """The database at `path` (a copy) consolidated, as the manifest says it: where, its checksum,
    its `user_version`. A file with SQLite's header that SQLite cannot read (damaged, a stray
    header) stays as it was copied, sidecars and all, and the manifest says why."""
    import hashlib  # here: loading OpenSSL's hashes costs every boot that takes no checkpoint
    import sqlite3

    try:
        consolidate(path)
        # immutable: reading the version must not make a sidecar beside the copy.
        reader = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            user_version, note = int(reader.execute("PRAGMA user_version").fetchone()[0]), None
        finally:
            reader.close()
    except sqlite3.Error as error:
        user_version, note = -1, f"SQLite cannot read it ({error}): copied as it was"
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    rel = os.path.relpath(path, inside)
    return Database(rel, digest.hexdigest(), user_version, os.path.getsize(path), note)
