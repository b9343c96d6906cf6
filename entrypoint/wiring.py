"""Wiring: the only module that reads the application profile (`moltbot/profile.py`). It turns the
settings and the profile into the plans the rest of the binary runs: the settings' defaults, the
installed gateway's generation, its environment and command, the boot's plan and the crash
guard's orders.

Who runs it: every program of the binary, right after `__main__` picked it (the container's start
in `start`, the named tools in `commands`), as whatever user runs that program. It decides
nothing at run time and holds no process logic: plain functions from settings to plans.
"""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from moltbot import profile

from . import binary
from .common import environment, log, secretfiles, settings
from .common.exits import Exit
from .common.plans import (
    BackupPlan,
    BootPlan,
    MigrationPlan,
    OwnershipPlan,
    PreflightPlan,
    PreparePlan,
    Program,
    SecretPlan,
    SeedPlan,
    UpgradePlan,
)
from .common.releases import Release, version_key

if TYPE_CHECKING:
    from .common.guardplan import GuardPlan

INIT_NAME = f"{profile.APP_NAME}-init"
APP_NAME = profile.APP_NAME
PROGRAM_NAME = profile.PROGRAM_NAME
# The first word of every metric's name (`moltbot_gateway_up`).
METRICS_NAMESPACE = profile.APP_NAME
# What the init's help says of the profile, in one sentence.
ABOUT = (
    f"As root it creates and repairs the state, workspace and run directories, migrates legacy state\n"
    f"({', '.join(profile.LEGACY_DIRS)})\n"
    f"into {profile.STATE_DIR}, then drops to `{profile.USER}`.\n"
    f"Settings are environment variables ({profile.ENV_PREFIX}*, PUID, PGID): see the README.\n"
    f"Installed as `supervisord`, `supervisorctl` or `{profile.APP_NAME}`, it acts as that tool.\n"
)
_LOG = log.get("main")


def load_settings(*, drops_privileges: bool = True) -> settings.Settings:
    """Settings or, for any invalid value, one JSON line and exit 78.

    Operator tools that never change user (health, status, supervisorctl) do not need the target
    user to exist where they run; they only check an explicitly set one. The programs that drop to
    it (the boot, the gateway's CLI) start the gateway: they also take its secret files now, while
    they may still be root, and the umask, before they start anything."""
    log.configure()
    defaults = settings.Defaults(
        env_prefix=profile.ENV_PREFIX,
        user=profile.USER,
        state_dir=profile.STATE_DIR,
        workspace_dir=profile.WORKSPACE_DIR,
        run_dir=profile.RUN_DIR,
        legacy_dirs=profile.LEGACY_DIRS,
        program_port=profile.GATEWAY_PORT,
        program_cli=profile.CLI,
        path_variables=profile.PATH_VARIABLES,
    )
    try:
        loaded = settings.load(os.environ, defaults, as_root=os.geteuid() == 0 and drops_privileges)
        if drops_privileges:
            _take_secret_files(loaded)
    except settings.ConfigError as error:
        log.event(
            _LOG,
            "error",
            "invalid_setting",
            str(error),
            setting=error.setting,
            value=error.value,
            accepted=error.accepted,
        )
        raise SystemExit(Exit.CONFIG) from None
    log.configure(loaded.log_format, loaded.log_level)
    if drops_privileges and loaded.umask is not None:
        os.umask(loaded.umask)  # before supervisord's process is forked: the gateway inherits it
    return loaded


def _take_secret_files(loaded: settings.Settings) -> None:
    """Each `NAME_FILE` becomes `NAME` in our environment, from which the gateway's is made (and the
    token is taken), as the official images' entrypoints export it; all files read, or none."""
    values = secretfiles.read(loaded.secret_files)
    for secret in loaded.secret_files:
        del os.environ[secret.variable]
    os.environ.update(values)


# -- the state volume's layout ---------------------------------------------------------------------


def record_dir(loaded: settings.Settings) -> str:
    """The init's records in the state volume (history, checkpoints, ledger, token)."""
    return os.path.join(loaded.state_dir, profile.INIT_DIR_NAME)


def _gateway_dir(loaded: settings.Settings) -> str:
    return os.path.join(loaded.state_dir, profile.GATEWAY_DIR_NAME)


