"""What the crash guard's policy asks for: the effects its every decision returns, as data.

`policy.Guard` returns these, `runtime.Runtime` carries them out (a log line, the timer, a start, a
question to the program's CLI, the boot ledger, the exit action), in order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..common.ledger import Outcome


@dataclass(frozen=True)
class Log:
    """One JSON line (`log.event`); the policy adds the program's name to every line."""

    level: str
    event: str
    message: str
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Schedule:
    """Call `Guard.on_timer` at `at` (epoch seconds), replacing any pending timer."""

    at: float


@dataclass(frozen=True)
class Cancel:
    """Drop the pending timer, if any."""


@dataclass(frozen=True)
class Start:
    """Ask supervisord to start the program now (a fault comes back as `Guard.on_start_failed`)."""


@dataclass(frozen=True)
class AskHandoff:
    """Ask the program's CLI, without blocking the events, whether the exit of `pid` was a restart
    it requested; first whether its CLI offers that at all when `probe`. The answer comes back as
    `Guard.on_handoff`."""

    pid: int
    probe: bool


@dataclass(frozen=True)
class MarkLedger:
    """Record how this boot ended in the boot ledger (the last write wins)."""

    outcome: Outcome


@dataclass(frozen=True)
class ExitAction:
    """Have the init exit with `code`: written to the run dir, then supervisord shuts down."""

    code: int


Effect = Log | Schedule | Cancel | Start | AskHandoff | MarkLedger | ExitAction
