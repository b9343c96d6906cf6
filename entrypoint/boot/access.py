"""Can the target user write here, or read this? Asked of the kernel, as that user, not guessed
from mode bits.

Where it differs: as root, the answer comes from a short-lived child forked from PID 1 that takes
the user's groups, gid and uid and asks `access(2)`: ACLs, root-squashed NFS and read-only mounts
all answer for themselves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from ..common.plans import TargetUser

# A directory one can write but not search cannot have files created in it.
WRITABLE = os.W_OK | os.X_OK
# Reading a directory's entries needs search too; for a file, X_OK asks for execute permission.
READABLE = os.R_OK


def _denied(checks: list[tuple[str, int]]) -> list[str]:
    return [path for path, mode in checks if not os.access(path, mode)]


def denied_for(user: TargetUser, checks: Iterable[tuple[str, int]]) -> list[str]:
    """The paths among `checks` ((path, access mode) pairs) that `user` may not access so
    (missing ones included)."""
    wanted = list(checks)
    if os.geteuid() == user.uid or os.geteuid() != 0:
        return _denied(wanted)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become the user, answer through the pipe, never return into the caller
        status = 1
        try:
            os.close(read_end)
            os.setgroups(list(user.groups))
            os.setgid(user.gid)
            os.setuid(user.uid)
            os.write(write_end, json.dumps(_denied(wanted)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        data = answer.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return [path for path, _ in wanted]  # the child could not even become the user: nothing known
    return json.loads(data)


def unwritable_for(user: TargetUser, paths: Iterable[str]) -> list[str]:
    """The paths among `paths` that `user` could not create files in (missing ones included)."""
    return denied_for(user, ((path, WRITABLE) for path in paths))
