"""What every step of one migration shares: the plan, the typed outcome, the report's figures and
warnings, the descriptors held open, the owner of what it creates, and how a fault is reported.

One `Context` lives for one call of `migration.run`; the typed fields (outcome, source, strategy)
steer the phase and the boot, and each also sets its figure for the report.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
from typing import Any, Generic, TypeVar, cast

from ...common import log
from ...common.fsops import DIR_FLAGS, describe, errno_name
from ...common.plans import MigrationPlan, StopFlag
from ...common.report import PhaseRecorder
from .. import room
from ..room import NoRoom, Room
from ..treecopy import Owner, SourceError
from .journal import STAGING_DIR, Strategy

PHASE = "migration"
logger = log.get(PHASE)
T = TypeVar("T")
# The operator's own paths (the volume, a legacy dir's parent): following a link in them is the
# operator's intent. Below the volume's root, which the user owns, nothing is followed.
OPERATOR_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


class Outcome(enum.StrEnum):
    NOTHING_TO_MIGRATE = "nothing-to-migrate"
    ALREADY_MIGRATED = "already-migrated"
    MIGRATED = "migrated"
    CONFLICT = "conflict"  # the target kept; the legacy tree saved in the record directory
    BLOCKED = "blocked"  # the first legacy dir holding data cannot be read
    INTERRUPTED = "interrupted"
    FAILED = "failed"


class _Reported(Generic[T]):
    """A typed field of the Context that steers the phase, and sets its figure for the report
    whenever it is set (an enum as its value: figures are plain data)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, ctx: Context, owner: type | None = None) -> T:
        return cast(T, ctx.__dict__[self.name])

    def __set__(self, ctx: Context, value: T) -> None:
        ctx.__dict__[self.name] = value
        ctx.figures[self.name] = value.value if isinstance(value, enum.Enum) else value


