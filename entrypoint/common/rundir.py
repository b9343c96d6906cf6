"""The run dir's file names, and the one atomic writer every process uses for every file it replaces.

Who uses it: all four programs. The init (PID 1, root then the target user), supervisord and the
crash guard (the target user) and the operator tools (any user) find each other only through
these names in the run dir; the boot's phases write the state volume's records with the same
writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Mapping
from typing import Any

# supervisord's: written by PID 1 at every boot (config), by supervisord itself (the rest).
SUPERVISOR_CONFIG = "supervisord.conf"
SUPERVISOR_SOCKET = "supervisor.sock"
SUPERVISOR_LOG = "supervisord.log"
SUPERVISOR_PID = "supervisord.pid"
# Written by PID 1 just before the program starts (common/report.py owns its format).
STARTUP_REPORT = "startup-report.json"
# The crash guard's orders, written by PID 1 before supervisord starts (common/guardplan.py).
GUARD_PLAN = "crashguard-plan.json"
# Written by the crash guard (common/guardstate.py owns its format).
GUARD_STATE = "crashguard.json"
# Created by the init on SIGTERM/SIGINT: from then on nothing may restart the gateway.
STOPPING_MARKER = "stopping"
# Written by the crash guard when it refuses with the `exit` action: the init's exit code.
EXIT_CODE = "exit-code"
# Written by PID 1 as it reaps: how many processes it has reaped that were not its child supervisord
# (orphans the program's own children left behind), a number, as the metrics say it.
ZOMBIES_REAPED = "zombies-reaped"
# Written by the crash guard after each change (common/metrics.py owns its format): for node
# exporter's textfile collector, which reads `*.prom`.
METRICS_TEXTFILE = "metrics.prom"
# Locked by the init that boots with this run dir, for its whole life (`claim`).
INSTANCE_LOCK = "init.lock"

TEMPORARY_SUFFIX = ".tmp"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


class InstanceRunning(Exception):
    """Another init lives with this run dir (the container's own PID 1, when this is a `docker exec`)."""

    def __init__(self, pid: int | None) -> None:
        super().__init__(f"an init runs with this run dir (pid {pid})")
        self.pid = pid


def claim(run_dir: str, owner: tuple[int, int] | None) -> int | None:
    """Take the run dir for this init's whole life: one boot per container. The lock's descriptor
    (close-on-exec: no program the init starts holds it, and it is gone with the init), or None
    when the run dir cannot be made or written (the boot reports that itself). A run dir made here
    is given to `owner`, as the prepare phase would. Raises InstanceRunning when a live init holds
    it: a second boot would re-own, migrate and write the live one's files beside it."""
    try:
        if not os.path.isdir(run_dir):
            os.makedirs(run_dir, 0o755)
            if owner is not None:
                os.chown(run_dir, *owner)
        fd = os.open(
            os.path.join(run_dir, INSTANCE_LOCK), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644
        )
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).strip()
        os.close(fd)
        raise InstanceRunning(int(holder) if holder.isdigit() else None) from None
    except OSError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def replace_file(
    name: str,
    data: bytes,
    *,
    dir_fd: int | None = None,
    mode: int = 0o644,
    prepare: Callable[[int], None] | None = None,
) -> None:
    """Replace `name` with `data` so that a reader, another process or the next boot after a kill
    or a power cut sees the old file or the new one, whole, never a mix. Raises OSError.

    The temporary sits next to the file (a rename never crosses filesystems) under one fixed name,
    so that a kill leaves at most one behind, which the next write replaces. It is created afresh
    (O_EXCL, O_NOFOLLOW): a link planted under that name in a user-writable directory is neither
    followed nor written through. `prepare(fd)` runs on the temporary before it is flushed (to
    hand it to another owner). The data is on disk before the name points at it (fsync), and the
    rename is on disk before this returns (fsync of the directory).
    """
    temporary = name + TEMPORARY_SUFFIX
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temporary, dir_fd=dir_fd)
    fd = os.open(temporary, _CREATE, mode, dir_fd=dir_fd)
    try:
        with open(fd, "wb", closefd=False) as handle:
            handle.write(data)
        if prepare is not None:
            prepare(fd)
        os.fchmod(fd, mode)  # whatever the umask took away
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=dir_fd)
        raise
    os.close(fd)
    os.replace(temporary, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    _sync_directory(name, dir_fd)


def _sync_directory(name: str, dir_fd: int | None) -> None:
    if dir_fd is not None and os.path.dirname(name) == "":
        os.fsync(dir_fd)
        return
    parent = os.open(os.path.dirname(name) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        os.fsync(parent)
    finally:
        os.close(parent)


def json_bytes(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=1) + "\n").encode()


def write_json(run_dir: str, name: str, data: Mapping[str, Any]) -> str | None:
    """Replace a run-dir file with `data` as JSON; the path, or None when the run dir is unwritable
    (the callers' files are aids: a reader treats a missing one as unknown)."""
    path = os.path.join(run_dir, name)
    try:
        replace_file(path, json_bytes(data))
    except OSError:
        return None
    return path


def read_json(run_dir: str, name: str) -> dict[str, Any] | None:
    """A run-dir file's JSON object, or None when it is missing, unreadable or not an object."""
    try:
        with open(os.path.join(run_dir, name), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_number(run_dir: str, name: str) -> int | None:
    """A run-dir file that holds one whole number (`EXIT_CODE`, `ZOMBIES_REAPED`), or None."""
    try:
        with open(os.path.join(run_dir, name), encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None


def write_number(run_dir: str, name: str, number: int) -> None:
    """Replace a run-dir file with one whole number. Raises OSError."""
    replace_file(os.path.join(run_dir, name), f"{number}\n".encode("ascii"))


def read_exit_code(run_dir: str) -> int | None:
    """The code the crash guard asked the init to exit with, if it asked."""
    return read_number(run_dir, EXIT_CODE)


def write_exit_code(run_dir: str, code: int) -> None:
    """Ask the init to exit with `code` once supervisord is gone. Raises OSError."""
    write_number(run_dir, EXIT_CODE, code)
