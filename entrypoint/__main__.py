"""moltbot-init: the entry point, and the only module that knows which application it runs.

One program, many names (a multicall binary, as busybox): called as `supervisord`,
`supervisorctl` or `moltbot` through a symlink it is that tool; as `moltbot-init` it boots the
container or answers a subcommand. A name it does not know is refused: falling through to a boot
would start a second init inside a running container.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

from moltbot import profile

from . import __version__, config, environment, log, rundir
from .plan import MigrationPlan, OwnershipPlan, PreparePlan, Program, SecretPlan, StopFlag
from .report import PhaseResult

INIT_NAME = f"{profile.APP_NAME}-init"
EX_USAGE = 64
EX_SOFTWARE = 70
_INIT_NAMES = frozenset({INIT_NAME, "__main__.py", "entrypoint"})
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


def _defaults() -> config.Defaults:
    return config.Defaults(
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


def _settings(*, drops_privileges: bool = True) -> config.Settings:
    """Settings or, for any invalid value, one JSON line and exit 78.

    Operator tools that never change user (health, status, supervisorctl) do not need the target
    user to exist where they run; they only check an explicitly set one."""
    log.configure()
    as_root = os.geteuid() == 0 and drops_privileges
    try:
        settings = config.load(os.environ, _defaults(), as_root=as_root)
    except config.ConfigError as error:
        log.event(
            _LOG,
            "error",
            "invalid_setting",
            str(error),
            setting=error.setting,
            value=error.value,
            accepted=error.accepted,
        )
        raise SystemExit(config.EX_CONFIG) from None
    log.configure(settings.log_format, settings.log_level)
    return settings


def _init_dir(settings: config.Settings) -> str:
    return os.path.join(settings.state_dir, profile.INIT_DIR_NAME)


def _ledger_path(settings: config.Settings) -> str:
    return os.path.join(_init_dir(settings), profile.LEDGER_FILE_NAME)


def _secret_plan(settings: config.Settings) -> SecretPlan:
    token_path = os.path.join(_init_dir(settings), profile.TOKEN_FILE_NAME)
    return SecretPlan(token_path, profile.TOKEN_ENV_NAMES, settings.user.uid, settings.user.gid)


def _gateway_environment(settings: config.Settings) -> dict[str, str]:
    gateway = profile.gateway_environment(settings.state_dir, settings.workspace_dir)
    return environment.for_program({**os.environ, **gateway})


def _boot(args: tuple[str, ...]) -> int:
    from . import pipeline

    started = time.monotonic()
    stop = StopFlag()
    # PID 1 gets no signal it has no handler for: until the signals are blocked for the PID-1
    # loop, these handlers let a `docker stop` interrupt a long ownership walk.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: stop.set(number))
    settings = _settings()
    workdir = os.getcwd()
    # Our own cwd must not pin a volume mount (EBUSY on unmount); the program gets its own back.
    os.chdir("/")
    supervise = not args or args[0] == "gateway" or args[0].startswith("-")
    user = settings.user
    env = _gateway_environment(settings)
    if supervise:
        extra = args[1:] if args[:1] == ("gateway",) else args
        argv = (
            (*settings.program_command, *extra)
            if settings.program_command
            else profile.gateway_command(settings.program_port, extra)
        )
        program = Program(profile.PROGRAM_NAME, argv, env, workdir)
    else:
        argv = profile.cli_command(args[1:]) if args[0] == profile.APP_NAME else args
        program = Program(args[0], argv, env, workdir)
    plan = pipeline.BootPlan(
        settings=settings,
        mode="supervise" if supervise else "run",
        version=__version__,
        prepare=PreparePlan(
            (settings.run_dir, settings.state_dir, settings.workspace_dir), user.uid, user.gid
        ),
        ownership=OwnershipPlan(settings.ownership_mode, settings.ownership_roots, user.uid, user.gid),  # type: ignore[arg-type]
        migration=MigrationPlan(
            settings.migration_mode,  # type: ignore[arg-type]
            settings.legacy_dirs,
            settings.state_dir,
            user.uid,
            user.gid,
            profile.config_names(profile.installed_generation()),
            record_dir_name=profile.INIT_DIR_NAME,
            mode_setting=settings.env_prefix + "MIGRATE",
        ),
        credentials=_secret_plan(settings),
        program=program,
        ledger_path=_ledger_path(settings),
        self_command=_self_command(),
    )
    config_result = PhaseResult(
        "config",
        "ok",
        round((time.monotonic() - started) * 1000, 1),
        {
            "mode": plan.mode,
            "state_dir": settings.state_dir,
            "workspace_dir": settings.workspace_dir,
            "run_dir": settings.run_dir,
            "started_as_root": settings.started_as_root,
            "program": list(program.argv[:1]),
        },
    )
    return pipeline.boot(plan, stop, started, config_result)


def _moltbot_cli(args: list[str]) -> int:
    """`moltbot ARGS`: the gateway's CLI as the target user, with the gateway's environment, so
    `docker exec ... moltbot status` never leaves root-owned files in the volumes."""
    from . import credentials, privileges

    settings = _settings()
    env = _gateway_environment(settings)
    token = credentials.existing(_secret_plan(settings), os.environ)
    if token:
        env.update({name: token for name in profile.TOKEN_ENV_NAMES})
    if os.geteuid() == 0 and settings.user.uid != 0:
        try:
            privileges.drop(settings.user)
        except (privileges.PrivilegeDropError, OSError) as error:
            log.event(_LOG, "error", "privilege_drop_failed", f"refusing to run the CLI as root: {error}")
            return 1
        env.update(privileges.user_environment(settings.user))
    argv = profile.cli_command(tuple(args))
    try:
        os.execvpe(argv[0], list(argv), env)
    except OSError as error:
        log.event(
            _LOG, "error", "command_not_found", f"cannot run {argv[0]}: {error.strerror}", command=argv[0]
        )
        return 127


def _supervisorctl(args: list[str]) -> int:
    from supervisor import supervisorctl

    if not {"-c", "--configuration"} & {arg.split("=", 1)[0] for arg in args}:
        settings = _settings(drops_privileges=False)
        args = ["-c", os.path.join(settings.run_dir, rundir.SUPERVISOR_CONFIG), *args]
    supervisorctl.main(args)
    return 0


def _supervisord(args: list[str]) -> int:
    from supervisor import supervisord

    from . import supervise

    supervise.start_waker(supervise.Layout(_settings(drops_privileges=False).run_dir))
    # Frozen, we were started through the loader, which set its variables again for us: the
    # programs supervisord starts inherit our environment and must not see them.
    cleaned = environment.for_program(os.environ)
    os.environ.clear()
    os.environ.update(cleaned)
    supervisord.main(args)
    return 0


def _health(args: list[str]) -> int:
    from . import health

    settings = _settings(drops_privileges=False)
    healthy, reason = health.check(settings.run_dir, profile.PROGRAM_NAME, settings.program_port)
    print(reason)
    return 0 if healthy else 1


def _status(args: list[str]) -> int:
    from . import status

    return status.main(_settings(drops_privileges=False), profile.PROGRAM_NAME, as_json="--json" in args)


def _crashguard(args: list[str]) -> int:
    from . import crashguard

    settings = _settings()
    return crashguard.main(settings, profile.PROGRAM_NAME, _ledger_path(settings))


# Called by these names (argv[0]), the program is that tool.
_TOOLS: dict[str, Callable[[list[str]], int]] = {
    "supervisord": _supervisord,
    "supervisorctl": _supervisorctl,
    profile.APP_NAME: _moltbot_cli,
}
# Subcommands of the init itself; anything else is a boot (supervise or one-off).
_SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "supervisord": _supervisord,
    "supervisorctl": _supervisorctl,
    "health": _health,
    "status": _status,
    "crashguard": _crashguard,
}


def _init(args: list[str]) -> int:
    head = args[0] if args else None
    if head in ("-h", "--help"):
        print(HELP, end="")
        return 0
    if head == "--version":
        print(f"{INIT_NAME} {__version__}")
        return 0
    if head == "init":
        return _boot(tuple(args[1:]))
    if head in _SUBCOMMANDS:
        return _SUBCOMMANDS[head](args[1:])
    return _boot(tuple(args))


def main(argv: list[str] | None = None) -> int:
    try:
        return _dispatch(list(sys.argv if argv is None else argv))
    except Exception as error:  # never a traceback on the container's stderr, one JSON line instead
        log.event(_LOG, "error", "init_crashed", f"unexpected error: {error}", error=type(error).__name__)
        return EX_SOFTWARE


def _dispatch(argv: list[str]) -> int:
    name = os.path.basename(argv[0]) if argv else INIT_NAME
    if name in _TOOLS:
        return _TOOLS[name](argv[1:])
    if name not in _INIT_NAMES:
        log.configure()
        log.event(
            _LOG,
            "error",
            "unknown_program_name",
            f"called as {name!r}: expected {INIT_NAME}, " + ", ".join(sorted(_TOOLS)),
            name=name,
        )
        return EX_USAGE
    return _init(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
