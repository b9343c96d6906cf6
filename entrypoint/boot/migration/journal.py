"""The migration's files in the state volume: the journal of a migration under way, the record of
a finished one, and the names of the staging that holds them.

A boot writes them; the next boot, perhaps of another version of the init, reads them to resume a
killed migration or to skip a finished one: the JSON below is a contract between versions, and
FORMAT_VERSION changes whenever a field changes meaning (fields are only ever added, optional).

Everything lives in the record directory, on the state volume's filesystem, so that every step
into place is a rename within one filesystem:

    <record dir>/migration.json                the record: a later boot is a no-op
    <record dir>/migration-staging/
        journal.json                           what this migration is doing
        tree/                                  strategy "rename": the source directory itself
        items/<i>, items/<i>.part              the other strategies: copies, `.part` while incomplete
    <record dir>/legacy/<name>-<UTC time>/     strategy "save": a legacy tree the target conflicts with
    <record dir>/named-at-root.json            the user's entries at the volume's root, once named

Versions before the state volume had a root of its own kept the record dir inside the target,
which was the volume's root: their record is where this version's is, and their journal names
that root as its target (the staging is finished there, then moved with the rest of the root).
The record dir belongs to the user after the boot, so a journal is only followed when every path
it names is one this plan allows (`Journal.fits`).
"""

from __future__ import annotations

import enum
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...common import rundir
from ...common.plans import MigrationPlan

RECORD_FILE = "migration.json"
STAGING_DIR = "migration-staging"
JOURNAL_FILE = "journal.json"
TREE_DIR = "tree"
ITEMS_DIR = "items"
LEGACY_DIR = "legacy"
ASIDE_MARK = ".migrated-"
NAMED_AT_ROOT_FILE = "named-at-root.json"
FORMAT_VERSION = 1
_ITEM = re.compile(rf"{ITEMS_DIR}/[0-9]+")
# The journal names the user's paths and the record dir is the user's: neither is for other users.
_MODE = 0o600


class State(enum.StrEnum):
    """How far a migration got; what a new boot does with it is in staging.resume."""

    STAGING = "staging"  # copies being made, or the source being renamed in: nothing visible yet
    COMMITTING = "committing"  # complete and flushed: staged entries being renamed into the target


class Strategy(enum.StrEnum):
    """How the source reaches the staging (the record and the report keep the value)."""

    RENAME = "rename"  # the source directory itself, in one rename: same mount, not a mount point
    COPY = "copy"  # its top-level entries copied: the kernel refused the rename
    MERGE = "merge"  # a copy of the paths the target lacks, which holds nothing that differs
    MERGE_MISSING = "merge-missing"  # a copy of only the paths the target lacks, asked for
    SAVE = "save"  # the whole tree copied aside: the target holds different versions of its files

    @classmethod
    def parse(cls, value: object) -> Strategy | None:
        """The strategy of a record, None for one this version does not know."""
        try:
            return cls(value)
        except ValueError:
            return None


@dataclass
class Journal:
    """What a migration under way is doing: enough for a new boot to finish it or to drop it."""

    state: State
    strategy: Strategy
    source: str
    source_id: tuple[int, int]  # (st_dev, st_ino) of the source directory as opened at the start
    source_mount: bool
    aside: str  # where a plain source directory goes once its content is in the target
    target: str
    started: str
    moves: list[tuple[str, str]] = field(default_factory=list)  # (staged path, path in the target)
    kept_existing: int | None = None  # merges: entries both had, the target's kept
    conflicts: list[str] | None = None  # save: paths that differ in the target (a sample)
    conflict_count: int = 0
    entries: int = 0  # measured when the staging is complete, written from COMMITTING on
    size: int = 0

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "state": self.state.value,
            "strategy": self.strategy.value,
            "source": self.source,
            "source_id": list(self.source_id),
            "source_mount": self.source_mount,
            "aside": self.aside,
            "target": self.target,
            "started": self.started,
            "moves": [list(move) for move in self.moves],
        }
        if self.kept_existing is not None:
            data["kept_existing"] = self.kept_existing
        if self.conflicts is not None:
            data.update(conflicts=self.conflicts, conflict_count=self.conflict_count)
        if self.state is State.COMMITTING:
            data.update(entries=self.entries, bytes=self.size)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Journal | None:
        """The journal, or None when a field is missing or malformed (the staging is then unusable)."""
        try:
            state = State(data["state"])
            dev, ino = data["source_id"]
            return cls(
                state=state,
                strategy=Strategy(data["strategy"]),
                source=str(data["source"]),
                source_id=(int(dev), int(ino)),
                source_mount=bool(data["source_mount"]),
                aside=str(data["aside"]),
                target=str(data["target"]),
                started=str(data["started"]),
                moves=[(str(staged), str(rel)) for staged, rel in data["moves"]],
                kept_existing=data.get("kept_existing"),
                conflicts=[str(rel) for rel in data["conflicts"]] if "conflicts" in data else None,
                conflict_count=int(data.get("conflict_count", 0)),
                entries=int(data["entries"]) if state is State.COMMITTING else 0,
                size=int(data["bytes"]) if state is State.COMMITTING else 0,
            )
        except (KeyError, TypeError, ValueError):
            return None

    def fits(self, plan: MigrationPlan) -> bool:
        """Every path names what this plan allows: one of its legacy dirs (and its aside), the
        target, the volume's root (an earlier version's target) or a saved copy's directory, and
        staged entries and relative paths that stay inside their directories. Anything else was
        not written by an init for this volume, and root must not read or rename there."""
        saved_in = os.path.join(plan.record_dir, LEGACY_DIR)
        target_ok = self.target in (plan.target, plan.volume) or (
            os.path.dirname(self.target) == saved_in and os.path.basename(self.target) not in ("", ".", "..")
        )
        aside = self.aside.removeprefix(self.source + ASIDE_MARK)
        return (
            self.source in plan.sources
            and target_ok
            and aside != self.aside
            and "/" not in aside
            and all(_ITEM.fullmatch(staged) and _inside(rel) for staged, rel in self.moves)
        )


