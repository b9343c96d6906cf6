"""The ways to run the gateway that `bench/container` compares, and what it reads of each run.

Who runs it: `bench/container`, as root, on the host that runs the Docker engine (memory and
process start times are read in the host's /proc), once the images are built. Every container is
started with `docker run` on the bench's internal network, with the resolv.conf that fails every
lookup at once and fresh named volumes, so that both sides start from the same footing and
nothing leaves the machine; each is removed with its volumes when its measurements are done.
"""

from __future__ import annotations

import os
import re
import secrets
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.e2e.harness import (
    TEST_RESOLV_CONF,
    ExitWatch,
    answers_healthz,
    container_logs,
    docker,
    namespace_pids,
    parse_time,
    supervisord_log,
    wait_until,
)

ANSWER_TIMEOUT_S = 300.0
READY_LINE = "[gateway] ready"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_TRACE = re.compile(r"startup trace: (?!process\.bootstrap\.)(\S+) ([0-9.]+)ms")


@dataclass(frozen=True)
class Side:
    """One way to run the gateway: its image, `docker run` options, and where fresh volumes go."""

    key: str
    image: str
    options: tuple[str, ...]
    volumes: tuple[str, ...]
    init: bool  # moltbot-init is PID 1: its lines, supervisord's log and its tools are there


def ours(image: str, key: str = "ours", *, read_only: bool = False) -> Side:
    # compose.yml's stop_grace_period; compose.hardened.yml's read-only image and tmpfs.
    options: tuple[str, ...] = ("--stop-timeout", "12")
    if read_only:
        options += ("--read-only", "--tmpfs", "/tmp", "--tmpfs", "/run/moltbot:mode=0755")
    return Side(key, image, options, ("/var/lib/moltbot", "/home/node/clawd"), True)


def upstream(image: str) -> Side:
    token = secrets.token_urlsafe(32)
    options = ("--init", "-e", f"OPENCLAW_GATEWAY_TOKEN={token}")
    return Side("upstream", image, options, ("/home/node/.openclaw",), False)


# -- one container ---------------------------------------------------------------------------------


def address(name: str, network: str) -> str:
    return docker(
        "inspect",
        "--format",
        f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}',
        name,
        check=True,
    ).stdout.strip()


def started_at(name: str) -> float:
    return parse_time(docker("inspect", "--format", "{{.State.StartedAt}}", name, check=True).stdout)


def answered(name: str, network: str) -> float:
    """When the gateway first answered /healthz with its JSON (polled every 0.1 s)."""
    ip = address(name, network)
    return wait_until(
        f"{name} to answer /healthz", lambda: answers_healthz(ip) and time.time(), ANSWER_TIMEOUT_S, 0.1
    )


def ready(name: str, count: int) -> None:
    """Until the gateway logged its `ready` line `count` times (once per start), then 2 s more."""

    def logged() -> bool:
        return sum(READY_LINE in line.text for line in container_logs(name)) >= count

    wait_until(f"{name} to be ready", logged, 120, 0.5)
    time.sleep(2)


def processes(name: str) -> list[dict[str, Any]]:
    """Every process of the container, read in the host's /proc: memory, start, parent, program."""
    pids = namespace_pids(name)
    by_host = {host: pid for pid, host in pids.items()}
    found = []
    for pid, host in sorted(pids.items()):
        try:
            status = dict(
                line.split(":", 1) for line in Path(f"/proc/{host}/status").read_text().splitlines()
            )
            rollup = Path(f"/proc/{host}/smaps_rollup").read_text().splitlines()[1:]
            stat = Path(f"/proc/{host}/stat").read_text().rsplit(")", 1)[1].split()
            argv = Path(f"/proc/{host}/cmdline").read_bytes().split(b"\0")
            exe = os.readlink(f"/proc/{host}/exe")
        except (OSError, ValueError):
            continue  # gone meanwhile
        memory = {
            key.strip(): int(value.split()[0]) for key, value in (line.split(":", 1) for line in rollup)
        }
        found.append(
            {
                "pid": pid,
                "ppid": by_host.get(int(status["PPid"]), 0),
                "exe": exe,
                "argv": [part.decode(errors="replace") for part in argv if part],
                "start_ticks": int(stat[19]),  # field 22 of /proc/PID/stat
                "host_pid": host,
                "rss_kb": int(status.get("VmRSS", "0 kB").split()[0]),
                "anon_kb": int(status.get("RssAnon", "0 kB").split()[0]),
                "file_kb": int(status.get("RssFile", "0 kB").split()[0]),
                "pss_kb": memory.get("Pss", 0),
            }
        )
    return found


