"""The typed plans that flow into the boot's phases and PID 1: plain, frozen data, no behaviour.

Who uses it: every process reads these types; only `wiring` builds them. `settings` reads the
environment into `Settings`; `wiring` turns them and the application profile into a `BootPlan`;
each phase receives only its own part of the plan (and a stop flag), never the profile.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .guardstate import HoldCause
from .releases import Release

if TYPE_CHECKING:  # settings.py and report.py import this module
    from .report import PhaseResult
    from .settings import Settings, UpgradeSettings


class OwnershipMode(enum.StrEnum):
    AUTO = "auto"  # re-own what is not the target user's
    OFF = "off"


class MigrationMode(enum.StrEnum):
    AUTO = "auto"  # migrate once: rename, copy, merge or save aside, whatever the target holds
    OFF = "off"  # only the volume's layout is kept
    MERGE_MISSING = "merge-missing"  # copy every path the target lacks, its own versions winning


class CrashLoopAction(enum.StrEnum):
    HOLD = "hold"  # keep the container up with the program stopped
    EXIT = "exit"  # end the init with the crash-loop exit code


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
    in it, on its filesystem. `kept_at_root` are the volume's own names; an entry at the root that
    matches one of `state_entries` (the application's own, as fnmatch patterns) is moved into
    `target` on every boot (an earlier layout kept the state at the root); anything else there is
    the user's, and stays.
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
    state_entries: tuple[str, ...]
    owner: tuple[int, int] | None
    config_names: tuple[str, ...]
    mode_setting: str
    home_links: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True)
class SecretPlan:
    """A secret the program needs: taken from the environment (the first of `accepted` set), else
    generated once into `path`; the program gets it under the names in `given_as`."""

    path: str
    accepted: tuple[str, ...]
    given_as: tuple[str, ...]


@dataclass(frozen=True)
class PreflightPlan:
    """The new release's own check of a state before it first runs on it, through its CLI: on a
    consolidated copy of its shared database (`state_db`, in the state dir), then of each agent's
    (`agent_dbs`, a glob whose one `*` is the agent's id). `PATH` in an argv is the copy's path,
    `AGENT` the agent's id. The CLI runs with `env` (its state dir and HOME are a scratch dir's,
    set per run) for at most `timeout_s` (its cold start takes seconds)."""

    state_argv: tuple[str, ...]
    agent_argv: tuple[str, ...]
    state_db: str
    agent_dbs: str
    env: Mapping[str, str]
    state_dir_env: tuple[str, ...]
    timeout_s: float


@dataclass(frozen=True)
class UpgradePlan:
    """The gate before a release other than the last one that ran on the state first touches it.

    `release` is the installed one (None: the image does not say, and nothing is gated). `trees`
    are what a checkpoint holds ((its name in the checkpoint, the live path): the state dir first,
    then the home), `workspace` the workspace, held unless larger than the settings' budget.
    `config_names` are where the application stamps the release that last wrote its config
    (`stamp`, a path of keys in its JSON), which dates a state that has no history yet. `variables`
    are the full names of the settings the messages quote (by `settings.Name`); `rollback` is the
    operator's command that rolls back, as the messages give it; `program` the program's name."""

    release: Release | None
    record_dir: str
    trees: tuple[tuple[str, str], ...]
    workspace: str | None
    config_names: tuple[str, ...]
    stamp: tuple[str, ...]
    settings: UpgradeSettings
    preflight: PreflightPlan | None
    variables: Mapping[str, str]
    rollback: str
    program: str


@dataclass(frozen=True)
class SeedPlan:
    """The program's first config: `source` copied to `target_dir`/`config_names[0]` when no file of
    `config_names` (every name the program's config ever had) is there; `source` empty: no seed."""

    source: str
    target_dir: str
    config_names: tuple[str, ...]


@dataclass(frozen=True)
class BackupPlan:
    """The application's own archives of its state, made and checked by its CLI (`argv`: `create`,
    `verify`, `restore`; `OUTPUT`, `ARCHIVE` and `TARGET` in them are replaced): made beside the
    running application into `directory`, the newest `keep` kept (the operator's options may say
    others), each with a copy of the generated secret (`secret_path`) beside it; checked and
    extracted by the installed release before a restore puts the archive's state dir in place.

    `supported` is False for a release without them (`since` says which have them). `env` is the
    application's, pointed at the live state; a call that only reads an archive points
    `state_dir_env` and HOME at a scratch directory. `archive_suffix` ends its archives' names;
    `state_asset` is the kind of the asset, in an archive's manifest, that is the state dir."""

    supported: bool
    since: str
    secret_path: str
    directory: str
    keep: int
    # The application's CLI, by what it does (`create`, `verify`, `restore`): its argv and environment.
    argv: Mapping[str, tuple[str, ...]]
    env: Mapping[str, str]
    timeout_s: float
    state_dir_env: tuple[str, ...]
    # What its archives are: how their names end, and which of their assets is the state dir.
    archive_suffix: str
    state_asset: str


@dataclass(frozen=True)
class Program:
    """A program to run: argv, its complete environment and its working directory."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: str


@dataclass(frozen=True)
class StopClocks:
    """The three clocks of a stop, all derived from the one stop timeout: supervisord kills the
    program `supervisord_s` after its SIGTERM; the crash guard says what the program was still doing
    just before (`guard_warns_s`); PID 1 kills supervisord itself only if it is still there
    `pid1_s` after the stop began (it had the program's whole timeout, and time to finish)."""

    stop_timeout_s: float
    # How long supervisord gets after the program's own stop timeout before PID 1 kills it.
    SUPERVISORD_GRACE_S = 3.0
    # The guard's line comes this long before supervisord's SIGKILL: once the program is gone,
    # supervisord's process (and the guard in it) ends soon after, with nothing left to say.
    GUARD_LEAD_S = 0.5

    @property
    def supervisord_s(self) -> int:
        """The timeout as supervisord takes it (`stopwaitsecs`: whole seconds, at least 1)."""
        return max(1, round(self.stop_timeout_s))

    @property
    def guard_warns_s(self) -> float:
        return max(0.0, self.supervisord_s - self.GUARD_LEAD_S)

    @property
    def pid1_s(self) -> float:
        return self.supervisord_s + self.SUPERVISORD_GRACE_S


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
    def stop_clocks(self) -> StopClocks:
        return StopClocks(self.stop_timeout_s)


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
class Hold:
    """A decision, before supervisord starts, that the program is not started: why (in words, and
    as one of a fixed set of causes), its own way out (None: the usual one, `supervisorctl start`),
    and whether the crash guard tries once more after its cool-down (a cause that may pass, as
    boots that keep failing; never a state that is not the user's)."""

    reason: str
    cause: HoldCause
    how_to_leave: str | None = None
    retry: bool = True


@dataclass
class Booted:
    """What the boot hands to PID 1: the report's phases and the program with its whole
    environment, or the exit code when the boot ends the container instead; `hold` when the
    program must not start on what the boot left (PID 1 keeps the container up, and says why)."""

    phases: list[PhaseResult]
    program: Program
    exit_code: int | None = None
    hold: Hold | None = None
    # What PID 1 does once the program says it has started (pruning old checkpoints): never before,
    # so that a release that fails to start keeps every way back.
    after_start: tuple[Callable[[], object], ...] = ()


@dataclass(frozen=True)
class BootPlan:
    """Everything the boot does, in the parts each phase takes."""

    settings: Settings
    prepare: PreparePlan
    ownership: OwnershipPlan
    migration: MigrationPlan
    upgrade: UpgradePlan
    credentials: SecretPlan
    program: Program
    # What the target user must be able to read to keep running this init after the drop.
    runtime_paths: tuple[str, ...]
    # The gateway's HOME, in the state volume (it writes there, and that must persist); None for
    # any other command, which gets the user's own.
    program_home: str | None
    seed: SeedPlan
