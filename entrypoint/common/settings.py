"""Settings: read once from the environment, validated whole, then frozen.

Who uses it: every program of the binary reads its settings here first (`wiring`), as whatever
user it was started as. Every invalid value raises `ConfigError(setting, value, accepted)`; the
caller turns it into exit 78 (`exits.Exit.CONFIG`) and one JSON line. Setting names are
`<prefix><NAME>` (`Name`, the one place each is spelled), the prefix coming from the application
profile; PUID/PGID/UMASK keep the unprefixed names users know from linuxserver images.

Secrets may come from files, as the official images' `file_env` has it: `NAME_FILE=PATH` gives the
program `NAME` with the file's content. `load` only checks them (names and paths: the settings hold
no secret); `secretfiles` reads them.
"""

from __future__ import annotations

import enum
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from . import environment, users
from .log import LOG_FORMATS, LOG_LEVELS
from .plans import CrashLoopAction, MigrationMode, OwnershipMode, RestartPolicy, TargetUser
from .reading import ConfigError, Reader, absolute


class Name(enum.StrEnum):
    """Each setting's name, without the application's prefix (`Settings.variable` adds it)."""

    USER = "USER"
    STATE_DIR = "STATE_DIR"
    WORKSPACE_DIR = "WORKSPACE_DIR"
    RUN_DIR = "RUN_DIR"
    LOG_FORMAT = "LOG_FORMAT"
    LOG_LEVEL = "LOG_LEVEL"
    GATEWAY_COMMAND = "GATEWAY_COMMAND"
    GATEWAY_PORT = "GATEWAY_PORT"
    GATEWAY_CLI = "GATEWAY_CLI"
    HANDOFF_TIMEOUT = "HANDOFF_TIMEOUT"
    FIX_OWNERSHIP = "FIX_OWNERSHIP"
    CHOWN_PATHS = "CHOWN_PATHS"
    MIGRATE = "MIGRATE"
    LEGACY_DIRS = "LEGACY_DIRS"
    BACKOFF_INITIAL = "BACKOFF_INITIAL"
    BACKOFF_MAX = "BACKOFF_MAX"
    BACKOFF_RESET = "BACKOFF_RESET"
    CRASHLOOP_BURST = "CRASHLOOP_BURST"
    CRASHLOOP_WINDOW = "CRASHLOOP_WINDOW"
    CRASHLOOP_ACTION = "CRASHLOOP_ACTION"
    STOP_TIMEOUT = "STOP_TIMEOUT"
    HOLD_RETRY = "HOLD_RETRY"
    AFTER_REPAIR = "AFTER_REPAIR"
    UPGRADE_CHECKPOINT = "UPGRADE_CHECKPOINT"
    UPGRADE_PREFLIGHT = "UPGRADE_PREFLIGHT"
    CHECKPOINT_KEEP = "CHECKPOINT_KEEP"
    CHECKPOINT_WORKSPACE_MAX_MB = "CHECKPOINT_WORKSPACE_MAX_MB"
    ALLOW_DOWNGRADE = "ALLOW_DOWNGRADE"
    CONFIG_SEED = "CONFIG_SEED"
    METRICS_ADDRESS = "METRICS_ADDRESS"


# linuxserver's names, unprefixed.
PUID = "PUID"
PGID = "PGID"
UMASK = "UMASK"

# `NAME_FILE=PATH`: NAME's value is in the file at PATH (read by `secretfiles`).
FILE_SUFFIX = "_FILE"

# Trees that no volume repair may ever start from: re-owning them breaks the image (or the host,
# when they are bind mounts). Whole subtrees of these are refused ...
_FORBIDDEN_TREES = ("/etc", "/usr", "/bin", "/sbin", "/proc", "/sys", "/dev", "/boot")
# ... while these are refused only themselves: /run/<app> and /var/lib/<app> are the usual volumes.
_FORBIDDEN_EXACT = ("/", "/run", "/var")


@dataclass(frozen=True)
class Defaults:
    """What an application profile supplies: the env prefix and its default paths and command."""

    env_prefix: str
    user: str
    state_dir: str
    workspace_dir: str
    run_dir: str
    legacy_dirs: tuple[str, ...]
    program_port: int
    program_cli: tuple[str, ...] = ()  # the application's CLI; empty: it has none
    # Variables that end in FILE_SUFFIX but name a file the program opens itself (a CA bundle, a web
    # identity token it re-reads when it rotates): passed on as they are, never read as secrets.
    path_variables: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SecretFile:
    """`NAME_FILE=path`: the program gets `name` with the file's content. A name and a path only."""

    name: str
    path: str

    @property
    def variable(self) -> str:
        return self.name + FILE_SUFFIX


