"""Can the target user write here? Asked of the kernel, as that user, not guessed from mode bits.

As root, the answer comes from a short-lived forked child that takes the user's groups, gid and uid
and asks `access(2)`: ACLs, root-squashed NFS and read-only mounts all answer for themselves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from ..common.plans import TargetUser


def _unwritable(paths: list[str]) -> list[str]:
    # X_OK too: a directory one can write but not search cannot have files created in it.
    return [path for path in paths if not os.access(path, os.W_OK | os.X_OK)]


def unwritable_for(user: TargetUser, paths: Iterable[str]) -> list[str]:
    """The paths among `paths` that `user` could not create files in (missing ones included)."""
    wanted = list(paths)
    if os.geteuid() == user.uid or os.geteuid() != 0:
        return _unwritable(wanted)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: become the user, answer through the pipe, never return into the caller
        status = 1
        try:
            os.close(read_end)
            os.setgroups(list(user.groups))
            os.setgid(user.gid)
            os.setuid(user.uid)
            os.write(write_end, json.dumps(_unwritable(wanted)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as answer:
        data = answer.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        return wanted  # the child could not even become the user: nothing is known to be writable
    return json.loads(data)
