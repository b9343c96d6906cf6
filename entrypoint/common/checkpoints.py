"""Checkpoints of the state, as they lie in the record dir: their names, their manifest, and the
listing of the whole ones.

Who uses it: the boot's upgrade gate and the operator's `checkpoint`, `rollback` and `restore` (as
the target user) write them; `checkpoints` and `status` (operators, any user) read them. Layout:

    <record dir>/checkpoints/<id>/              a whole checkpoint: its trees, then its manifest
        manifest.json                           written last: without it, it is not a checkpoint
        <tree>/                                 each tree it holds (the state dir, the home, ...)
    <record dir>/checkpoints/.staging-<id>/     one being taken; removed by the next one taken
    <record dir>/rolled-back/<UTC time>/        the live trees a rollback set aside (never deleted)
    <record dir>/before-restore/<UTC time>/     the live trees a restore set aside (never deleted)
    <record dir>/restored/<UTC time>/           what else the restored archive held (its manifest,
                                                its workspace), for the operator to take from

A checkpoint becomes visible by one rename of its staging directory, once complete and on disk:
whatever kills its taker, there is a whole checkpoint or none.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from . import log, rundir
from .releases import Release

DIR = "checkpoints"
MANIFEST = "manifest.json"
STAGING_PREFIX = ".staging-"
FORMAT_VERSION = 1
# What a rollback and a restore replace goes aside here, never deleted by the init; a restore
# keeps what of its archive it did not put in place in RESTORED.
ROLLED_BACK = "rolled-back"
BEFORE_RESTORE = "before-restore"
RESTORED = "restored"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def stamp(now: float) -> str:
    """UTC time as a name: 20261206T190312Z."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))


def unused(name: str, taken: set[str]) -> str:
    """`name`, else `name-2`, `name-3`...: two made within one second (an operator's checkpoint,
    then a boot's; two restores) each keep their own."""
    candidate, number = name, 1
    while candidate in taken:
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def new_id(release: Release | None, now: float) -> str:
    """`<release>-<UTC time>`: what the checkpoint holds the state of, and when it was taken."""
    name = _UNSAFE.sub("_", release.label.replace("@", "-")) if release else "unknown-release"
    return f"{name}-{stamp(now)}"


@dataclass(frozen=True)
class Tree:
    name: str  # its directory in the checkpoint
    source: str  # the live path it was copied from (and a rollback puts back)
    included: bool = True
    reason: str | None = None  # left out: why (a workspace larger than the budget)
    bytes: int = 0


@dataclass(frozen=True)
class Database:
    path: str  # in the checkpoint, `<tree>/<path in it>`
    sha256: str
    user_version: int  # -1: SQLite could not read it (it was copied as it was, with its sidecars)
    bytes: int
    note: str | None = None  # why it could not be consolidated


@dataclass(frozen=True)
class Manifest:
    id: str
    release: Release | None  # the release the state belonged to
    taken: float
    why: str  # "before <package>@<version>", "taken by an operator"
    entries: int = 0
    bytes: int = 0
    reflinked: int = 0  # files whose copy shares the live file's blocks
    trees: tuple[Tree, ...] = field(default=())
    databases: tuple[Database, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["release"] = None if self.release is None else self.release.to_json()
        return {"version": FORMAT_VERSION, **data, "taken_at": log.rfc3339(self.taken)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest | None:
        try:
            return cls(
                id=str(data["id"]),
                release=Release.from_json(data.get("release")),
                taken=float(data["taken"]),
                why=str(data.get("why", "")),
                entries=int(data.get("entries", 0)),
                bytes=int(data.get("bytes", 0)),
                reflinked=int(data.get("reflinked", 0)),
                trees=tuple(Tree(**tree) for tree in data.get("trees", ())),
                databases=tuple(Database(**database) for database in data.get("databases", ())),
            )
        except (KeyError, TypeError, ValueError):
            return None


def root(record_dir: str) -> str:
    return os.path.join(record_dir, DIR)


def listing(record_dir: str) -> list[Manifest]:
    """The whole checkpoints, newest first (one without its manifest is not one)."""
    found = []
    try:
        names = os.listdir(root(record_dir))
    except OSError:
        return []
    for name in names:
        if name.startswith(STAGING_PREFIX):
            continue
        data = rundir.read_json(os.path.join(root(record_dir), name), MANIFEST)
        manifest = None if data is None else Manifest.from_json(data)
        if manifest is not None and manifest.id == name:
            found.append(manifest)
    return sorted(found, key=lambda manifest: manifest.taken, reverse=True)
