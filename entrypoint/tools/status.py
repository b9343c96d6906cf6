"""`status`: what an operator wants to know in one look, as text or `--json`; `--prometheus`
prints the metrics instead (`common/metrics`: the textfile's and the listener's, rendered once).

`<init> status [--json | --prometheus]` changes nothing. Sources: the startup report, supervisord
(`getProcessInfo`, `common/control`), the crash guard's state file (`common/guardstate`), the
program's process tree in /proc (RSS, and CPU from the kernel's nanosecond counters, so a short
sample is an exact one) and the program's three probes (`tools/health`: live, started, ready), asked
at once. Exit 0 when supervisord answered, 1 otherwise.

An operator waits for all of it, so the waits overlap: the CPU sample begins first, on the pid
the crash guard last saw, and supervisord is asked (its client imported) while it runs; only a
pid that changed meanwhile is sampled again.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, TextIO

from ..common import checkpoints, guardstate, log, metrics, procfs, releases, report, text
from ..common.exits import Exit
from ..common.guardstate import State
from ..common.settings import Settings
from . import health

_RPC_TIMEOUT_S = 2.0
# The CPU sample's least length. It ends before the probes, which make the program work (the
# sample is of what it does by itself), and lasts as long as asking supervisord, which it overlaps;
# the kernel's nanosecond counters make a short one exact.
_CPU_SAMPLE_S = 0.03
_PROBE_TIMEOUT_S = 1.0  # each; the three are asked in parallel


def _report_summary(run_dir: str) -> dict[str, Any] | None:
    data = report.read(run_dir)
    if data is None:
        return None
    return {
        "version": data.get("version"),
        "mode": data.get("mode"),
        "user": data.get("user"),
        "duration_ms": data.get("duration_ms"),
        "held": data.get("held"),
        "phases": [
            {
                "name": phase.get("name"),
                "status": phase.get("status"),
                "duration_ms": phase.get("duration_ms"),
            }
            for phase in data.get("phases") or []
            if isinstance(phase, dict)
        ],
        "warnings": [
            {"phase": item.get("phase"), "event": item.get("event"), "message": item.get("message")}
            for item in data.get("warnings") or []
            if isinstance(item, dict)
        ],
    }


def _program(run_dir: str, program: str) -> tuple[dict[str, Any] | None, str | None]:
    # Imported here, while the CPU sample runs: its XML-RPC client (http.client, xmlrpc, email)
    # is most of what `status` imports.
    from ..common import control

    info, unknown = control.Supervisor(run_dir, _RPC_TIMEOUT_S).process_info_or_reason(program)
    if info is None:
        return None, unknown
    state = str(info.get("statename", ""))
    running = state in ("RUNNING", "STARTING", "STOPPING") and info.get("pid")
    now, start, stop = info.get("now"), info.get("start"), info.get("stop")
    result: dict[str, Any] = {
        "name": program,
        "state": state,
        "pid": info.get("pid") or None,
        "started_at": log.rfc3339(start) if isinstance(start, int) and start else None,
        "uptime_s": (now - start) if running and isinstance(now, int) and isinstance(start, int) else None,
    }
    if not running:
        result["stopped_at"] = log.rfc3339(stop) if isinstance(stop, int) and stop else None
        result["exit_code"] = info.get("exitstatus")
        if info.get("spawnerr"):
            result["spawn_error"] = info.get("spawnerr")
    return result, None


def _guard(snapshot: guardstate.Snapshot | None, now: float) -> dict[str, Any] | None:
    if snapshot is None:
        return None
    restart_at, retry_at = snapshot.restart_at, snapshot.retry_at
    return {
        "state": snapshot.state.value,
        "since": log.rfc3339(snapshot.since),
        "restarts": snapshot.restarts,
        "requested_restarts": snapshot.requested_restarts,
        "operator_restarts": snapshot.operator_restarts,
        "oom_kills": snapshot.oom_kills,
        "last_exit_code": snapshot.last_exit_code,
        "delay_s": snapshot.delay_s,
        "restart_in_s": None if restart_at is None else round(max(0.0, restart_at - now), 1),
        "held_reason": snapshot.held_reason,
        "held_cause": snapshot.held_cause,
        "how_to_leave": snapshot.how_to_leave,
        "retry_at": None if retry_at is None else log.rfc3339(retry_at),
        "retry_in_s": None if retry_at is None else round(max(0.0, retry_at - now), 1),
        "waiting_for": snapshot.waiting_for,
        "exits": [record.to_dict() for record in snapshot.exits],
        "burst": snapshot.burst,
        "window_s": snapshot.window_s,
        "action": snapshot.action,
    }


class _CpuSample:
    """CPU of a process and all its descendants over at least _CPU_SAMPLE_S, begun now."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.tree = procfs.tree(pid)
        self.began = time.monotonic()
        self.before = sum(procfs.cpu_ns(member) for member in self.tree)

    def finish(self) -> dict[str, Any] | None:
        """RSS and CPU of the tree, once the sample has lasted long enough; None if it is gone."""
        if not self.tree:
            return None
        time.sleep(max(0.0, _CPU_SAMPLE_S - (time.monotonic() - self.began)))
        cpu_ns = sum(procfs.cpu_ns(member) for member in self.tree) - self.before
        took = time.monotonic() - self.began
        stats = [fields for fields in map(procfs.stat_fields, self.tree) if fields]
        ticks, page = os.sysconf("SC_CLK_TCK"), os.sysconf("SC_PAGE_SIZE")
        return {
            "processes": len(stats),
            "rss_bytes": sum(map(procfs.rss_pages, stats)) * page,
            "cpu_percent": round(cpu_ns / 1e7 / took, 1),
            "cpu_seconds": round(sum(map(procfs.cpu_ticks, stats)) / ticks, 2),
        }


