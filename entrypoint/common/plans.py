"""The typed plans that flow into the boot's phases and PID 1: plain, frozen data, no behaviour.

Who uses it: every process reads these types; only `wiring` builds them. `settings` reads the
environment into `Settings`; `wiring` turns them and the application profile into a `BootPlan`;
each phase receives only its own part of the plan (and a stop flag), never the profile.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:  # settings.py imports this module for TargetUser and RestartPolicy
    from .settings import Settings

OwnershipMode = Literal["auto", "off"]
MigrationMode = Literal["auto", "off", "merge-missing"]
CrashLoopAction = Literal["hold", "exit"]
OWNERSHIP_MODES: tuple[OwnershipMode, ...] = ("auto", "off")
MIGRATION_MODES: tuple[MigrationMode, ...] = ("auto", "off", "merge-missing")
CRASHLOOP_ACTIONS: tuple[CrashLoopAction, ...] = ("hold", "exit")


@dataclass(frozen=True)
class TargetUser:
    """Who the program runs as after the drop. `groups` are the supplementary groups to set."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


@dataclass(frozen=True)
class PreparePlan:
    """Directories that must exist before anything else, each created with its mode and owned by
    `owner` (None: the init was started non-root and creates them as itself). `links` are (path,
    target) pairs: a link made when nothing is at the path and the target is a directory (what the
    image carries, reached from a fresh tmpfs)."""

    directories: tuple[tuple[str, int], ...]
    owner: tuple[int, int] | None
    links: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class OwnershipPlan:
    """Re-own every entry under each root that is not `uid:gid`, without following links."""

    mode: OwnershipMode
    roots: tuple[str, ...]
    uid: int
    gid: int
    progress_interval_s: float = 2.0


@dataclass(frozen=True)
class MigrationPlan:
    """Move legacy state from the first source holding data into `target`, never clobbering.

    `volume` is the state volume's root; `target` (the application's state dir) and `record_dir`
    (the init's records: migration record, staging, journal, saved legacy copies) are directories
    in it, on its filesystem. Every entry at the root whose name is not in `kept_at_root` is
    moved into `target` on every boot (an earlier layout kept the state at the root).
    `owner` (uid, gid) is given everything migrated; None when the init was started non-root: it
    then copies what it can read and never changes an owner. `config_names` lists the
    application's config file names, preferred first: a target holding only a later name gets it
    renamed to the first. `home_links` are (path, link target) pairs made true on every boot: a
    link to that target, or, with None, no link at that path. `mode_setting` is the full name of
    the variable that sets `mode`, quoted in warnings so that they name the exact setting.
    """

    mode: MigrationMode
    sources: tuple[str, ...]
    target: str
    volume: str
    record_dir: str
    kept_at_root: tuple[str, ...]
    owner: tuple[int, int] | None
    config_names: tuple[str, ...]
    home_links: tuple[tuple[str, str | None], ...] = ()
    mode_setting: str = "MIGRATE"


@dataclass(frozen=True)
class SecretPlan:
    """A secret the program needs: taken from the environment (the first of `accepted` set), else
    generated once into `path`; the program gets it under the names in `given_as`."""

    path: str
    accepted: tuple[str, ...]
    given_as: tuple[str, ...]


@dataclass(frozen=True)
class Program:
    """A program to run: argv, its complete environment and its working directory."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str


@dataclass(frozen=True)
class RestartPolicy:
    backoff_initial_s: float
    backoff_max_s: float
    backoff_reset_s: float
    crashloop_burst: int
    crashloop_window_s: float
    crashloop_action: CrashLoopAction
    stop_timeout_s: float
    # A hold for a cause that may pass (a crash loop) is tried once more after this; 0: never.
    hold_retry_s: float = 900.0

    @property
    def stop_wait_s(self) -> int:
        """The stop timeout as supervisord takes it (`stopwaitsecs`: whole seconds, at least 1)."""
        return max(1, round(self.stop_timeout_s))


@dataclass
class StopFlag:
    """Set by the signal handler when SIGTERM/SIGINT arrives during the boot; phases poll it."""

    event: threading.Event = field(default_factory=threading.Event)
    signal_number: int = 0

    def set(self, signal_number: int) -> None:
        self.signal_number = signal_number
        self.event.set()

    def is_set(self) -> bool:
        return self.event.is_set()


@dataclass(frozen=True)
class BootPlan:
    """Everything the boot does, in the parts each phase takes."""

    settings: Settings
    prepare: PreparePlan
    ownership: OwnershipPlan
    migration: MigrationPlan
    credentials: SecretPlan
    program: Program
    # What the target user must be able to read to keep running this init after the drop.
    runtime_paths: tuple[str, ...]
    # The gateway's HOME, in the state volume (it writes there, and that must persist); None for
    # any other command, which gets the user's own.
    program_home: str | None
