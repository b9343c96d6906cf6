"""Wiring: the only module that reads the application profile (`moltbot/profile.py`). It turns the
settings and the profile into the plans the other modules run, and gives each of the programs
that share this binary its entry point.

Who runs it: every process of the binary, first thing after `__main__` picked the program by its
name: the boot (PID 1, as root), supervisord with its crash guard (forked by PID 1, or exec'd
where a fork is not safe: the target user), and the operator tools (`docker exec`, HEALTHCHECK:
any user). What only one program needs is imported where that program starts: an operator's
`health` pays for its own modules, not for the boot's.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Any

from moltbot import profile

from . import __version__
from .common import environment, log, rundir, settings
from .common.plans import BootPlan, MigrationPlan, OwnershipPlan, PreparePlan, Program, SecretPlan, StopFlag

if TYPE_CHECKING:
    from .common.guardplan import GuardPlan

INIT_NAME = f"{profile.APP_NAME}-init"
APP_NAME = profile.APP_NAME
_LOG = log.get("main")

HELP = f"""\
usage: {INIT_NAME} [gateway] [GATEWAY-ARGS...]    boot and supervise the gateway (the container's PID 1)
       {INIT_NAME} COMMAND [ARGS...]             boot, then run COMMAND once (as tini would)
       {INIT_NAME} {profile.APP_NAME} [ARGS...]  boot, then run the gateway's CLI once
       {INIT_NAME} status [--json]               what the boot did and how the gateway is
       {INIT_NAME} health [--startup | --ready] [--timeout S]
                                                  exit 0 when the gateway says it is live
                                                  (started, ready); 3 s at most by default
       {INIT_NAME} supervisorctl [ARGS...]       operate the gateway (start, stop, restart, status)
       {INIT_NAME} --version | --help

As root it creates and repairs the state, workspace and run directories, migrates legacy state
({", ".join(profile.LEGACY_DIRS)}) into {profile.STATE_DIR}, then drops to `{profile.USER}`.
Settings are environment variables ({profile.ENV_PREFIX}*, PUID, PGID): see the README.
Installed as `supervisord`, `supervisorctl` or `{profile.APP_NAME}`, it acts as that tool.
"""


def _defaults() -> settings.Defaults:
    return settings.Defaults(
        env_prefix=profile.ENV_PREFIX,
        user=profile.USER,
        state_dir=profile.STATE_DIR,
        workspace_dir=profile.WORKSPACE_DIR,
        run_dir=profile.RUN_DIR,
        legacy_dirs=profile.LEGACY_DIRS,
        program_port=profile.GATEWAY_PORT,
        program_cli=profile.CLI,
    )


def _self_command() -> tuple[str, ...]:
    """How to run this same program again (supervisord, where PID 1 cannot fork it)."""
    if getattr(sys, "frozen", False):
        return (sys.executable,)
    return (sys.executable, "-m", "entrypoint")


def _settings(*, drops_privileges: bool = True) -> settings.Settings:
    """Settings or, for any invalid value, one JSON line and exit 78.

    Operator tools that never change user (health, status, supervisorctl) do not need the target
    user to exist where they run; they only check an explicitly set one."""
    log.configure()
    as_root = os.geteuid() == 0 and drops_privileges
    try:
        loaded = settings.load(os.environ, _defaults(), as_root=as_root)
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
        raise SystemExit(settings.EX_CONFIG) from None
    log.configure(loaded.log_format, loaded.log_level)
    return loaded


def _init_dir(loaded: settings.Settings) -> str:
    return os.path.join(loaded.state_dir, profile.INIT_DIR_NAME)


def _ledger_path(loaded: settings.Settings) -> str:
    return os.path.join(_init_dir(loaded), profile.LEDGER_FILE_NAME)


def _gateway_dir(loaded: settings.Settings) -> str:
    return os.path.join(loaded.state_dir, profile.GATEWAY_DIR_NAME)


def _home_dir(loaded: settings.Settings) -> str:
    return os.path.join(loaded.state_dir, profile.HOME_DIR_NAME)


def _secret_plan(generation: profile.Generation, loaded: settings.Settings) -> SecretPlan:
    token_path = os.path.join(_init_dir(loaded), profile.TOKEN_FILE_NAME)
    return SecretPlan(token_path, profile.TOKEN_ENV_NAMES, generation.token_env)


def _guard_plan(loaded: settings.Settings) -> GuardPlan:
    """The crash guard's orders: the restart policy, and the gateway's contract with a supervisor
    (its restart handoffs, asked through its CLI; the refusal to start it waits out)."""
    from .common import cgroup
    from .common.guardplan import GuardPlan, HandoffPlan, LeaseRule

    cli, memory = loaded.program_cli, cgroup.find()
    manifest = next(_manifests(), {})
    installed = f"{manifest.get('name', 'unknown')}@{manifest.get('version', 'unknown')}"
    handoff = HandoffPlan(
        capabilities=(*cli, *profile.RESTART_HANDOFF_CAPABILITIES),
        consume=(*cli, *profile.RESTART_HANDOFF_CONSUME),
        timeout_s=loaded.handoff_timeout_s,
        cache_path=os.path.join(_init_dir(loaded), profile.HANDOFF_CACHE_FILE_NAME),
        # The capabilities answer holds for this gateway asked through this CLI, and no other.
        identity=f"{installed} {shlex.join(cli)}",
    )
    return GuardPlan(
        program=profile.PROGRAM_NAME,
        policy=loaded.restart,
        ledger_path=_ledger_path(loaded),
        log_format=loaded.log_format,
        log_level=loaded.log_level,
        handoff=handoff if cli else None,
        lease=LeaseRule(
            profile.OWNER_LEASE_REFUSALS, profile.OWNER_LEASE_RETRY_S, profile.OWNER_LEASE_WAIT_S
        ),
        oom_kills_at_boot=memory.oom_kills() if memory else None,
    )


def _release(version: str) -> tuple[int, int]:
    """`2026.9.6` or `2026.1.24-3` -> (2026, 9) / (2026, 1); (0, 0) when it is not such a version."""
    parts = version.split(".")
    try:
        return int(parts[0]), int(parts[1].split("-")[0])
    except (IndexError, ValueError):
        return 0, 0


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


def _installed_generation() -> profile.Generation:
    """The gateway the image carries, from its manifest: the newest record of that package that
    begins no later than the installed version."""
    for data in _manifests():
        release = _release(str(data.get("version", "")))
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


def _runtime_paths() -> tuple[str, ...]:
    """What this program runs from, for the user it drops to: frozen, the executable and its
    directory; otherwise the interpreter, the standard library, this package and supervisor."""
    frozen_dir = getattr(sys, "_MEIPASS", None) if getattr(sys, "frozen", False) else None
    if frozen_dir is not None:
        return (sys.executable, frozen_dir)
    supervisor = importlib.util.find_spec("supervisor")
    modules = (os.__file__, __file__, supervisor.origin if supervisor and supervisor.origin else "")
    return tuple(path for path in (sys.executable, os.path.realpath(sys.executable), *modules) if path)


def _config_names(generation: profile.Generation) -> tuple[str, ...]:
    """Every generation's config name, the installed one's first: an older one is renamed to it."""
    others = (g.config_name for g in profile.GENERATIONS if g.config_name != generation.config_name)
    return (generation.config_name, *dict.fromkeys(others))


def _link_target(kind: str, loaded: settings.Settings) -> str:
    return _gateway_dir(loaded) if kind == "gateway" else loaded.workspace_dir


def _home_links(
    generation: profile.Generation, loaded: settings.Settings
) -> tuple[tuple[str, str | None], ...]:
    """The installed generation's links in its home; every legacy state dir's name must not exist
    there otherwise (a generation that does not hard-code it scans it as legacy state)."""
    home = _home_dir(loaded)
    wanted = {name: _link_target(kind, loaded) for name, kind in generation.home_links.items()}
    unwanted = dict.fromkeys(os.path.basename(path) for path in loaded.legacy_dirs)
    return tuple((os.path.join(home, name), target) for name, target in {**unwanted, **wanted}.items())


def _boot_plan(generation: profile.Generation, loaded: settings.Settings, program: Program) -> BootPlan:
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
    return BootPlan(
        settings=loaded,
        prepare=PreparePlan(directories, owner, profile.COMPILE_CACHE_LINKS),
        ownership=OwnershipPlan(loaded.ownership_mode, loaded.ownership_roots, user.uid, user.gid),
        migration=MigrationPlan(
            loaded.migration_mode,
            loaded.legacy_dirs,
            target=_gateway_dir(loaded),
            volume=loaded.state_dir,
            record_dir=_init_dir(loaded),
            kept_at_root=profile.VOLUME_ROOT_NAMES,
            owner=owner,
            config_names=_config_names(generation),
            home_links=_home_links(generation, loaded),
            mode_setting=loaded.env_prefix + "MIGRATE",
        ),
        credentials=_secret_plan(generation, loaded),
        program=program,
        runtime_paths=_runtime_paths(),
        program_home=_home_dir(loaded) if program.name in (profile.PROGRAM_NAME, profile.APP_NAME) else None,
    )


def boot(args: tuple[str, ...]) -> int:
    """The container's start: read the settings, run the boot's phases, then live as PID 1."""
    # Imported before supervisord's process is forked (the run dir's contracts it shares with the
    # crash guard among them): both processes share their pages.
    from .boot import privileges
    from .pid1 import modes, notify, reaper, supervisord

    started = time.monotonic()
    ignored = reaper.ignored_at_start()  # before the handlers below replace what the caller set
    stop = StopFlag()
    # PID 1 gets no signal it has no handler for: until the signals are blocked for the PID-1
    # loop, these handlers let a `docker stop` interrupt a long ownership walk.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: stop.set(number))
    loaded = _settings()
    supervise = not args or args[0] == "gateway" or args[0].startswith("-")
    launch = supervisord.Launch(lambda config: _serve_supervisord(["-c", config]), _self_command())
    if supervise and reaper.alone():
        # Before the boot's modules are imported: supervisord's process imports its own on another
        # CPU while PID 1 boots, and never holds the boot's (a boot that ends the container ends it).
        log.load_serializer()  # both write lines
        become = partial(privileges.become, loaded.user) if loaded.started_as_root else lambda: True
        launch = replace(launch, standby=supervisord.Standby.fork(launch.serve, become, ignored))
    from .boot import pipeline
    from .common.report import PhaseResult

    generation = _installed_generation()
    program = _program(generation, loaded, args, supervise)
    heap: dict[str, Any] = {}
    if supervise:
        program, heap = _with_sized_heap(program)
    # Our own cwd must not pin a volume mount (EBUSY on unmount); the program gets its own back.
    os.chdir("/")
    mode: modes.Mode = "supervise" if supervise else "run"
    config = PhaseResult(
        "config",
        "ok",
        round((time.monotonic() - started) * 1000, 1),
        {
            "mode": mode,
            "state_dir": loaded.state_dir,
            "workspace_dir": loaded.workspace_dir,
            "run_dir": loaded.run_dir,
            "started_as_root": loaded.started_as_root,
            "program": list(program.argv[:1]),
            "gateway": f"{generation.package} >= {generation.since[0]}.{generation.since[1]}",
            **heap,
        },
    )
    readiness = None
    if supervise:
        readiness = notify.Readiness.from_environ(os.environ, _readiness_check(loaded), loaded.run_dir)
    booted = pipeline.run(
        _boot_plan(generation, loaded, program),
        stop,
        readiness.status if readiness else lambda text: None,
        config,
    )
    if booted.exit_code is not None:
        return booted.exit_code
    plan = modes.Pid1Plan(loaded, mode, __version__, started, launch, ignored, _guard_plan(loaded))
    return modes.run(plan, booted.program, booted.phases, stop, readiness)


def _readiness_check(loaded: settings.Settings) -> Callable[[str], tuple[bool, str]]:
    """sd_notify's checks: `check("startup")` before READY, `check("live")` for each WATCHDOG."""

    def check(probe: str) -> tuple[bool, str]:
        # Imported here: only readiness notification (a NOTIFY_SOCKET) asks PID 1 itself for
        # health, and what PID 1 imports stays in its memory as long as it lives. 1 s, not an
        # operator's 3 s: PID 1 waits in the loop that also reaps and forwards signals.
        from .tools import health

        return health.check(loaded.run_dir, profile.PROGRAM_NAME, loaded.program_port, probe, 1.0)

    return check


def application_cli(args: list[str]) -> int:
    """`moltbot ARGS`: the gateway's CLI as the target user, with the gateway's environment, so
    `docker exec ... moltbot status` never leaves root-owned files in the volumes."""
    from .boot import credentials, privileges

    loaded = _settings()
    generation = _installed_generation()
    env = _gateway_environment(generation, loaded)
    plan = _secret_plan(generation, loaded)
    token = credentials.existing(plan, os.environ)
    if token:
        env.update({name: token for name in plan.given_as})
    if os.geteuid() == 0 and loaded.user.uid != 0:
        try:
            privileges.drop(loaded.user)
        except (privileges.PrivilegeDropError, OSError) as error:
            log.event(_LOG, "error", "privilege_drop_failed", f"refusing to run the CLI as root: {error}")
            return 1
        env.update(privileges.user_environment(loaded.user))
    env["HOME"] = _home_dir(loaded)  # the gateway's, where its CLI finds what the gateway wrote
    argv = (*loaded.program_cli, *args)
    try:
        os.execvpe(argv[0], list(argv), env)
    except OSError as error:
        log.event(
            _LOG, "error", "command_not_found", f"cannot run {argv[0]}: {error.strerror}", command=argv[0]
        )
        return 127


def supervisorctl(args: list[str]) -> int:
    from supervisor import supervisorctl as control

    if not {"-c", "--configuration"} & {arg.split("=", 1)[0] for arg in args}:
        loaded = _settings(drops_privileges=False)
        args = ["-c", os.path.join(loaded.run_dir, rundir.SUPERVISOR_CONFIG), *args]
    control.main(args)
    return 0


def supervisord(args: list[str]) -> int:
    """`supervisord ARGS`: supervisor's daemon, as PID 1 execs it where it cannot fork it."""
    log.configure()
    # Frozen, we were started through the loader, which set its variables again for us: the
    # programs supervisord starts inherit our environment and must not see them.
    cleaned = environment.for_program(os.environ)
    os.environ.clear()
    os.environ.update(cleaned)
    return _serve_supervisord(args)


def _serve_supervisord(args: list[str]) -> int:
    """supervisord's process, forked by PID 1 or exec'd: supervisord's main, then the crash guard
    it loads from its config writes what supervisord's last events lead to."""
    from .crashguard import plugin
    from .pid1 import supervisord as supervising

    return supervising.serve(args, finish=plugin.finish)


def health(args: list[str]) -> int:
    from .tools import health as probe

    loaded = _settings(drops_privileges=False)
    return probe.main(args, loaded.run_dir, profile.PROGRAM_NAME, loaded.program_port)


def status(args: list[str]) -> int:
    from .tools import status as report

    return report.main(_settings(drops_privileges=False), profile.PROGRAM_NAME, as_json="--json" in args)
