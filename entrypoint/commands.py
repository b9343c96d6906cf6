"""The named programs: what the binary does when called as a tool rather than to boot.

Who runs it: operators (`docker exec`, as root or the target user; one-off containers and
Kubernetes Jobs for `checkpoint`, `rollback` and `restore`), scheduled jobs (`backup`: a CronJob's
pod, a compose service) beside the running container, the engine's HEALTHCHECK and Kubernetes'
probes (`health`) while the container runs, and PID 1 itself after the boot where it cannot fork
supervisord (`supervisord`, exec'd as the target user), each in a process of its own that ends with
the tool. Each function reads the settings (`wiring`), then hands over to its program's package;
the dispatch table and its help are in `__main__`.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from . import wiring
from .common import environment, log, rundir
from .common.exits import Exit, by_signal
from .common.fsops import describe
from .common.plans import BackupPlan, StopFlag
from .common.settings import Settings

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
    if "--prometheus" in args:
        return report.prometheus(loaded.run_dir, wiring.METRICS_NAMESPACE)
    return report.main(loaded, wiring.PROGRAM_NAME, wiring.record_dir(loaded), as_json="--json" in args)


def checkpoints(args: list[str]) -> int:
    from .tools import checkpoints as listing

    loaded = wiring.load_settings(drops_privileges=False)
    return listing.main(wiring.record_dir(loaded), as_json="--json" in args)


def checkpoint(args: list[str]) -> int:
    """Take a checkpoint of the state now, as an upgrade does (no application may run on it)."""
    from .boot.upgrade import checkpoint as taking
    from .common import releases

    loaded = wiring.load_settings()
    plan = wiring.upgrade_plan(loaded)
    with _operating(loaded, plan.record_dir, "take a checkpoint") as refused:
        if refused is not None:
            return refused
        history = releases.read(plan.record_dir)
        trees = taking.trees_to_take(plan.trees, plan.workspace, plan.settings.workspace_max_bytes)
        belongs = history.current.release if history and history.current else plan.release
        try:
            taken = taking.take(plan.record_dir, belongs, trees, "taken by an operator", StopFlag())
        except OSError as error:
            return _refused("checkpoint_failed", f"no checkpoint was taken: {describe(error)}")
        where = os.path.join(plan.record_dir, "checkpoints", taken.id)
        print(f"checkpoint {taken.id}: {taken.entries} entries, {taken.bytes} bytes, in {where}")
        return Exit.OK


def rollback(args: list[str]) -> int:
    """Put a checkpoint back in place of the live state (no application may run on it)."""
    from .boot.upgrade import rollback as rolling
    from .common import swapjournal

    loaded = wiring.load_settings()
    plan = wiring.upgrade_plan(loaded)
    wanted = args[0] if args else None
    with _operating(loaded, plan.record_dir, "roll back") as refused:
        if refused is not None:
            return refused
        try:
            done = rolling.roll_back(plan, wanted, StopFlag())
        except (rolling.RollbackRefused, swapjournal.Unreadable) as error:
            return _refused("rollback_refused", str(error))
        except OSError as error:
            return _refused(
                "rollback_failed", f"the rollback stopped ({describe(error)}): run it again to finish it"
            )
        print(rolling.next_steps(done))
        return Exit.OK


def backup(args: list[str]) -> int:
    """An archive of the state by the application's own CLI, beside the running application (a
    one-off, a CronJob's pod, compose.backup.yml's service): as the target user, no state lock."""
    from .tools import backup as archiving

    loaded = wiring.load_settings()
    refused = _as_target_user(loaded, "back up")
    if refused is not None:
        return refused
    _end_on_signals()
    return archiving.main(wiring.backup_plan(loaded), wiring.upgrade_plan(loaded), args)


def restore(args: list[str]) -> int:
    """Put the state an archive of the application's holds in place of the live state (no
    application may run on it)."""
    from .boot.upgrade import restore as restoring
    from .common import swapjournal

    loaded = wiring.load_settings()
    plan, upgrade = wiring.backup_plan(loaded), wiring.upgrade_plan(loaded)
    if len(args) != 1:
        return _restore_usage(plan)
    _end_on_signals()
    with _operating(loaded, upgrade.record_dir, "restore") as refused:
        if refused is not None:
            return refused
        try:
            done = restoring.restore(upgrade, plan, args[0])
        except restoring.RestoreRefused as error:
            log.event(_LOG, "error", "restore_refused", str(error))
            return error.code
        except swapjournal.Unreadable as error:
            return _refused("restore_refused", str(error))
        except OSError as error:
            return _refused(
                "restore_failed", f"the restore stopped ({describe(error)}): run it again to finish it"
            )
        print(restoring.next_steps(done, upgrade.workspace))
        return Exit.OK


def _restore_usage(plan: BackupPlan) -> int:
    from .tools import backup as archiving

    try:
        found = [entry.name for entry in archiving.archives(plan.directory, plan.archive_suffix)]
    except OSError:
        found = []
    there = f"; newest first: {', '.join(found[:5])}" if found else " (none there now)"
    log.event(
        _LOG,
        "error",
        "restore_usage",
        f"usage: restore ARCHIVE, a path or the name of one in {plan.directory}{there}",
        archives=found[:5],
    )
    return Exit.USAGE


@contextlib.contextmanager
def _operating(loaded: Settings, record_dir: str, what: str) -> Iterator[int | None]:
    """As the target user (the state is theirs), with the state to itself: yields None, or the exit
    code of a refusal already said (no drop possible, or an application runs on the state)."""
    from .common import statelock

    refused = _as_target_user(loaded, what)
    if refused is not None:
        yield refused
        return
    try:
        lock = statelock.take(record_dir)
    except statelock.StateBusy:
        yield _refused(
            "state_in_use",
            f"cannot {what}: {wiring.PROGRAM_NAME} runs on this state (an init holds it). Stop the container "
            "that runs it first (`docker compose stop`, or scale its Deployment to 0), then run this again",
        )
        return
    except OSError as error:
        yield _refused("state_unwritable", f"cannot {what}: {record_dir}: {describe(error)}")
        return
    try:
        yield None
    finally:
        os.close(lock)


def _as_target_user(loaded: Settings, what: str) -> int | None:
    """Become the target user when started as root (the state and what is written are theirs);
    the exit code of a refusal already said, or None."""
    from .boot import privileges

    if os.geteuid() == 0 and loaded.user.uid != 0:
        try:
            privileges.drop(loaded.user)
        except (privileges.PrivilegeDropError, OSError) as error:
            return _refused("privilege_drop_failed", f"refusing to {what} as root: {error}")
    return None


def _end_on_signals() -> None:
    """A one-off command that is its container's PID 1 gets no SIGTERM or SIGINT it has no handler
    for: both end it at once (a CLI it runs is killed with its group; a swap's journal lets the
    next run finish what it began), with the shell's code for the signal."""

    def end(signum: int, _frame: object) -> None:
        raise SystemExit(by_signal(signum))

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, end)


def _refused(event: str, message: str) -> int:
    log.event(_LOG, "error", event, message)
    return Exit.FAILED


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