def _inside(rel: str) -> bool:
    parts = rel.split("/")
    return all(part not in ("", ".", "..") for part in parts)


@dataclass
class Record:
    """A finished migration: a later boot reads it, migrates nothing and reports it."""

    source: str | None
    strategy: str | None  # as written, so that the report shows what the migrating boot did
    entries: int
    size: int
    time: str | None = None
    result: str = "migrated"
    source_after: str | None = None  # what became of the source: renamed aside, left, moved
    kept_existing: int | None = None
    saved: str | None = None  # result "conflict": where the legacy tree was copied
    conflicts: int | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "source": self.source,
            "strategy": self.strategy,
            "entries": self.entries,
            "bytes": self.size,
            "time": self.time,
            "result": self.result,
            "source_after": self.source_after,
        }
        for key in ("kept_existing", "saved", "conflicts"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(
            source=data.get("source"),
            strategy=data.get("strategy"),
            entries=data.get("entries", 0),
            size=data.get("bytes", 0),
            time=data.get("time"),
            result=data.get("result", "migrated"),
            source_after=data.get("source_after"),
            kept_existing=data.get("kept_existing"),
            saved=data.get("saved"),
            conflicts=data.get("conflicts"),
        )


def read_journal(staging_fd: int) -> Journal | None:
    data = _read(staging_fd, JOURNAL_FILE)
    return None if data is None else Journal.from_json(data)


def write_journal(staging_fd: int, journal: Journal) -> None:
    """Before each step that matters: a kill after this returns finds the journal of that step."""
    rundir.replace_file(JOURNAL_FILE, rundir.json_bytes(journal.to_json()), dir_fd=staging_fd, mode=_MODE)


def find_record(record_fd: int) -> Record | None:
    data = _read(record_fd, RECORD_FILE)
    return None if data is None else Record.from_json(data)


def write_record(record_fd: int, record: Record, prepare: Callable[[int], None]) -> None:
    """`prepare` gives the file to the target user before it takes the record's name."""
    rundir.replace_file(
        RECORD_FILE, rundir.json_bytes(record.to_json()), dir_fd=record_fd, mode=_MODE, prepare=prepare
    )


def read_named_at_root(record_fd: int) -> set[str]:
    """The entries at the volume's root a warning has named already."""
    data = _read(record_fd, NAMED_AT_ROOT_FILE) or {}
    names = data.get("names")
    return {str(name) for name in names} if isinstance(names, list) else set()


def write_named_at_root(record_fd: int, names: list[str], prepare: Callable[[int], None]) -> None:
    data = rundir.json_bytes({"version": FORMAT_VERSION, "names": names})
    rundir.replace_file(NAMED_AT_ROOT_FILE, data, dir_fd=record_fd, mode=_MODE, prepare=prepare)


def _read(dir_fd: int, name: str) -> dict[str, Any] | None:
    """The file's object when it is of this format; None when absent, unparsable or of another version."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    with open(fd, encoding="utf-8") as handle:
        try:
            data = json.load(handle)
        except ValueError:
            return None
    return data if isinstance(data, dict) and data.get("version") == FORMAT_VERSION else None
