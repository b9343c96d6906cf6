"""The state's release history: which releases of the application ran on this state, in order,
since when, and which were rolled back (`<record dir>/releases.json`).

Who uses it: the boot's upgrade gate (PID 1, as the target user) reads it at every boot and writes
it when the release changes; a rollback (an operator's one-off, as the target user) rewrites it;
`status` and `checkpoints` read it. The JSON is a contract between versions of the init: fields are
only ever added.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from . import rundir

FILE = "releases.json"
FORMAT_VERSION = 1


def version_key(version: str) -> tuple[int, ...]:
    """`2026.9.6` -> (2026, 9, 6), `2026.1.24-3` -> (2026, 1, 24, 3): the application's releases
    are dated, so their numbers order them across its packages' renames."""
    return tuple(int(number) for number in re.findall(r"\d+", version))


@dataclass(frozen=True)
class Release:
    package: str
    version: str
    commit: str | None = None  # the build's commit, where the image records it

    @property
    def label(self) -> str:
        return f"{self.package}@{self.version}"

    def older_than(self, other: Release) -> bool:
        return version_key(self.version) < version_key(other.version)

    def same(self, other: Release) -> bool:
        """The same release: package and version (a rebuild of it with another commit is too)."""
        return (self.package, self.version) == (other.package, other.version)

    def to_json(self) -> dict[str, Any]:
        return {"package": self.package, "version": self.version, "commit": self.commit}

    @classmethod
    def from_json(cls, data: Any) -> Release | None:
        if not isinstance(data, dict):
            return None
        package, version, commit = data.get("package"), data.get("version"), data.get("commit")
        if not isinstance(package, str) or not isinstance(version, str):
            return None
        return cls(package, version, commit if isinstance(commit, str) else None)


@dataclass(frozen=True)
class Ran:
    """A release that ran on the state, since its first boot on it."""

    release: Release
    since: float
    how: str = "booted"  # booted, dated (from the application's own stamp), rolled back to

    def to_json(self) -> dict[str, Any]:
        return {**self.release.to_json(), "since": round(self.since, 3), "how": self.how}

    @classmethod
    def from_json(cls, data: Any) -> Ran | None:
        release = Release.from_json(data)
        since = data.get("since") if isinstance(data, dict) else None
        if release is None or not isinstance(since, int | float):
            return None
        how = data.get("how")
        return cls(release, float(since), how if isinstance(how, str) else "booted")


@dataclass
class History:
    ran: list[Ran] = field(default_factory=list)  # oldest first; the last one is the state's now
    rolled_back: list[Ran] = field(default_factory=list)  # releases whose state was set aside

    @property
    def current(self) -> Ran | None:
        return self.ran[-1] if self.ran else None

    @property
    def previous(self) -> Ran | None:
        return self.ran[-2] if len(self.ran) > 1 else None

    def newest(self) -> Ran | None:
        """The newest release that ran on this state (not one rolled back from)."""
        return max(self.ran, key=lambda ran: version_key(ran.release.version), default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "ran": [ran.to_json() for ran in self.ran],
            "rolled_back": [ran.to_json() for ran in self.rolled_back],
        }


def read(record_dir: str) -> History | None:
    """The history; None when the state has none yet (or it cannot be read: the gate then dates
    the state as if it had none, which can only cost a checkpoint)."""
    data = rundir.read_json(record_dir, FILE)
    if data is None or not isinstance(data.get("ran"), list):
        return None
    return History(
        [ran for item in data["ran"] if (ran := Ran.from_json(item))],
        [ran for item in data.get("rolled_back") or [] if (ran := Ran.from_json(item))],
    )


def write(record_dir: str, history: History) -> None:
    """Raises OSError."""
    rundir.replace_file(os.path.join(record_dir, FILE), rundir.json_bytes(history.to_json()), mode=0o600)
