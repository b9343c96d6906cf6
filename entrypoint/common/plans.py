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
    """Directories that must exist (created owned by `uid:gid`, mode 0755) before anything else."""

    directories: tuple[str, ...]
    uid: int
    gid: int


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

    `config_names` lists the application's config file names, preferred first: a target holding
    only a later name gets it renamed to the first. `record_dir_name` is the init's hidden
    directory inside `target` (migration record, staging, journal): never migrated, never counted
    as data. `mode_setting` is the full name of the variable that sets `mode`, quoted in the
    conflict warning so that it names the exact setting that resolves it.
    """

    mode: MigrationMode
    sources: tuple[str, ...]
    target: str
    uid: int
    gid: int
    config_names: tuple[str, ...]
    record_dir_name: str = ".init"
    mode_setting: str = "MIGRATE"


@dataclass(frozen=True)
class SecretPlan:
    """A secret the program needs: taken from the environment, else generated once into `path`."""

    path: str
    env_names: tuple[str, ...]
    uid: int
    gid: int


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