def _health(run_dir: str, program: str, port: int) -> dict[str, Any]:
    """Liveness (what the HEALTHCHECK answers) as `ok` and `reason`, the two others beside it."""
    answers: dict[str, dict[str, Any]] = {}

    def ask(probe: str) -> None:
        passed, reason = health.check(run_dir, program, port, probe, _PROBE_TIMEOUT_S)
        answers[probe] = {"ok": passed, "reason": reason}

    askers = [threading.Thread(target=ask, args=(probe,)) for probe in health.PROBES]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join()
    return {**answers["live"], "startup": answers["startup"], "ready": answers["ready"]}


def _releases(record_dir: str) -> dict[str, Any] | None:
    """The release the state belongs to now, and the one before it."""
    history = releases.read(record_dir)
    if history is None:
        return None
    current, previous = history.current, history.previous
    return {
        "current": current.to_json() if current else None,
        "previous": previous.to_json() if previous else None,
        "checkpoints": len(checkpoints.listing(record_dir)),
    }


def collect(run_dir: str, program: str, port: int, record_dir: str) -> dict[str, Any]:
    now = time.time()
    snapshot = guardstate.read(run_dir)
    seen = snapshot.pid if snapshot is not None and snapshot.state is State.RUNNING else None
    sample = _CpuSample(seen) if seen else None
    program_info, error = _program(run_dir, program)
    pid = program_info.get("pid") if program_info else None
    if pid and (sample is None or sample.pid != pid):
        sample = _CpuSample(pid)  # restarted since the guard wrote, or the guard did not know yet
    return {
        "time": log.rfc3339(now),
        "startup": _report_summary(run_dir),
        "releases": _releases(record_dir),
        "supervisord": {"answering": error is None, "error": error},
        "program": program_info,
        "crash_guard": _guard(snapshot, now),
        "resources": sample.finish() if pid and sample is not None else None,
        "health": _health(run_dir, program, port),
    }


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h{minutes:02d}m"
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _seconds(value: Any) -> str:
    return f"{value:g}s" if isinstance(value, int | float) else "?"


