"""One writer of the state at a time: the init that runs the application on it, or an operator's
checkpoint, rollback or restore (`<record dir>/state.lock`, an advisory lock).

Who uses it: PID 1 takes it (as the target user) before its upgrade gate and keeps it for its life,
so that a one-off container on the same volumes (`docker compose run ... rollback`) refuses while
the application may run; the operator's commands take it for as long as they write. The kernel
drops it with its holder, whatever kills it: a lock is never stale.
"""

from __future__ import annotations

import os

from .fsops import flock_within

FILE = "state.lock"


class StateBusy(Exception):
    """Another process writes this state, or runs the application on it."""


def take(record_dir: str, wait_s: float = 0.0) -> int:
    """The lock's descriptor (close-on-exec: no program the holder starts holds it). Raises
    StateBusy after `wait_s`, OSError when the record dir cannot be written."""
    os.makedirs(record_dir, 0o700, exist_ok=True)
    fd = os.open(os.path.join(record_dir, FILE), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    if not flock_within(fd, wait_s):
        os.close(fd)
        raise StateBusy(record_dir)
    return fd
