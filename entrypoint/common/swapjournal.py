"""A swap's journal (`<record dir>/rollback.json`): which staged trees go in place of which live
ones (a rollback's checkpoint, a restore's archive), where the live ones go, and the release the
state belongs to once they are in. Written once the staging directory (`swap-staging/`) is whole
and on disk, before anything live moves; removed last.

Who uses it: the operator's `rollback` and `restore` write it (one-off processes, as the target
user); the next rollback or restore, or the boot's upgrade phase (PID 1, as the target user),
finishes a swap that left one; a `backup` (the target user, beside the running application) will
not archive a state while one is there. Apart from the swap itself (`boot/upgrade/swap.py`), so
that a boot with no journal imports nothing else of it. The file keeps the name it had when only a
rollback swapped.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any

from . import rundir
from .releases import Release

FILE = "rollback.json"
STAGING = "swap-staging"


class Unreadable(Exception):
    """A journal that says a swap began, but not what it was (another version's, a damaged one):
    nothing may start on a state that may be half swapped."""


@dataclass(frozen=True)
class Swap:
    kind: str  # what staged the trees: "rollback", "restore"
    source: str  # where they come from: a checkpoint's id, an archive's path
    release: Release | None  # the release the state belongs to once they are in place
    trees: tuple[tuple[str, str], ...]  # (its path in the staging dir, the live path it replaces)
    aside: str  # where the live ones go, never deleted
    keep: str | None = None  # where the rest of the staging dir goes; None: removed

    def to_json(self) -> dict[str, Any]:
        release = None if self.release is None else self.release.to_json()
        return {**vars(self), "release": release, "trees": [list(tree) for tree in self.trees]}


def staging(record_dir: str) -> str:
    return os.path.join(record_dir, STAGING)


def pending(record_dir: str) -> Swap | None:
    """The swap a kill interrupted, if any. Raises Unreadable for a journal it cannot read."""
    path = os.path.join(record_dir, FILE)
    if not os.path.lexists(path):
        return None
    data = rundir.read_json(record_dir, FILE) or {}
    try:
        trees = tuple((str(staged), str(live)) for staged, live in data["trees"])
        keep = data.get("keep")
        return Swap(
            str(data["kind"]),
            str(data["source"]),
            Release.from_json(data.get("release")),
            trees,
            str(data["aside"]),
            None if keep is None else str(keep),
        )
    except (KeyError, TypeError, ValueError):
        raise Unreadable(
            f"{path} says a rollback or a restore began, but not what it swaps (an earlier version of "
            "the init wrote it, or it is damaged): finish it with the image that began it"
        ) from None


def write(record_dir: str, swap: Swap) -> None:
    rundir.replace_file(os.path.join(record_dir, FILE), rundir.json_bytes(swap.to_json()), mode=0o600)


def remove(record_dir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(record_dir, FILE))