def host_busy_s() -> float:
    """CPU time this host spent on anything but idling (steal included: other tenants of the VM)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(
        int, Path("/proc/stat").read_text().split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / TICKS_PER_S


def cgroup_cpu_s(pid_on_host: int) -> float | None:
    """CPU time of the cgroup of a process (its container), cgroup v1 or v2; None when unknown."""
    for line in Path(f"/proc/{pid_on_host}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            return int(Path(f"/sys/fs/cgroup/{controllers}{path}/cpuacct.usage").read_text()) / 1e9
        if not controllers:
            stat = Path(f"/sys/fs/cgroup{path}/cpu.stat").read_text().split()
            return int(stat[stat.index("usage_usec") + 1]) / 1e6
    return None


def is_node(process: dict[str, Any]) -> bool:
    return os.path.basename(process["exe"]).startswith("node")


def gateway_of(found: list[dict[str, Any]]) -> dict[str, Any]:
    """The gateway: the largest node process whose parent is not node (its workers' parent is)."""
    nodes = {process["pid"]: process for process in found if is_node(process)}
    roots = [process for process in nodes.values() if process["ppid"] not in nodes]
    return max(roots, key=lambda process: process["rss_kb"])


def label(process: dict[str, Any]) -> str:
    argv = process["argv"] or [process["exe"]]
    words = [os.path.basename(argv[0]), *argv[1:2]]
    return ("PID 1: " if process["pid"] == 1 else "") + " ".join(words)


def memory(found: list[dict[str, Any]]) -> dict[str, Any]:
    """The init's side (PID 1 and every process below it that is not node) and the gateway's, RSS
    and PSS. A process `docker exec` started (a HEALTHCHECK probe caught mid-flight) is neither."""
    below = {process["ppid"]: [] for process in found}
    for process in found:
        below[process["ppid"]].append(process)
    resident, pending = [], [process for process in found if process["pid"] == 1]
    while pending:
        process = pending.pop()
        resident.append(process)
        pending.extend(below.get(process["pid"], ()))
    init_side = [process for process in resident if not is_node(process)]
    gateway_side = [process for process in found if is_node(process)]
    return {
        "init": [
            {"process": label(p), **{key: p[key] for key in ("rss_kb", "anon_kb", "file_kb", "pss_kb")}}
            for p in init_side
        ],
        "init_rss_kb": sum(p["rss_kb"] for p in init_side),
        "init_pss_kb": sum(p["pss_kb"] for p in init_side),
        "gateway_rss_kb": sum(p["rss_kb"] for p in gateway_side),
        "gateway_processes": len(gateway_side),
    }


def spawn_timeline(name: str, since: float) -> dict[str, float | None]:
    """Milliseconds from Docker's StartedAt to each step of the init's start, from its own lines
    and supervisord's log (steps a later init no longer has stay None)."""
    lines = [
        value
        for line in container_logs(name)
        if (value := line.json()) and parse_time(value["time"]) >= since - 0.5
    ]
    at = {line["event"]: parse_time(line["time"]) for line in reversed(lines)}  # the first of each
    report = next((line for line in lines if line["event"] == "startup_report"), None)
    spawned = next(
        (t for t, text in supervisord_log(name) if t >= since - 0.5 and "spawned: 'gateway'" in text), None
    )
    moments = {
        "boot began": at["startup_report"] - report["duration_ms"] / 1000 if report else None,
        "startup_report": at.get("startup_report"),
        "supervisor_started": at.get("supervisor_started"),
        "supervisord spawned the gateway": spawned,
        "gateway_running": at.get("gateway_running"),
    }
    return {
        step: None if moment is None else round((moment - since) * 1000, 1)
        for step, moment in moments.items()
    }


TOOLS_SCRIPT = """
for tool in status health; do
  i=0
  while [ $i -le {calls} ]; do
    t0=$(date +%s%N); moltbot-init $tool >/dev/null 2>&1; t1=$(date +%s%N)
    echo "$tool $(( (t1 - t0) / 1000 ))"; i=$((i + 1))
  done
done
"""


def tools_latency(name: str, calls: int = 10) -> dict[str, float]:
    """Median wall time of `moltbot-init status` and `health` inside the container, in ms: one
    call first (a warm page cache), then `calls` measured ones (each includes ~1 ms of `date`)."""
    out = docker("exec", name, "sh", "-c", TOOLS_SCRIPT.format(calls=calls), check=True, timeout=300).stdout
    times: dict[str, list[int]] = {}
    for line in out.split("\n"):
        if line.strip():
            tool, micros = line.split()
            times.setdefault(tool, []).append(int(micros))
    return {tool: round(statistics.median(values[1:]) / 1000, 1) for tool, values in times.items()}


def settle(pid1_host_pid: int, idle_cpus: float = 0.05, limit_s: float = 60.0) -> float | None:
    """Wait until the container uses less than `idle_cpus` over a second (its cgroup's CPU time),
    `limit_s` at most; seconds waited, or None when it never settled."""
    began = time.monotonic()
    used = cgroup_cpu_s(pid1_host_pid)
    while used is not None and time.monotonic() - began < limit_s:
        time.sleep(1.0)
        now = cgroup_cpu_s(pid1_host_pid)
        if now is None or now - used < idle_cpus:
            return round(time.monotonic() - began, 1)
        used = now
    return None


def timed_stop(name: str, gateway_host_pid: int) -> dict[str, Any]:
    """`docker stop`: its wall time, the exit code, and the gateway's own part (its `received
    SIGTERM` line to its process' exit, seen in the host's /proc)."""
    watch = ExitWatch(gateway_host_pid)
    asked, began = time.time(), time.monotonic()
    docker("stop", name, check=True, timeout=120)
    took = time.monotonic() - began
    code = int(docker("inspect", "--format", "{{.State.ExitCode}}", name, check=True).stdout)
    exited = watch.wait()
    sigterm = next(
        (
            line.at
            for line in container_logs(name)
            if line.at >= asked - 1 and "received SIGTERM" in line.text and not line.json()
        ),
        None,
    )
    own = None if sigterm is None or exited is None else round(exited - sigterm, 3)
    return {"docker_stop_s": round(took, 3), "exit_code": code, "gateway_own_s": own}


def start(side: Side, name: str, network: str, *extra: str) -> float:
    """`docker run -d` of the side with fresh volumes; returns when it was asked (epoch)."""
    argv = ["run", "-d", "--name", name, "--network", network, "--hostname", "moltbot"]
    argv += ["-v", f"{TEST_RESOLV_CONF}:/etc/resolv.conf:ro"]
    for index, path in enumerate(side.volumes):
        argv += ["-v", f"{name}-{index}:{path}"]
    asked = time.time()
    docker(*argv, *side.options, *extra, side.image, check=True)
    return asked


def remove(side: Side, name: str) -> None:
    docker("rm", "--force", "--volumes", name)
    docker("volume", "rm", "--force", *(f"{name}-{index}" for index in range(len(side.volumes))))


def measure(side: Side, name: str, network: str, restart: bool) -> dict[str, Any]:
    """One fresh container of the side: to HTTP, memory, spawn, tools, first stop (then a restart)."""
    result: dict[str, Any] = {"side": side.key, "load_before": os.getloadavg()[0]}
    busy = host_busy_s()
    try:
        asked = start(side, name, network)
        began, first = started_at(name), answered(name, network)
        result.update(run_to_http_s=round(first - asked, 3), start_to_http_s=round(first - began, 3))
        ready(name, 1)
        found = processes(name)
        gateway = gateway_of(found)
        result["memory"] = memory(found)
        pid1 = next(process for process in found if process["pid"] == 1)
        result["pid1_to_gateway_ms"] = round(
            (gateway["start_ticks"] - pid1["start_ticks"]) * 1000 / TICKS_PER_S
        )
        if side.init:
            result["spawn_ms"] = spawn_timeline(name, began)
            # Right after "ready", while the gateway still stages its Control UI and loads its
            # sidecars (both CPUs busy), then once it has settled, as an operator finds it.
            result["tools_busy_ms"] = tools_latency(name)
            result["settled_s"] = settle(pid1["host_pid"])
            result["tools_ms"] = tools_latency(name)
        # What the rest of the machine used meanwhile, in CPUs (docker's own work included).
        own = cgroup_cpu_s(pid1["host_pid"])
        if own is not None:
            result["others_cpus"] = round((host_busy_s() - busy - own) / (time.time() - asked), 2)
        result["stop_fresh"] = timed_stop(name, gateway["host_pid"])
        if restart:
            asked = time.time()
            docker("start", name, check=True)
            result["restart_to_http_s"] = round(answered(name, network) - asked, 3)
            ready(name, 2)
            result["stop_restarted"] = timed_stop(name, gateway_of(processes(name))["host_pid"])
    finally:
        remove(side, name)
    result["load_after"] = os.getloadavg()[0]
    return result


def startup_phases(side: Side, name: str, network: str) -> dict[str, tuple[float, float]]:
    """The gateway's own startup trace (OPENCLAW_GATEWAY_STARTUP_TRACE=1), a fresh start against
    a restart of the same container: {phase: (fresh ms, restart ms)}, each phase summed."""
    try:
        start(side, name, network, "-e", "OPENCLAW_GATEWAY_STARTUP_TRACE=1")
        answered(name, network)
        ready(name, 1)
        docker("stop", name, check=True, timeout=120)
        docker("start", name, check=True)
        restarted = started_at(name)
        answered(name, network)
        ready(name, 2)
        phases: dict[str, list[float]] = {}
        for line in container_logs(name):
            for phase, ms in _TRACE.findall(line.text):
                phases.setdefault(phase, [0.0, 0.0])[int(line.at >= restarted)] += float(ms)
    finally:
        remove(side, name)
    return {phase: (round(fresh, 1), round(again, 1)) for phase, (fresh, again) in phases.items()}
