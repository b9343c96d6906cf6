"""Wiring: the only module that reads the application profile (`moltbot/profile.py`). It turns the
settings and the profile into the plans the other modules run, and gives each of the programs
that share this binary its entry point.

Who runs it: every process of the binary, first thing after `__main__` picked the program by its
name: the boot (PID 1, as root), supervisord and its crash guard (the target user), and the
operator tools (`docker exec`, HEALTHCHECK: any user).
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

from moltbot import profile

from . import __version__
from .common import environment, log, rundir, settings
from .common.plans import BootPlan, MigrationPlan, OwnershipPlan, PreparePlan, Program, SecretPlan, StopFlag
from .common.report import PhaseResult

INIT_NAME = f"{profile.APP_NAME}-init"
APP_NAME = profile.APP_NAME
_LOG = log.get("main")

HELP = f"""\
usage: {INIT_NAME} [gateway] [GATEWAY-ARGS...]    boot and supervise the gateway (the container's PID 1)
       {INIT_NAME} COMMAND [ARGS...]             boot, then run COMMAND once (as tini would)
       {INIT_NAME} {profile.APP_NAME} [ARGS...]  boot, then run the gateway's CLI once
       {INIT_NAME} status [--json]               what the boot did and how the gateway is
       {INIT_NAME} health                        exit 0 when the gateway runs and its port answers
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
    )


def _self_command() -> tuple[str, ...]:
    """How to run this same program again (for supervisord and its event listener)."""
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


def _secret_plan(loaded: settings.Settings) -> SecretPlan:
    token_path = os.path.join(_init_dir(loaded), profile.TOKEN_FILE_NAME)
    return SecretPlan(token_path, profile.TOKEN_ENV_NAMES, loaded.user.uid, loaded.user.gid)


def _gateway_environment(loaded: settings.Settings) -> dict[str, str]:
    gateway = profile.gateway_environment(loaded.state_dir, loaded.workspace_dir)
    return environment.for_program({**os.environ, **gateway})


def _program(loaded: settings.Settings, args: tuple[str, ...], supervise: bool) -> Program:
    env = _gateway_environment(loaded)
    workdir = os.getcwd()
    if supervise:
        extra = args[1:] if args[:1] == ("gateway",) else args
        argv = (
            (*loaded.program_command, *extra)
            if loaded.program_command
            else profile.gateway_command(loaded.program_port, extra)
        )
        return Program(profile.PROGRAM_NAME, argv, env, workdir)
    argv = profile.cli_command(args[1:]) if args[0] == profile.APP_NAME else args
    return Program(args[0], argv, env, workdir)


def _boot_plan(loaded: settings.Settings, program: Program) -> BootPlan:
    user = loaded.user
    return BootPlan(
        settings=loaded,
        prepare=PreparePlan((loaded.run_dir, loaded.state_dir, loaded.workspace_dir), user.uid, user.gid),
        ownership=OwnershipPlan(loaded.ownership_mode, loaded.ownership_roots, user.uid, user.gid),
        migration=MigrationPlan(
            loaded.migration_mode,
            loaded.legacy_dirs,
            loaded.state_dir,
            user.uid,
            user.gid,
            profile.config_names(profile.installed_generation()),
            record_dir_name=profile.INIT_DIR_NAME,
            mode_setting=loaded.env_prefix + "MIGRATE",
        ),
        credentials=_secret_plan(loaded),
        program=program,
    )


def boot(args: tuple[str, ...]) -> int:
    """The container's start: read the settings, run the boot's phases, then live as PID 1."""
    from .boot import pipeline
    from .pid1 import modes, notify

    started = time.monotonic()
    stop = StopFlag()
    # PID 1 gets no signal it has no handler for: until the signals are blocked for the PID-1
    # loop, these handlers let a `docker stop` interrupt a long ownership walk.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: stop.set(number))
    loaded = _settings()
    supervise = not args or args[0] == "gateway" or args[0].startswith("-")
    program = _program(loaded, args, supervise)
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
        },
    )
    readiness = None
    if supervise:
        readiness = notify.Readiness.from_environ(os.environ, _readiness_check(loaded), loaded.run_dir)
    booted = pipeline.run(
        _boot_plan(loaded, program), stop, readiness.status if readiness else lambda text: None, config
    )
    if booted.exit_code is not None:
        return booted.exit_code
    plan = modes.Pid1Plan(loaded, mode, __version__, started, _ledger_path(loaded), _self_command())
    return modes.run(plan, booted.program, booted.phases, stop, readiness)


def _readiness_check(loaded: settings.Settings) -> Callable[[], tuple[bool, str]]:
    def check() -> tuple[bool, str]:
        # Imported here: xmlrpc and http.client cost PID 1 memory for as long as it lives, and only
        # readiness notification (a NOTIFY_SOCKET) asks PID 1 itself for health.
        from .tools import health

        return health.check(loaded.run_dir, profile.PROGRAM_NAME, loaded.program_port)

    return check


def application_cli(args: list[str]) -> int:
    """`moltbot ARGS`: the gateway's CLI as the target user, with the gateway's environment, so
    `docker exec ... moltbot status` never leaves root-owned files in the volumes."""
    from .boot import credentials, privileges

    loaded = _settings()
    env = _gateway_environment(loaded)
    token = credentials.existing(_secret_plan(loaded), os.environ)
    if token:
        env.update({name: token for name in profile.TOKEN_ENV_NAMES})
    if os.geteuid() == 0 and loaded.user.uid != 0:
        try:
            privileges.drop(loaded.user)
        except (privileges.PrivilegeDropError, OSError) as error:
            log.event(_LOG, "error", "privilege_drop_failed", f"refusing to run the CLI as root: {error}")
            return 1
        env.update(privileges.user_environment(loaded.user))
    argv = profile.cli_command(tuple(args))
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
    from supervisor import supervisord as daemon

    from .pid1 import supervisord as rendering

    rendering.start_waker(rendering.Layout(_settings(drops_privileges=False).run_dir))
    # Frozen, we were started through the loader, which set its variables again for us: the
    # programs supervisord starts inherit our environment and must not see them.
    cleaned = environment.for_program(os.environ)
    os.environ.clear()
    os.environ.update(cleaned)
    daemon.main(args)
    return 0


def health(args: list[str]) -> int:
    from .tools import health as probe

    loaded = _settings(drops_privileges=False)
    healthy, reason = probe.check(loaded.run_dir, profile.PROGRAM_NAME, loaded.program_port)
    print(reason)
    return 0 if healthy else 1


def status(args: list[str]) -> int:
    from .tools import status as report

    return report.main(_settings(drops_privileges=False), profile.PROGRAM_NAME, as_json="--json" in args)


def crashguard(args: list[str]) -> int:
    from .crashguard import guard

    loaded = _settings()
    return guard.main(loaded, profile.PROGRAM_NAME, _ledger_path(loaded))