@dataclass(frozen=True)
class Settings:
    env_prefix: str
    user: TargetUser
    started_as_root: bool
    state_dir: str
    workspace_dir: str
    run_dir: str
    log_format: str
    log_level: str
    program_command: tuple[str, ...]  # empty: the profile's own command
    program_port: int
    program_cli: tuple[str, ...]  # the program's own CLI (restart handoffs, `<app> ARGS`)
    # Each call of the program's CLI by the crash guard: long enough for its cold start.
    handoff_timeout_s: float
    ownership_mode: OwnershipMode
    chown_paths: tuple[str, ...]
    migration_mode: MigrationMode
    legacy_dirs: tuple[str, ...]
    restart: RestartPolicy
    upgrade: UpgradeSettings
    # What to do once the root steps have left nothing that needs root (a deployment that runs as
    # root only to repair, says what comes next); empty: the boot does not judge it.
    after_repair: str
    # The program's first config, copied into its state dir when it has none; empty: none.
    config_seed: str
    # Where supervisord's process serves the metrics over HTTP, (host, port); None: it does not.
    metrics_address: tuple[str, int] | None
    # The file mode creation mask of the init and all it starts; None: the one it was started with.
    umask: int | None
    # The variables whose values are read from files (by `secretfiles.read`).
    secret_files: tuple[SecretFile, ...]
    # Every variable the init reads as a setting: the program never sees them (a gateway that reads
    # another generation's prefix warns about each one, and they are the init's, not its).
    variables: frozenset[str]

    def variable(self, name: Name) -> str:
        """The full name of a setting's variable, as users set it and as messages quote it."""
        return self.env_prefix + name

    @property
    def ownership_roots(self) -> tuple[str, ...]:
        roots = (self.state_dir, self.workspace_dir, self.run_dir, *self.chown_paths)
        return tuple(dict.fromkeys(roots))  # de-duplicated, order kept


@dataclass(frozen=True)
class UpgradeSettings:
    """What an upgrade of the application (another release booting on the state) may do."""

    checkpoint: bool  # take one before the new release touches the state
    preflight_warns: bool  # start anyway when the new release's preflight refuses the state
    keep: int  # checkpoints kept
    workspace_max_bytes: int  # a larger workspace is left out of a checkpoint (named in it)
    allow_downgrade: bool  # start an older release on a state a newer one ran on


def forbidden_root(path: str) -> bool:
    """True for system trees (checked on the path as given and on where its links resolve)."""
    for candidate in {os.path.normpath(path), os.path.realpath(path)}:
        top = "/" + candidate.lstrip("/").split("/", 1)[0]
        if candidate in _FORBIDDEN_EXACT or top in _FORBIDDEN_TREES or top.startswith("/lib"):
            return True
    return False


def _optional_id(reader: Reader, name: str) -> int | None:
    key, value = reader.raw(name, "", prefixed=False)
    if value == "":
        return None
    parsed = users.parse_id(value)
    if parsed is None:
        raise ConfigError(key, value, f"a numeric id from 0 to {users.MAX_ID}")
    return parsed


def _target_user(reader: Reader, default_spec: str, as_root: bool) -> TargetUser:
    key, spec = reader.raw(Name.USER, default_spec)
    uid_override = _optional_id(reader, PUID)
    gid_override = _optional_id(reader, PGID)
    if not as_root:
        # Started as non-root (docker run --user, runAsNonRoot, OpenShift): there is nothing to
        # drop; an explicit spec is still checked so that a typo is not silently ignored.
        if key in reader.environ:
            _resolve(key, spec, None, None)
        return users.current()
    return _resolve(key, spec, uid_override, gid_override)


def _resolve(key: str, spec: str, uid: int | None, gid: int | None) -> TargetUser:
    try:
        return users.resolve(spec, uid_override=uid, gid_override=gid)
    except users.UserSpecError as error:
        raise ConfigError(
            key, spec, f"name, uid, name:group or uid:gid of an existing user/group ({error})"
        ) from None