class Context:
    """One run of the phase: set up by `migration.run`, passed to every step."""

    outcome = _Reported[Outcome]()
    source = _Reported[str | None]()  # the legacy directory migrated, resumed or found migrated
    strategy = _Reported[Strategy | None]()

    def __init__(
        self, plan: MigrationPlan, stop: StopFlag, recorder: PhaseRecorder, descriptors: contextlib.ExitStack
    ) -> None:
        self.plan = plan
        self.stop = stop
        self.recorder = recorder
        self.figures = recorder.figures
        # The report's first figures, in this order; the first three are the typed fields.
        self.outcome = Outcome.NOTHING_TO_MIGRATE
        self.source = None
        self.strategy = None
        self.figures.update(entries=0, bytes=0, conflicts=0, record=None, interrupted=False, relocated=0)
        self.descriptors = descriptors
        self.volume_real = os.path.realpath(plan.volume)
        # The init's records found in a legacy dir (one an earlier layout used as its state dir)
        # are not state: never migrated, never counted as data.
        self.record_name = os.path.basename(plan.record_dir)
        self.staging = os.path.join(plan.record_dir, STAGING_DIR)
        # Directories of the layout (volume, record dir, target, saved copies), given to the target
        # user when the phase ends, at every boot: until then root works in them even without
        # CAP_DAC_OVERRIDE, and a boot killed before it gave them is made good by the next one.
        self.made: list[int] = []
        self.owner = Owner(plan.owner)
        self.room: Room | None = None  # what the copy needs and the volume has, once measured
        self.legacy_found = False  # a legacy dir holds data (or could not be read to tell)
        self.failure: str | None = None  # why the migration did not finish, in a clause
        self._volume_fd: int | None = None

    def open(self, path: str, dir_fd: int | None = None, flags: int = DIR_FLAGS) -> int:
        """A descriptor held until the phase ends (a directory, never through a link, by default)."""
        fd = os.open(path, flags, dir_fd=dir_fd)
        self.descriptors.callback(os.close, fd)
        return fd

    def in_volume(self, path: str) -> str | None:
        """`path` relative to the volume's root ("" for the root), None when it lies elsewhere."""
        rel = os.path.relpath(os.path.normpath(path), os.path.normpath(self.plan.volume))
        return None if rel == ".." or rel.startswith("../") else ("" if rel == "." else rel)

    def open_dir(self, path: str) -> int:
        """A directory of the plan, held open. Below the volume's root it is reached one name at
        a time, never through a link: the root is the user's, and a link planted there in place of
        the target would send root's renames anywhere."""
        rel = self.in_volume(path)
        if rel is None:
            return self.open(path, flags=OPERATOR_DIR)
        if self._volume_fd is None:
            self._volume_fd = self.open(self.plan.volume, flags=OPERATOR_DIR)
        fd = self._volume_fd
        for part in filter(None, rel.split("/")):
            fd = self.open(part, fd)
        return fd

    def stopped(self) -> None:
        """A stop (SIGTERM) was asked for: what is staged stays for the next boot to resume."""
        self.outcome = Outcome.INTERRUPTED
        self.figures["interrupted"] = True

    def conflict(self, event: str, message: str, **fields: Any) -> None:
        self.figures["conflicts"] += 1
        self.recorder.warn(event, message, **fields)

    def unreadable_fix(self, path: str) -> str:
        """How to let the init read a legacy dir: only the host can, unless the init is root."""
        if self.plan.owner is not None:
            return ""
        return (
            f"; the init runs as uid {os.geteuid()}: make {path} readable by that uid on the host, "
            "or start the container once as root so that the init migrates it"
        )

    def fault(self, error: OSError | SourceError, kept: bool) -> None:
        """A failed migration, as a warning that names the errno, the path and what is left where."""
        where = (
            f"the staged copy is kept in {self.staging} and the migration resumes at the next boot"
            if kept
            else f"{self.plan.target} was left as it was"
        )
        self.outcome = Outcome.FAILED
        if isinstance(error, SourceError):
            source = self.source or ""
            path = os.path.join(source, error.rel) if error.rel else source
            code = error.error.errno
            unreadable = code in (errno.EACCES, errno.EPERM)
            event = "migration_source_unreadable" if unreadable else "migration_source_error"
            if code == errno.ENOENT:
                event = "migration_source_vanished"
            fix = self.unreadable_fix(source) if unreadable else ""
            self.failure = f"cannot read {path}: {describe(error.error)}"
            self.recorder.warn(
                event,
                f"{self.failure}; {where}{fix}",
                source=source,
                path=path,
                errno=errno_name(error.error),
            )
            return
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            self._no_room(error, "nothing was copied" if isinstance(error, NoRoom) else where)
            return
        event = "migration_target_read_only" if error.errno == errno.EROFS else "migration_failed"
        self.failure = f"migration into {self.plan.target} failed: {describe(error)}"
        self.recorder.warn(
            event,
            f"{self.failure}; {where}",
            target=self.plan.target,
            path=error.filename,
            errno=errno_name(error),
        )

    def _no_room(self, error: OSError, where: str) -> None:
        """No room on the volume: both numbers (measured before the copy began) and the ways out."""
        volume, measured = self.plan.volume, self.room
        if measured is None or measured.free is None:
            short = f"{volume} ran out of room ({describe(error)})"
        else:
            short = (
                f"{self.source} needs {room.size(measured.needed)} ({measured.needed} bytes) on {volume}, "
                f"which has {room.size(measured.free)} ({measured.free} bytes) free"
            )
        self.failure = f"{short}: {where}"
        self.recorder.warn(
            "migration_no_space",
            f"{self.failure}. Give the volume room (free space on it, or make it larger) and restart "
            f"the container to migrate; or set {self.plan.mode_setting}=off and restart to start without "
            "the old state",
            source=self.source,
            volume=volume,
            needed_bytes=None if measured is None else measured.needed,
            free_bytes=None if measured is None else measured.free,
            errno=errno_name(error),
        )
