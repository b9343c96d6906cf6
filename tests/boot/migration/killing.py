"""SIGKILL at the N-th filesystem call: a step that writes state (the migration phase, a checkpoint,
a rollback) run in a forked copy of the test process that kills itself just before its N-th call,
for every N, so that no instant is left to chance.

The calls are counted by an audit hook (PEP 578): every call that creates, changes, moves or
removes an entry (and every open and listing) raises an audit event before it reaches the kernel.
The two that fsops makes through ctypes (renameat2, syncfs) raise none, so the child wraps the
library handle to raise its own. One copier thread makes the sequence of calls the same in every
run from the same state: the N-th call of a run is the N-th of the run it is compared with. The
fork costs a millisecond where starting Python costs a hundred, which is what makes every N
affordable.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint.boot import migration
from entrypoint.boot import treecopy as copier
from entrypoint.common import fsops
from entrypoint.common.plans import MigrationPlan, StopFlag

COUNTED = frozenset(
    {
        "open",
        "os.listdir",
        "os.scandir",
        "os.mkdir",
        "os.rename",
        "os.remove",
        "os.rmdir",
        "os.symlink",
        "os.link",
        "os.chown",
        "os.chmod",
        "os.utime",
        "os.setxattr",
        "os.truncate",
        "fcntl.flock",
        "fsops.libc",
    }
)


class _AuditedLibc:
    """The C library handle of fsops, raising an audit event before each call through it."""

    def __init__(self, libc: Any) -> None:
        self._libc = libc

    def __getattr__(self, name: str) -> Callable[..., Any]:
        call = getattr(self._libc, name)

        def audited(*args: Any) -> Any:
            sys.audit("fsops.libc", name)
            return call(*args)

        return audited


@dataclass
class Boot:
    killed: bool
    calls: int  # counted calls of a run that was not killed
    result: dict[str, Any] | None


def boot(plan: MigrationPlan, kill_at: int | None = None) -> Boot:
    """One boot's migration phase in a forked child, SIGKILLed just before its `kill_at`-th call."""

    def phase() -> dict[str, Any]:
        result = migration.run(plan, StopFlag())
        return {"figures": result.figures, "warnings": result.warnings}

    return killed(phase, kill_at)


def killed(step: Callable[[], dict[str, Any]], kill_at: int | None = None) -> Boot:
    """`step` in a forked child, SIGKILLed just before its `kill_at`-th call; what it returned."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read_end)
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # its log lines
            _run(step, kill_at, write_end)
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with open(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        assert os.WTERMSIG(status) == signal.SIGKILL
        return Boot(True, 0, None)
    assert os.WEXITSTATUS(status) == 0, f"the step raised in a child run (kill_at={kill_at})"
    report = json.loads(data)
    return Boot(False, report["calls"], report["result"])


def _run(step: Callable[[], dict[str, Any]], kill_at: int | None, report_fd: int) -> None:
    copier.WORKERS = 1
    fsops._libc = _AuditedLibc(fsops._libc)
    calls = 0

    def hook(event: str, args: tuple[Any, ...]) -> None:
        nonlocal calls
        if event in COUNTED:
            calls += 1
            if calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    sys.addaudithook(hook)
    result = step()
    report = {"calls": calls, "result": result}
    os.write(report_fd, json.dumps(report).encode())


def shape(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under `root` as a boot leaves it, whatever the time it ran at: kind, owner, mode,
    content (and for a file, its mtime, copied from the source, and its link count: hard links
    must stay links); not a directory's or a link's mtime, which a commit or a settle sets to now."""
    found: dict[str, tuple[Any, ...]] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory) / name
            seen = os.lstat(path)
            owner = (seen.st_uid, seen.st_gid)
            if stat.S_ISREG(seen.st_mode):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                entry: tuple[Any, ...] = ("file", owner, stat.S_IMODE(seen.st_mode), seen.st_mtime_ns, digest)
                entry += (seen.st_nlink,)
            elif stat.S_ISLNK(seen.st_mode):
                entry = ("link", owner, os.readlink(path))
            else:
                entry = (stat.filemode(seen.st_mode)[0], owner, stat.S_IMODE(seen.st_mode))
            found[str(path.relative_to(root))] = entry
    return found