def _command(reader: Reader, name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A command line setting; an empty value is the default."""
    key, value = reader.raw(name, "")
    if value == "":
        return default
    try:
        argv = tuple(shlex.split(value))
    except ValueError:
        argv = ()
    if not argv:
        raise ConfigError(key, value, "a command line, split like a POSIX shell would (no shell is run)")
    return argv


def _umask(reader: Reader) -> int | None:
    key, value = reader.raw(UMASK, "", prefixed=False)
    if value == "":
        return None
    if not 0 < len(value) <= 4 or value.strip("01234567") or int(value, 8) > 0o777:
        raise ConfigError(key, value, "an octal mask from 000 to 777, as `umask` takes it (022, 0027)")
    return int(value, 8)


def _secret_files(reader: Reader, kept: frozenset[str]) -> tuple[SecretFile, ...]:
    """Every `NAME_FILE` the program would get but those in `kept` (not the frozen loader's own
    `_PYI_ARCHIVE_FILE`), checked, not read. Runs after every other setting was read: a setting of
    the init's own is never read from a file."""
    settings_read = frozenset(reader.keys)
    found: list[SecretFile] = []
    for variable, path in sorted(reader.environ.items()):
        name = variable.removesuffix(FILE_SUFFIX)
        if name in ("", variable) or variable in kept or not environment.reaches_program(variable):
            continue
        reader.keys.add(variable)  # the program gets NAME, never NAME_FILE
        if path == "":
            continue  # unset, as an empty NAME is
        if name in settings_read:
            raise ConfigError(
                variable, path, f"no such variable: {name} is a setting of the init, set as it is"
            )
        if reader.environ.get(name):
            raise ConfigError(variable, path, f"either {name} or {variable}, not both")
        found.append(SecretFile(name, absolute(variable, path, path)))
    return tuple(found)


def load(environ: Mapping[str, str], defaults: Defaults, *, as_root: bool | None = None) -> Settings:
    as_root = os.geteuid() == 0 if as_root is None else as_root
    read = Reader(environ, defaults.env_prefix)
    settings = Settings(
        env_prefix=defaults.env_prefix,
        log_format=read.word(Name.LOG_FORMAT, LOG_FORMATS, "json"),
        log_level=read.word(Name.LOG_LEVEL, LOG_LEVELS, "info"),
        user=_target_user(read, defaults.user, as_root),
        started_as_root=as_root,
        state_dir=read.path(Name.STATE_DIR, defaults.state_dir),
        workspace_dir=read.path(Name.WORKSPACE_DIR, defaults.workspace_dir),
        run_dir=read.path(Name.RUN_DIR, defaults.run_dir),
        program_command=_command(read, Name.GATEWAY_COMMAND),
        program_port=read.number(
            Name.GATEWAY_PORT,
            defaults.program_port,
            int,
            "a TCP port from 1 to 65535",
            lambda v: 0 < v < 65536,
        ),
        program_cli=_command(read, Name.GATEWAY_CLI, defaults.program_cli),
        # The gateway's CLI starts cold in 6-13 s on a busy 2-core machine; a restart handoff expires
        # 60 s after it was written, a few seconds before the exit: both calls must fit in it.
        handoff_timeout_s=read.seconds(Name.HANDOFF_TIMEOUT, 45.0),
        ownership_mode=read.choice(Name.FIX_OWNERSHIP, OwnershipMode, OwnershipMode.AUTO),
        chown_paths=read.paths(Name.CHOWN_PATHS, ()),
        migration_mode=read.choice(Name.MIGRATE, MigrationMode, MigrationMode.AUTO),
        legacy_dirs=read.paths(Name.LEGACY_DIRS, defaults.legacy_dirs),
        restart=RestartPolicy(
            backoff_initial_s=read.seconds(Name.BACKOFF_INITIAL, 1.0),
            backoff_max_s=read.seconds(Name.BACKOFF_MAX, 60.0),
            backoff_reset_s=read.seconds(Name.BACKOFF_RESET, 600.0),
            crashloop_burst=read.count(Name.CRASHLOOP_BURST, 5),
            crashloop_window_s=read.seconds(Name.CRASHLOOP_WINDOW, 300.0),
            crashloop_action=read.choice(Name.CRASHLOOP_ACTION, CrashLoopAction, CrashLoopAction.HOLD),
            # The gateway's own stop policy in a container: it drains active replies for up to
            # 315 s and exits by 325 s; an idle one stops at once whatever this is.
            stop_timeout_s=read.seconds(Name.STOP_TIMEOUT, 330.0),
            hold_retry_s=read.number(
                Name.HOLD_RETRY, 900.0, float, "a number of seconds, 0 to never retry", lambda v: 0 <= v < 1e9
            ),
        ),
        after_repair=read.raw(Name.AFTER_REPAIR, "")[1].strip(),
        upgrade=UpgradeSettings(
            checkpoint=read.word(Name.UPGRADE_CHECKPOINT, ("on", "off"), "on") == "on",
            preflight_warns=read.word(Name.UPGRADE_PREFLIGHT, ("on", "warn"), "on") == "warn",
            keep=read.count(Name.CHECKPOINT_KEEP, 2),
            workspace_max_bytes=read.number(
                Name.CHECKPOINT_WORKSPACE_MAX_MB,
                1024,
                int,
                "a whole number of MiB, 0 or more",
                lambda v: v >= 0,
            )
            << 20,
            allow_downgrade=read.flag(Name.ALLOW_DOWNGRADE),
        ),
        config_seed=read.optional_path(Name.CONFIG_SEED),
        metrics_address=read.listen_address(Name.METRICS_ADDRESS),
        umask=_umask(read),
        secret_files=_secret_files(read, defaults.path_variables),  # after every setting of the init's
        variables=frozenset(read.keys),  # last: every setting above has been read
    )
    _refuse_system_roots(settings)
    return settings


def _refuse_system_roots(settings: Settings) -> None:
    named = {
        settings.state_dir: Name.STATE_DIR,
        settings.workspace_dir: Name.WORKSPACE_DIR,
        settings.run_dir: Name.RUN_DIR,
        **{path: Name.CHOWN_PATHS for path in settings.chown_paths},
    }
    for path, name in named.items():
        if forbidden_root(path):
            raise ConfigError(
                settings.variable(name),
                path,
                "a data directory; system trees (/, /etc, /usr, /bin, /sbin, /lib*, /proc, /sys, /dev, "
                "/boot, /run, /var) are never re-owned",
            )
