"""`status`: what an operator wants to know in one look, as text or `--json`.

Sources: the startup report (`RUN/startup-report.json`), supervisord (`getProcessInfo` over the
control socket), the crash guard's state file (`RUN/crashguard.json`), psutil for the program's
process tree (RSS and CPU) and the health check. Exit 0 when supervisord answered, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
import time
import xmlrpc.client
from typing import Any, TextIO

from ..common import log, report
from . import health

_RPC_TIMEOUT_S = 2.0
_CPU_SAMPLE_S = 0.2


def _report_summary(run_dir: str) -> dict[str, Any] | None:
    data = report.read(run_dir)
    if data is None:
        return None
    return {
        "version": data.get("version"),
        "mode": data.get("mode"),
        "user": data.get("user"),
        "duration_ms": data.get("duration_ms"),
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
    try:
        info = health.process_info(run_dir, program, _RPC_TIMEOUT_S)
    except health.SupervisorUnavailable as error:
        return None, str(error)
    except xmlrpc.client.Fault as fault:
        return None, f"supervisord does not know {program} ({fault.faultString})"
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


def _guard(run_dir: str, now: float) -> dict[str, Any] | None:
    state = health.guard_state(run_dir)
    if state is None:
        return None
    restart_at = state.get("restart_at")
    return {
        "state": state.get("state"),
        "since": state.get("since_at"),
        "restarts": state.get("restarts"),
        "delay_s": state.get("delay_s"),
        "restart_in_s": round(max(0.0, restart_at - now), 1) if isinstance(restart_at, int | float) else None,
        "held_reason": state.get("held_reason"),
        "exits": state.get("exits") or [],
        "burst": state.get("burst"),
        "window_s": state.get("window_s"),
        "action": state.get("action"),
    }


def _resources(pid: int | None) -> dict[str, Any] | None:
    """RSS and CPU of the process and all its descendants (CPU sampled over 0.2 s)."""
    if not pid:
        return None
    import psutil

    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    alive = []
    for process in tree:
        try:
            process.cpu_percent(None)
            alive.append(process)
        except psutil.Error:
            continue
    time.sleep(_CPU_SAMPLE_S)
    rss = 0
    cpu_percent = 0.0
    cpu_seconds = 0.0
    counted = 0
    for process in alive:
        try:
            with process.oneshot():
                cpu_percent += process.cpu_percent(None)
                rss += process.memory_info().rss
                times = process.cpu_times()
                cpu_seconds += times.user + times.system
            counted += 1
        except psutil.Error:
            continue
    return {
        "processes": counted,
        "rss_bytes": rss,
        "cpu_percent": round(cpu_percent, 1),
        "cpu_seconds": round(cpu_seconds, 2),
    }


def collect(run_dir: str, program: str, port: int) -> dict[str, Any]:
    now = time.time()
    program_info, error = _program(run_dir, program)
    healthy, reason = health.check(run_dir, program, port, timeout_s=0.5)
    return {
        "time": log.rfc3339(now),
        "startup": _report_summary(run_dir),
        "supervisord": {"answering": error is None, "error": error},
        "program": program_info,
        "crash_guard": _guard(run_dir, now),
        "resources": _resources(program_info.get("pid") if program_info else None),
        "health": {"ok": healthy, "reason": reason},
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
    else:
        lines.append("startup report: not found (is the init running in this container?)")
    program = data.get("program")
    supervisord = data.get("supervisord") or {}
    if program:
        text = f"{program['name']}: {program['state']}"
        if program.get("pid"):
            text += f", pid {program['pid']}, up {_duration(program.get('uptime_s'))}"
        elif program.get("exit_code") is not None:
            text += f", last exit code {program['exit_code']}"
        if program.get("spawn_error"):
            text += f" ({program['spawn_error']})"
        lines.append(text)
    else:
        lines.append(f"supervisord: {supervisord.get('error')}")
    guard = data.get("crash_guard")
    if guard:
        text = f"crash guard: {guard['state']}, {guard.get('restarts') or 0} restarts"
        text += (
            f", {len(guard['exits'])} of {guard.get('burst')} exits within {_seconds(guard.get('window_s'))}"
        )
        if guard["state"] == "backoff":
            delay = _seconds(guard.get("delay_s"))
            text += f", next start in {_seconds(guard.get('restart_in_s'))} (delay {delay})"
        if guard.get("held_reason") and guard["state"] in ("held", "refused"):
            text += f"\n  held: {guard['held_reason']}"
            if guard["state"] == "held" and program:
                text += f"\n  to leave hold: fix the cause, then `supervisorctl start {program['name']}`"
        lines.append(text)
    resources = data.get("resources")
    if resources:
        lines.append(
            f"resources: {resources['processes']} process{'es' if resources['processes'] != 1 else ''}, "
            f"RSS {resources['rss_bytes'] / 1048576:.1f} MiB, CPU {resources['cpu_percent']}% "
            f"({resources['cpu_seconds']} s total)"
        )
    result = data.get("health") or {}
    reason = str(result.get("reason") or "")
    lines.append(f"health: {reason}" if result.get("ok") else f"health: failing: {reason}")
    return "\n".join(lines)


def main(settings: Any, program: str, as_json: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    data = collect(settings.run_dir, program, settings.program_port)
    if as_json:
        json.dump(data, out, indent=2)
        out.write("\n")
    else:
        out.write(render_text(data) + "\n")
    return 0 if data["supervisord"]["answering"] else 1
