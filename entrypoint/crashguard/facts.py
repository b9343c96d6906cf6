"""What the crash guard's worker learns and hands to its policy, as data: the memory cgroup's
figures at an exit, and the program's answer about a restart handoff.

`runtime.Runtime` fills these in (from `common/cgroup` and the program's CLI, `handoff`),
`policy.Guard` decides from them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class Memory:
    """The memory cgroup's figures (None: the kernel does not say)."""

    oom_kills: int | None  # processes the kernel's OOM killer has killed in the cgroup, ever
    limit_bytes: int | None
    peak_bytes: int | None


class Answer(enum.StrEnum):
    ACCEPTED = "accepted"  # the exit was a restart the program asked for
    DECLINED = "declined"  # it was not (no handoff, another pid's, expired, invalid)
    UNSUPPORTED = "unsupported"  # the program's CLI has no restart-handoff contract
    FAILED = "failed"  # no answer: a timeout, an unreadable answer, its store unavailable


@dataclass(frozen=True)
class Handoff:
    """The program's answer about the exit of `pid`."""

    pid: int
    answer: Answer
    detail: str  # the status and reason it gave, or why there was no answer
    reason: str | None = None  # accepted: why it restarted (`gateway.restart`, `SIGUSR2`, ...)
    source: str | None = None  # accepted: who asked (`operator-restart`, `signal`, `config-write`, ...)
    restart_kind: str | None = None  # accepted: `full-process` or `update-process`
    capable: bool | None = None  # what a capabilities probe found this time; None: none answered
