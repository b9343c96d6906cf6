"""The named programs: what the binary does when called as a tool rather than to boot.

Who runs it: operators (`docker exec`, as root or the target user), the engine's HEALTHCHECK and
Kubernetes' probes (`health`) while the container runs, and PID 1 itself after the boot where it
cannot fork supervisord (`supervisord`, exec'd as the target user), each in a process of its own
that ends with the tool. Each function
reads the settings (`wiring`), then hands over to its program's package; the dispatch table and
its help are in `__main__`.
"""

from __future__ import annotations

import os

from . import wiring
from .common import environment, log, rundir
from .common.exits import Exit

_LOG = log.get("main")


def boot(args: list[str]) -> int:
    """The container's start (`start.boot`), imported only when the binary boots."""
    from . import start

    return start.boot(tuple(args))


def health(args: list[str]) -> int:
    from .tools import health as probe

    loaded = wiring.load_settings(drops_privileges=False)
    return probe.main(args, loaded.run_dir, wiring.PROGRAM_NAME, loaded.program_port)


def status(args: list[str]) -> int:
    from .tools import status as report

    loaded = wiring.load_settings(drops_privileges=False)
    return report.main(loaded, wiring.PROGRAM_NAME, as_json="--json" in args)


def supervisorctl(args: list[str]) -> int:
    """supervisor's own client, pointed at the config the init renders (unless given one)."""
    from supervisor import supervisorctl as control

    if not {"-c", "--configuration"} & {arg.split("=", 1)[0] for arg in args}:
        loaded = wiring.load_settings(drops_privileges=False)
        args = ["-c", os.path.join(loaded.run_dir, rundir.SUPERVISOR_CONFIG), *args]
    control.main(args)
    return Exit.OK


def supervisord(args: list[str]) -> int:
    """`supervisord ARGS`: supervisor's daemon in supervisord's process, as PID 1 execs it where it
    cannot fork it (it serves as a forked one does)."""
    from .supervisord import serve

    log.configure()
    # Frozen, we were started through the loader, which set its variables again for us: the
    # programs supervisord starts inherit our environment and must not see them.
    cleaned = environment.for_program(os.environ)
    os.environ.clear()
    os.environ.update(cleaned)
    return serve.serve(args)


def application_cli(args: list[str]) -> int:
    """`<app> ARGS`: the application's CLI as the target user, with the application's environment,
    so that `docker exec ... <app> status` never leaves root-owned files in the volumes."""
    from .boot import credentials, privileges

    loaded = wiring.load_settings()
    generation = wiring.installed_generation()
    program = wiring.cli(generation, loaded, args)
    env = dict(program.env)
    plan = wiring.secret_plan(generation, loaded)
    token = credentials.existing(plan, os.environ)
    if token:
        env.update({name: token for name in plan.given_as})
    if os.geteuid() == 0 and loaded.user.uid != 0:
        try:
            privileges.drop(loaded.user)
        except (privileges.PrivilegeDropError, OSError) as error:
            log.event(_LOG, "error", "privilege_drop_failed", f"refusing to run the CLI as root: {error}")
            return Exit.FAILED
        env.update({**privileges.user_environment(loaded.user), "HOME": program.env["HOME"]})
    try:
        os.execvpe(program.argv[0], list(program.argv), env)
    except OSError as error:
        command = program.argv[0]
        log.event(
            _LOG, "error", "command_not_found", f"cannot run {command}: {error.strerror}", command=command
        )
        return Exit.NOT_FOUND
