"""The rollback's journal (`<record dir>/rollback.json`): which checkpoint goes back, where the
live trees go, and whether the swap has begun. Written before anything moves, removed last.

Who uses it: the operator's `rollback` writes it (a one-off process, as the target user); the next
rollback or the boot's upgrade phase (PID 1, as the target user) finishes a rollback that left
one. Its own module, so that a boot with no journal imports nothing else of the rollback.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from ...common import rundir

FILE = "rollback.json"


def pending(record_dir: str) -> dict[str, Any] | None:
    """The journal of a rollback that has not finished, if any."""
    return rundir.read_json(record_dir, FILE)


def write(record_dir: str, checkpoint: str, aside: str, swapping: bool) -> None:
    data = {"checkpoint": checkpoint, "aside": aside, "swapping": swapping}
    rundir.replace_file(os.path.join(record_dir, FILE), rundir.json_bytes(data), mode=0o600)


def remove(record_dir: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(os.path.join(record_dir, FILE))