def render_text(data: dict[str, Any]) -> str:
    lines: list[str] = []
    startup = data.get("startup")
    if startup:
        user = startup.get("user") or {}
        warnings = startup.get("warnings") or []
        lines.append(
            f"init {startup.get('version')} ({startup.get('mode')} mode), user {user.get('name')} "
            f"({user.get('uid')}:{user.get('gid')}), booted in {startup.get('duration_ms')} ms, "
            f"{len(warnings)} warning{'s' if len(warnings) != 1 else ''}"
        )
        phases = ", ".join(f"{phase['name']} {phase['status']}" for phase in startup.get("phases") or [])
        if phases:
            lines.append(f"  phases: {phases}")
        lines.extend(f"  warning ({item['phase']}): {item['message']}" for item in warnings)
        held = startup.get("held")
        if isinstance(held, dict):
            lines.append(f"  held at boot: {held.get('reason')}")
    else:
        lines.append("startup report: not found (is the init running in this container?)")
    program = data.get("program")
    supervisord = data.get("supervisord") or {}
    if program:
        said = f"{program['name']}: {program['state']}"
        if program.get("pid"):
            said += f", pid {program['pid']}, up {_duration(program.get('uptime_s'))}"
        elif program.get("exit_code") is not None:
            said += f", last exit code {program['exit_code']}"
        if program.get("spawn_error"):
            said += f" ({program['spawn_error']})"
        lines.append(said)
    else:
        lines.append(f"supervisord: {supervisord.get('error')}")
    guard = data.get("crash_guard")
    if guard:
        said = f"crash guard: {guard['state']}, {guard.get('restarts') or 0} restarts"
        if guard.get("requested_restarts"):
            said += f" (and {guard['requested_restarts']} it asked for)"
        said += (
            f", {len(guard['exits'])} of {guard.get('burst')} exits within {_seconds(guard.get('window_s'))}"
        )
        if guard["state"] in (State.BACKOFF, State.WAITING):
            delay = _seconds(guard.get("delay_s"))
            said += f", next start in {_seconds(guard.get('restart_in_s'))} (delay {delay})"
        if guard["state"] == State.WAITING:
            said += f"\n  waiting for: {guard.get('waiting_for')}"
        if guard["state"] == State.HANDOFF:
            said += "\n  asking the gateway whether it requested this restart"
        if guard.get("held_reason") and guard["state"] in guardstate.HOLDING:
            said += f"\n  held: {guard['held_reason']}"
            if guard.get("retry_at"):
                said += (
                    f"\n  tried once more after its cool-down, in {_duration(guard.get('retry_in_s'))} "
                    f"({guard['retry_at']})"
                )
            if guard["state"] == State.HELD and program:
                way_out = guard.get("how_to_leave") or guardstate.leave_hold_hint(program["name"])
                said += f"\n  to leave hold: {way_out}"
        lines.append(said)
    resources = data.get("resources")
    if resources:
        lines.append(
            f"resources: {resources['processes']} process{'es' if resources['processes'] != 1 else ''}, "
            f"RSS {resources['rss_bytes'] / 1048576:.1f} MiB, CPU {resources['cpu_percent']}% "
            f"({resources['cpu_seconds']} s total)"
        )
    ran = data.get("releases") or {}
    for which in ("current", "previous"):
        if ran.get(which):
            release, since = ran[which], log.rfc3339(ran[which]["since"])
            lines.append(f"{which} release: {release['package']}@{release['version']} since {since}")
    if ran:
        lines.append(f"checkpoints: {ran.get('checkpoints')} (`checkpoints` lists them)")
    result = data.get("health") or {}
    lines.append(f"health: {health.verdict(bool(result.get('ok')), str(result.get('reason')))}")
    for probe in ("startup", "ready"):
        item = result.get(probe) or {}
        lines.append(f"  {probe}: {health.verdict(bool(item.get('ok')), str(item.get('reason')))}")
    return "\n".join(lines)


def prometheus(run_dir: str, namespace: str, out: TextIO | None = None) -> int:
    """The metrics now; exit 0 when an init has booted with this run dir (its report is there)."""
    (out or sys.stdout).write(metrics.render(run_dir, namespace))
    return Exit.OK if report.read(run_dir) is not None else Exit.FAILED


def main(settings: Settings, program: str, record_dir: str, as_json: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    data = collect(settings.run_dir, program, settings.program_port, record_dir)
    if as_json:
        json.dump(data, out, indent=2)
        out.write("\n")
    else:
        out.write(text.valid(render_text(data)) + "\n")
    return Exit.OK if data["supervisord"]["answering"] else Exit.FAILED
