"""What each boot phase did, collected into the startup report.

A phase returns a `PhaseResult` whose figures are plain data (counts, bytes, paths), so the JSON
line in `docker logs`, the `startup-report.json` file that `status` reads and the tests all see the
same thing.

Who uses it: the boot's phases return its `PhaseResult`s (PID 1, as root then the target user);
PID 1 writes the report once, just before the program starts; `status` (operators, any user) reads
it back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from . import rundir

Status = Literal["ok", "skipped", "warned", "failed"]


def warning(event: str, message: str, /, **fields: Any) -> dict[str, Any]:
    """A fault that did not stop the boot: a stable event name, a sentence for humans, its data."""
    return {"event": event, "message": message, **fields}


@dataclass
class PhaseResult:
    name: str
    status: Status
    duration_ms: float
    figures: dict[str, Any] = field(default_factory=dict)
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def skipped(cls, name: str, reason: str) -> PhaseResult:
        return cls(name, "skipped", 0.0, {"reason": reason})

    def to_dict(self) -> dict[str, Any]:
        """What the report says of a phase: its typed fields that steer the boot (a subclass's) are
        the boot's business, not the report's."""
        return {key: getattr(self, key) for key in ("name", "status", "duration_ms", "figures", "warnings")}


class PhaseRecorder:
    """Collects figures and warnings while a phase runs; `result()` stamps status and duration."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.figures: dict[str, Any] = {}
        self.warnings: list[dict[str, Any]] = []
        self.failed = False
        self._started = time.monotonic()

    def warn(self, event: str, message: str, /, **fields: Any) -> None:
        self.warnings.append(warning(event, message, **fields))

    def result(self) -> PhaseResult:
        status: Status = "failed" if self.failed else ("warned" if self.warnings else "ok")
        return PhaseResult(self.name, status, elapsed_ms(self._started), self.figures, self.warnings)


def elapsed_ms(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 1)


@dataclass
class StartupReport:
    version: str
    mode: str
    user: dict[str, Any]
    phases: list[PhaseResult]
    duration_ms: float
    # When the program is not started (its state is not in place, or boots keep failing): why, and
    # the way out.
    held: dict[str, Any] | None = None

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return [{"phase": phase.name, **w} for phase in self.phases for w in phase.warnings]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "mode": self.mode,
            "user": self.user,
            "phases": [phase.to_dict() for phase in self.phases],
            "duration_ms": self.duration_ms,
            "held": self.held,
            "warnings": self.warnings,
        }


def write(report: StartupReport, run_dir: str) -> str | None:
    """Write the report atomically so `status` never reads half of it; None when unwritable."""
    return rundir.write_json(run_dir, rundir.STARTUP_REPORT, report.to_dict())


def read(run_dir: str) -> dict[str, Any] | None:
    return rundir.read_json(run_dir, rundir.STARTUP_REPORT)
