"""The metrics: what the init knows, in Prometheus' text format, from one source for all three ways
out (`status --prometheus`, the textfile `RUN/metrics.prom`, the opt-in HTTP listener).

Who uses it: the crash guard (inside supervisord's process, as the target user) rewrites the
textfile after each change of the program's state and at each of supervisord's ticks; the listener
(supervisord's process) renders it per scrape; `status --prometheus` (operators, any user) once.
Each renders the same files the same way: the crash guard's state (`guardstate`: up, state,
restarts by cause, the hold and its cause, OOM kills, the last exit code, time in backoff), the
startup report (`report`: the boot's phases, entries re-owned, the migration, the checkpoint),
PID 1's count of reaped zombies (`rundir.ZOMBIES_REAPED`) and /proc (start times and RSS of PID 1,
supervisord's process and the program's tree). Label values come from fixed sets (`State`,
`HoldCause`, `RestartCause`, the boot's phase names) and the init's version: no path, no command
line, no secret. Every metric's name starts with the application's namespace (given by `wiring`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from . import guardstate, procfs, report, rundir
from .exposition import Family, Kind, labelled, one
from .exposition import render as exposition
from .guardstate import HoldCause, Snapshot, State

# The init's own processes, as the `process` label names them.
PID1, SUPERVISORD = "pid1", "supervisord"


def render(run_dir: str, namespace: str, now: float | None = None) -> str:
    """The exposition of everything the run dir and /proc say now."""
    now = time.time() if now is None else now
    return exposition([*_program(namespace, guardstate.read(run_dir), now), *_init(namespace, run_dir)])


def write_textfile(run_dir: str, text: str) -> str | None:
    """Replace `RUN/metrics.prom` atomically (node exporter never reads half of one); its path, or
    None when the run dir cannot be written (the metrics are an aid: the caller goes on)."""
    path = os.path.join(run_dir, rundir.METRICS_TEXTFILE)
    try:
        rundir.replace_file(path, text.encode())
    except OSError:
        return None
    return path


def _rss_bytes(pids: list[int]) -> int | None:
    stats = [fields for fields in map(procfs.stat_fields, pids) if fields]
    return sum(map(procfs.rss_pages, stats)) * os.sysconf("SC_PAGE_SIZE") if stats else None


def _program(ns: str, snapshot: Snapshot | None, now: float) -> Iterator[Family]:
    running = snapshot is not None and snapshot.state == State.RUNNING
    yield one(f"{ns}_gateway_up", "gauge", "1 while the gateway's process runs, else 0", int(running))
    if snapshot is None:  # no crash guard in this container (yet): nothing more is known
        return
    pid = snapshot.pid if running else None
    yield labelled(
        f"{ns}_gateway_state",
        "gauge",
        "1 for the crash guard's state of the gateway, 0 for the others",
        "state",
        ((state, int(state == snapshot.state)) for state in State),
    )
    yield one(
        f"{ns}_gateway_start_time_seconds",
        "gauge",
        "When the running gateway's process started, in seconds since the epoch",
        snapshot.running_since if running else None,
    )
    yield labelled(
        f"{ns}_gateway_restarts_total",
        "counter",
        "Starts of the gateway but the boot's own: by the crash guard after an exit nobody asked for "
        "(crash), asked for by the gateway (requested), by an operator (operator)",
        "cause",
        snapshot.restarts_by_cause().items(),
    )
    held = snapshot.held_cause if snapshot.state in guardstate.HOLDING else None
    yield labelled(
        f"{ns}_gateway_held",
        "gauge",
        "1 for the reason the gateway is held (not started until an operator acts or a retry), "
        "0 for the others",
        "reason",
        ((cause, int(cause == held)) for cause in HoldCause),
    )
    yield one(
        f"{ns}_gateway_oom_kills_total",
        "counter",
        "Exits of the gateway caused by the kernel's OOM killer",
        snapshot.oom_kills,
    )
    yield one(
        f"{ns}_gateway_last_exit_code",
        "gauge",
        "Exit code of the gateway's last exit (-1: killed by a signal); absent before the first",
        snapshot.last_exit_code,
    )
    yield one(
        f"{ns}_gateway_backoff_seconds_total",
        "counter",
        "Time the gateway spent waiting in backoff before a restart",
        round(snapshot.time_in_backoff(now), 3),
    )
    yield one(
        f"{ns}_gateway_resident_memory_bytes",
        "gauge",
        "Resident memory of the running gateway and every process below it",
        _rss_bytes(procfs.tree(pid)) if pid else None,
    )


def _phases(data: dict[str, Any] | None) -> list[dict[str, Any]]:
    phases = data.get("phases") if data else None
    return [phase for phase in phases or () if isinstance(phase, dict) and isinstance(phase.get("name"), str)]


def _figure(phases: list[dict[str, Any]], phase: str, figure: str) -> float:
    """A number the boot's phases named `phase*` reported, summed (`ownership` and the second walk
    after a migration, `ownership_migrated`); 0 when none did."""
    found: float = 0  # whole counts stay whole
    for item in phases:
        figures = item.get("figures")
        value = figures.get(figure) if isinstance(figures, dict) else None
        if item["name"].startswith(phase) and isinstance(value, int | float):
            found += value
    return found


def _seconds(milliseconds: Any) -> float | None:
    return round(milliseconds / 1000, 4) if isinstance(milliseconds, int | float) else None


def _init(ns: str, run_dir: str) -> Iterator[Family]:
    pid1 = rundir.read_number(run_dir, rundir.INSTANCE_LOCK)
    supervisord = rundir.read_number(run_dir, rundir.SUPERVISOR_PID)
    data = report.read(run_dir)
    phases = _phases(data)
    version = data.get("version") if data else None
    yield labelled(
        f"{ns}_init_info", "gauge", "The init's version", "version", [(version, 1)] if version else ()
    )
    yield labelled(
        f"{ns}_init_boot_phase_duration_seconds",
        "gauge",
        "How long each phase of the boot took",
        "phase",
        (
            (phase["name"], seconds)
            for phase in phases
            if (seconds := _seconds(phase.get("duration_ms"))) is not None
        ),
    )
    migration = next((phase for phase in phases if phase["name"] == "migration"), {})
    reaped = rundir.read_number(run_dir, rundir.ZOMBIES_REAPED) or 0  # none written: none reaped yet

    def figure(phase: str, name: str) -> float | None:
        """A figure of the boot's phases; 0 where a phase did nothing, unknown without a boot."""
        return _figure(phases, phase, name) if data is not None else None

    unlabelled: tuple[tuple[str, Kind, str, float | None], ...] = (
        (
            "start_time_seconds",
            "gauge",
            "When the init (PID 1) started, in seconds since the epoch",
            procfs.started_at(pid1) if pid1 else None,
        ),
        (
            "boot_duration_seconds",
            "gauge",
            "How long the boot took, from the init's start to the gateway's",
            _seconds(data.get("duration_ms")) if data else None,
        ),
        (
            "reowned_entries",
            "gauge",
            "Entries of the volumes the boot gave to the gateway's user",
            figure("ownership", "changed"),
        ),
        (
            "migration_entries",
            "gauge",
            "Entries the boot's migration of legacy state moved in (0: none)",
            figure("migration", "entries"),
        ),
        (
            "migration_bytes",
            "gauge",
            "Bytes the boot's migration of legacy state copied (0: none)",
            figure("migration", "bytes"),
        ),
        (
            "migration_duration_seconds",
            "gauge",
            "How long the boot's migration of legacy state took",
            _seconds(migration.get("duration_ms")),
        ),
        (
            "checkpoint_bytes",
            "gauge",
            "Size of the checkpoint the boot took before an upgrade (0: none)",
            figure("upgrade", "checkpoint_bytes"),
        ),
        (
            "checkpoint_duration_seconds",
            "gauge",
            "How long the boot took to take the checkpoint before an upgrade (0: none)",
            figure("upgrade", "checkpoint_seconds"),
        ),
        (
            "zombies_reaped_total",
            "counter",
            "Orphaned processes PID 1 has reaped (children the gateway's own children left behind)",
            reaped if pid1 else None,
        ),
    )
    for name, kind, meaning, value in unlabelled:
        yield one(f"{ns}_init_{name}", kind, meaning, value)
    yield labelled(
        f"{ns}_init_resident_memory_bytes",
        "gauge",
        "Resident memory of the init's own processes: PID 1, and supervisord's with the crash guard",
        "process",
        (
            (name, rss)
            for name, pid in ((PID1, pid1), (SUPERVISORD, supervisord))
            if pid and (rss := _rss_bytes([pid])) is not None
        ),
    )