def _home_dir(loaded: settings.Settings) -> str:
    return os.path.join(loaded.state_dir, profile.HOME_DIR_NAME)


# -- the installed gateway -------------------------------------------------------------------------


def _manifests() -> Iterator[dict[str, Any]]:
    """What the image records about its gateway, in the profile's order (unreadable ones skipped)."""
    for manifest in profile.MANIFESTS:
        try:
            with open(manifest, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            yield data


def installed_release() -> Release | None:
    """The gateway release the image carries, as its manifest records it (with its build's commit
    where the image recorded one); None when the image says nothing."""
    data = next(_manifests(), None)
    if data is None or not isinstance(data.get("name"), str) or not isinstance(data.get("version"), str):
        return None
    commit = data.get("commit")
    return Release(data["name"], data["version"], commit if isinstance(commit, str) else None)


def _year_month(version: str) -> tuple[int, ...]:
    """`2026.9.6` -> (2026, 9), `2026.1.24-3` -> (2026, 1): what the profile dates releases by."""
    return version_key(version)[:2]


def _offers(since: tuple[str, tuple[int, int]]) -> bool:
    """Whether the installed release has what its package added in `since` (year, month)."""
    release = installed_release()
    return release is not None and release.package == since[0] and _year_month(release.version) >= since[1]


def installed_generation() -> profile.Generation:
    """The gateway the image carries, from its manifest: the newest record of that package that
    begins no later than the installed version."""
    for data in _manifests():
        release = _year_month(str(data.get("version", "")))
        known = [g for g in profile.GENERATIONS if g.package == data.get("name") and g.since <= release]
        if known:
            return max(known, key=lambda generation: generation.since)
    return profile.DEFAULT_GENERATION


def _gateway_environment(generation: profile.Generation, loaded: settings.Settings) -> dict[str, str]:
    """The container's environment as the installed generation should see it: without the init's
    own settings, without a token under any name (the credentials phase gives it under the
    generation's), without the prefixes it ignores; with its state dir, workspace and defaults."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in loaded.variables
        and key not in profile.TOKEN_ENV_NAMES
        and not key.startswith(generation.ignored_prefixes)
    }
    env.update({name: _gateway_dir(loaded) for name in generation.state_dir_env})
    env.update({name: loaded.workspace_dir for name in generation.workspace_env})
    env.update(generation.fixed_env)
    return environment.for_program(env)


def secret_plan(generation: profile.Generation, loaded: settings.Settings) -> SecretPlan:
    token_path = os.path.join(record_dir(loaded), profile.TOKEN_FILE_NAME)
    return SecretPlan(token_path, profile.TOKEN_ENV_NAMES, generation.token_env)


def cli(generation: profile.Generation, loaded: settings.Settings, args: list[str]) -> Program:
    """The gateway's CLI (`moltbot ARGS`) with the gateway's environment and HOME, where its CLI
    finds what the gateway wrote; the token is the caller's to add."""
    env = {**_gateway_environment(generation, loaded), "HOME": _home_dir(loaded)}
    return Program(APP_NAME, (*loaded.program_cli, *args), env, os.getcwd())


def guard_plan(loaded: settings.Settings) -> GuardPlan:
    """The crash guard's orders: the restart policy, the gateway's contract with a supervisor
    (its restart handoffs, asked through its CLI; the refusal to start it waits out), and the
    metrics supervisord's process publishes."""
    from .common import cgroup
    from .common.guardplan import GuardPlan, HandoffPlan, LeaseRule, MetricsPlan

    cli_argv, memory = loaded.program_cli, cgroup.find()
    manifest = next(_manifests(), {})
    installed = f"{manifest.get('name', 'unknown')}@{manifest.get('version', 'unknown')}"
    handoff = HandoffPlan(
        capabilities=(*cli_argv, *profile.RESTART_HANDOFF_CAPABILITIES),
        consume=(*cli_argv, *profile.RESTART_HANDOFF_CONSUME),
        timeout_s=loaded.handoff_timeout_s,
        cache_path=os.path.join(record_dir(loaded), profile.HANDOFF_CACHE_FILE_NAME),
        # The capabilities answer holds for this gateway asked through this CLI, and no other.
        identity=f"{installed} {shlex.join(cli_argv)}",
    )
    return GuardPlan(
        program=profile.PROGRAM_NAME,
        policy=loaded.restart,
        ledger_path=os.path.join(record_dir(loaded), profile.LEDGER_FILE_NAME),
        log_format=loaded.log_format,
        log_level=loaded.log_level,
        handoff=handoff if cli_argv else None,
        lease=LeaseRule(
            profile.OWNER_LEASE_REFUSALS, profile.OWNER_LEASE_RETRY_S, profile.OWNER_LEASE_WAIT_S
        ),
        oom_kills_at_boot=memory.oom_kills() if memory else None,
        metrics=MetricsPlan(
            METRICS_NAMESPACE, loaded.variable(settings.Name.METRICS_ADDRESS), loaded.metrics_address
        ),
    )


# -- the container's start -------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """What the container's start runs: the boot's plan (with the program, ready but for the
    boot's credentials and user) and what the startup report's `config` phase says of the gateway."""

    boot: BootPlan
    facts: dict[str, Any]


def _with_sized_heap(program: Program) -> tuple[Program, dict[str, Any]]:
    """Give Node's old space a share of the container's memory limit, unless NODE_OPTIONS already
    sizes it; the program, and what was decided for the startup report."""
    from .common import cgroup

    options = program.env.get("NODE_OPTIONS", "")
    if profile.HEAP_OPTION in options:
        return program, {"heap": "set by NODE_OPTIONS"}
    memory = cgroup.find()
    limit = memory.limit() if memory is not None else None
    if limit is None:
        return program, {"heap": "Node's default (no memory limit)"}
    mib = max(64, int(limit * profile.HEAP_SHARE) >> 20)
    env = {**program.env, "NODE_OPTIONS": f"{options} {profile.HEAP_OPTION}={mib}".strip()}
    return replace(program, env=env), {"heap": f"{profile.HEAP_OPTION}={mib}", "memory_limit_bytes": limit}


def _program(
    generation: profile.Generation, loaded: settings.Settings, args: tuple[str, ...], supervise: bool
) -> Program:
    env = _gateway_environment(generation, loaded)
    workdir = os.getcwd()
    if supervise:
        extra = args[1:] if args[:1] == ("gateway",) else args
        command = loaded.program_command or (
            *loaded.program_cli,
            *profile.GATEWAY_ARGS,
            str(loaded.program_port),
        )
        return Program(profile.PROGRAM_NAME, (*command, *extra), env, workdir)
    argv = (*loaded.program_cli, *args[1:]) if args[0] == profile.APP_NAME else args
    return Program(args[0], argv, env, workdir)


def _config_names(generation: profile.Generation) -> tuple[str, ...]:
    """Every generation's config name, the installed one's first: an older one is renamed to it."""
    others = (g.config_name for g in profile.GENERATIONS if g.config_name != generation.config_name)
    return (generation.config_name, *dict.fromkeys(others))


def _home_links(
    generation: profile.Generation, loaded: settings.Settings
) -> tuple[tuple[str, str | None], ...]:
    """The installed generation's links in its home; every legacy state dir's name must not exist
    there otherwise (a generation that does not hard-code it scans it as legacy state)."""
    targets = {"gateway": _gateway_dir(loaded), "workspace": loaded.workspace_dir}
    wanted = {name: targets[kind] for name, kind in generation.home_links.items()}
    unwanted = dict.fromkeys(os.path.basename(path) for path in loaded.legacy_dirs)
    home = _home_dir(loaded)
    return tuple((os.path.join(home, name), target) for name, target in {**unwanted, **wanted}.items())


def upgrade_plan(loaded: settings.Settings) -> UpgradePlan:
    """The gate before another release first touches the state: what a checkpoint holds, how the
    release dates a state, and its preflight where it has one (the boot's, and the operator's
    `checkpoint` and `rollback`)."""
    generation, release = installed_generation(), installed_release()
    preflight = None
    if _offers(profile.PREFLIGHT_SINCE):
        preflight = PreflightPlan(
            state_argv=(*loaded.program_cli, *profile.PREFLIGHT),
            agent_argv=(*loaded.program_cli, *profile.PREFLIGHT_AGENT),
            state_db=profile.STATE_DB,
            agent_dbs=profile.AGENT_DBS,
            env=_gateway_environment(generation, loaded),
            state_dir_env=generation.state_dir_env,
            timeout_s=profile.PREFLIGHT_TIMEOUT_S,
        )
    names = (settings.Name.UPGRADE_CHECKPOINT, settings.Name.UPGRADE_PREFLIGHT, settings.Name.ALLOW_DOWNGRADE)
    return UpgradePlan(
        release=release,
        record_dir=record_dir(loaded),
        trees=(("gateway", _gateway_dir(loaded)), ("home", _home_dir(loaded))),
        workspace=loaded.workspace_dir,
        config_names=_config_names(generation),
        stamp=profile.CONFIG_STAMP,
        settings=loaded.upgrade,
        preflight=preflight,
        variables={name: loaded.variable(name) for name in names},
        rollback=profile.ROLLBACK_COMMAND,
        program=profile.PROGRAM_NAME,
    )


def backup_plan(loaded: settings.Settings) -> BackupPlan:
    """The application's own archives, for the operator's `backup` and `restore` (with `upgrade_plan`)."""
    generation, (package, since) = installed_generation(), profile.BACKUP_SINCE
    return BackupPlan(
        supported=_offers(profile.BACKUP_SINCE),
        since=f"{package} {since[0]}.{since[1]}",
        secret_path=secret_plan(generation, loaded).path,
        directory=profile.BACKUP_DIR,
        keep=profile.BACKUP_KEEP,
        argv={name: (*loaded.program_cli, *args) for name, args in profile.BACKUP_COMMANDS.items()},
        env=cli(generation, loaded, []).env,
        state_dir_env=generation.state_dir_env,
        archive_suffix=profile.BACKUP_ARCHIVE_SUFFIX,
        state_asset=profile.BACKUP_STATE_ASSET,
        timeout_s=profile.BACKUP_TIMEOUT_S,
    )


def start(loaded: settings.Settings, args: tuple[str, ...], supervise: bool) -> Start:
    """The plans of the container's start: supervise the gateway, or run `args` once."""
    generation = installed_generation()
    program = _program(generation, loaded, args, supervise)
    heap: dict[str, Any] = {}
    if supervise:
        program, heap = _with_sized_heap(program)
    user = loaded.user
    owner = (user.uid, user.gid) if loaded.started_as_root else None
    directories = (
        (loaded.run_dir, 0o755),
        (loaded.state_dir, 0o755),
        # The gateway's own: its state holds its credentials; its home is as private as any home.
        (_gateway_dir(loaded), 0o700),
        (_home_dir(loaded), 0o700),
        (loaded.workspace_dir, 0o755),
    )
    plan = BootPlan(
        settings=loaded,
        prepare=PreparePlan(directories, owner, profile.COMPILE_CACHE_LINKS),
        ownership=OwnershipPlan(loaded.ownership_mode, loaded.ownership_roots, user.uid, user.gid),
        migration=MigrationPlan(
            loaded.migration_mode,
            loaded.legacy_dirs,
            target=_gateway_dir(loaded),
            volume=loaded.state_dir,
            record_dir=record_dir(loaded),
            kept_at_root=profile.VOLUME_ROOT_NAMES,
            state_entries=profile.STATE_ENTRIES,
            owner=owner,
            config_names=_config_names(generation),
            mode_setting=loaded.variable(settings.Name.MIGRATE),
            home_links=_home_links(generation, loaded),
        ),
        upgrade=upgrade_plan(loaded),
        credentials=secret_plan(generation, loaded),
        program=program,
        runtime_paths=binary.runtime_paths(),
        program_home=_home_dir(loaded) if program.name in (profile.PROGRAM_NAME, profile.APP_NAME) else None,
        seed=SeedPlan(loaded.config_seed, _gateway_dir(loaded), _config_names(generation)),
    )
    gateway = f"{generation.package} >= {generation.since[0]}.{generation.since[1]}"
    return Start(plan, {"gateway": gateway, **heap, **_environment_facts(loaded)})


def _environment_facts(loaded: settings.Settings) -> dict[str, Any]:
    """What the report says of the environment the settings changed: paths and a mask, no value."""
    facts: dict[str, Any] = {}
    if loaded.secret_files:
        facts["secret_files"] = {secret.name: secret.path for secret in loaded.secret_files}
    if loaded.umask is not None:
        facts["umask"] = f"{loaded.umask:04o}"
    return facts
