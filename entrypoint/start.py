"""The container's start: the settings, supervisord's standby, the boot's phases, then PID 1's life.

Who runs it: the init as the container's first process (PID 1, or PID 2 behind `docker run --init`),
once per container start, as root when started as root; `boot` returns the container's exit code
(beside a live init it raises `rundir.InstanceRunning` before it writes anything). Each step below
is one line; the boot's own order is `boot/pipeline.py`'s, PID 1's duties are `pid1/`'s. What only
one mode needs is imported where that mode starts: the standby is forked before the boot's modules
are imported, so that it never holds them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial

from . import __version__, binary, wiring

# Imported before supervisord's process is forked (the run dir's contracts it shares with the crash
# guard among them): both processes share their pages.
from .boot import privileges
from .common import log, rundir
from .common.plans import StopFlag
from .common.report import PhaseResult
from .common.settings import Settings
from .pid1 import modes, notify, reaper, supervision
from .supervisord import INTERFACES, standby

# How long the boot's lines wait for the startup report, so that the report is the first line of
# `docker logs` (a boot takes ~50 ms): a boot that runs longer (a big migration, a checkpoint) shows
# its lines as they come, and a SIGKILL in the middle of one loses at most this much of them.
BOOT_LINES_HELD_S = 2.0


def boot(args: tuple[str, ...]) -> int:
    """The container's start: supervise the gateway, or run `args` once after the same boot."""
    started = time.monotonic()
    ignored = reaper.ignored_at_start()  # what our caller ignores, asked before our handlers replace it
    stop = _stop_flag()  # until PID 1's loop blocks them, SIGTERM and SIGINT interrupt a long walk
    loaded = wiring.load_settings()  # any invalid value: exit 78 and one line
    rundir.claim(loaded.run_dir, _owner(loaded))  # one boot per container; its descriptor lives as long
    mode: modes.Mode = "supervise" if _supervises(args) else "run"
    launch = _launch(loaded, ignored, fork_standby=mode == "supervise")  # supervisord imports meanwhile
    log.hold_until_report(BOOT_LINES_HELD_S)  # after the fork: the standby's lines are never held
    try:
        return _boot_and_run(started, ignored, stop, loaded, mode, launch, args)
    finally:
        log.release_held()  # a boot that ended before its report (a refusal, a stop) still says why


def _boot_and_run(
    started: float,
    ignored: frozenset[int],
    stop: StopFlag,
    loaded: Settings,
    mode: modes.Mode,
    launch: supervision.Launch,
    args: tuple[str, ...],
) -> int:
    from .boot import pipeline  # after the standby's fork: it never holds the boot's modules

    plans = wiring.start(loaded, args, mode == "supervise")  # the profile, read into the plans
    os.chdir("/")  # our cwd must not pin a volume mount (EBUSY on unmount); the program gets its own
    check = _probes(loaded, plans.boot.program.name)  # the program's own probes, for PID 1's loop
    readiness = _readiness(loaded, check) if mode == "supervise" else None  # sd_notify
    config = _config_phase(started, mode, loaded, plans)
    booted = pipeline.run(plans.boot, stop, readiness.status if readiness else _silent, config)
    if booted.exit_code is not None:  # the boot ends the container (a refusal, a stop)
        return booted.exit_code
    guard = wiring.guard_plan(loaded)
    plan = modes.Pid1Plan(loaded, mode, __version__, started, launch, ignored, guard, check)
    return modes.run(plan, booted, stop, readiness)  # PID 1 until the end


def _owner(loaded: Settings) -> tuple[int, int] | None:
    """Who a directory the boot makes belongs to: the target user, when started as root."""
    return (loaded.user.uid, loaded.user.gid) if loaded.started_as_root else None


def _supervises(args: tuple[str, ...]) -> bool:
    """No arguments, `gateway ...` or options for it: supervise; any other command: run it once."""
    return not args or args[0] == "gateway" or args[0].startswith("-")


def _stop_flag() -> StopFlag:
    """PID 1 gets no signal it has no handler for: these let a `docker stop` end the boot."""
    stop = StopFlag()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: stop.set(number))
    return stop


def _serve(config: str) -> int:
    """supervisord's process, once it has its config: imported there, never in PID 1."""
    from .supervisord import serve

    return serve.serve(["-c", config])


def _launch(loaded: Settings, ignored: frozenset[int], *, fork_standby: bool) -> supervision.Launch:
    """How supervisord's process will be made; its standby forked now, where a fork is safe."""
    launch = supervision.Launch(_serve, binary.self_command(), INTERFACES)
    if not fork_standby or not reaper.alone():
        return launch
    log.load_serializer()  # both processes write lines: they share its pages
    become = partial(privileges.become, loaded.user) if loaded.started_as_root else lambda: True
    life = partial(standby.stand_by, become_user=become, serve=_serve)
    return replace(launch, standby=supervision.Standby.fork(life, ignored))


def _probes(loaded: Settings, program: str) -> Callable[[str], tuple[bool, str]]:
    """`check(probe)`: the program's startup or liveness probe, as PID 1 asks it (sd_notify's READY
    and WATCHDOG, the chores that wait for the program's start)."""

    def check(probe: str) -> tuple[bool, str]:
        # Imported here: PID 1 asks only with a NOTIFY_SOCKET or a chore for after the start, and
        # what PID 1 imports stays in its memory as long as it lives. 1 s, not an operator's 3 s:
        # PID 1 waits in the loop that also reaps and forwards signals.
        from .tools import health

        return health.check(loaded.run_dir, program, loaded.program_port, probe, 1.0)

    return check


def _readiness(loaded: Settings, check: Callable[[str], tuple[bool, str]]) -> notify.Readiness | None:
    """sd_notify's messages, when a service manager gave a NOTIFY_SOCKET."""
    return notify.Readiness.from_environ(os.environ, check, loaded.run_dir)


def _config_phase(started: float, mode: str, loaded: Settings, plans: wiring.Start) -> PhaseResult:
    """The startup report's first phase: what the settings and the profile decided."""
    figures = {
        "mode": mode,
        "state_dir": loaded.state_dir,
        "workspace_dir": loaded.workspace_dir,
        "run_dir": loaded.run_dir,
        "started_as_root": loaded.started_as_root,
        "program": list(plans.boot.program.argv[:1]),
        **plans.facts,
    }
    return PhaseResult("config", "ok", round((time.monotonic() - started) * 1000, 1), figures)


def _silent(text: str) -> None:
    """Where no service manager listens, a phase's start is told to no one."""
