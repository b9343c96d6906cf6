"""The crash guard's orders (`rundir.GUARD_PLAN`): which program it guards, with which
restart policy, where the boot ledger is, how to log, how to ask the program whether an exit was a
restart it requested, which refusals of the program to wait out, and what supervisord's process
publishes of the metrics.

Who uses it: the init (PID 1, as the target user) writes it before it starts supervisord; the crash
guard, started by supervisord as the target user, reads it first thing. The guard does not read the
init's settings from its environment: supervisord's environment is the gateway's, which must not
carry the init's own variables.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from . import rundir
from .guardstate import int_or_none
from .plans import CrashLoopAction, RestartPolicy

# In `HandoffPlan.consume`, the argument replaced by the exited process' pid.
PID = "PID"


@dataclass(frozen=True)
class HandoffPlan:
    """The program's restart-handoff contract: `capabilities` (argv) says whether its CLI offers
    it, `consume` (argv, `PID` replaced) whether an exit was a restart it asked for. Each call gets
    `timeout_s`. The capabilities answer is kept in `cache_path` for `identity` (the installed
    program and its CLI), so that later boots of the same image never pay the CLI's cold start for
    it. Empty argv: the program has no such contract."""

    capabilities: tuple[str, ...]
    consume: tuple[str, ...]
    timeout_s: float
    cache_path: str
    identity: str


@dataclass(frozen=True)
class LeaseRule:
    """A refusal to start that passes by itself (another owner's lease, still active): an exit
    whose output contains one of `markers` is started again every `retry_s`, not counted, for at
    most `wait_max_s` from the first one."""

    markers: tuple[str, ...] = ()
    retry_s: float = 20.0
    wait_max_s: float = 360.0


@dataclass(frozen=True)
class MetricsPlan:
    """The metrics supervisord's process publishes: their names' `namespace` (the application's),
    always as the run dir's textfile, and over HTTP on `listen` (host, port) when it is set, which
    the variable `setting` does (named when the address cannot be listened on)."""

    namespace: str
    setting: str
    listen: tuple[str, int] | None = None


@dataclass(frozen=True)
class GuardPlan:
    program: str
    policy: RestartPolicy
    ledger_path: str
    log_format: str
    log_level: str
    handoff: HandoffPlan | None = None
    lease: LeaseRule = field(default_factory=LeaseRule)
    # The memory cgroup's OOM-kill count as the boot began (None: no memory cgroup): an OOM kill of
    # the program's first run is told from it, whenever the guard hears of that run.
    oom_kills_at_boot: int | None = None
    metrics: MetricsPlan | None = None  # None: none are published (a test's guard)


def write(run_dir: str, plan: GuardPlan) -> None:
    """Raises OSError: without its orders the guard cannot run, nor can supervisord usefully."""
    rundir.replace_file(os.path.join(run_dir, rundir.GUARD_PLAN), rundir.json_bytes(asdict(plan)), mode=0o600)


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError("a list of strings")
    return tuple(value)


def _handoff(data: Any) -> HandoffPlan | None:
    if data is None:  # a program without the contract
        return None
    return HandoffPlan(
        capabilities=_strings(data["capabilities"]),
        consume=_strings(data["consume"]),
        timeout_s=float(data["timeout_s"]),
        cache_path=str(data["cache_path"]),
        identity=str(data["identity"]),
    )


def _metrics(data: Any) -> MetricsPlan | None:
    if data is None:
        return None
    listen = data["listen"]
    address = None if listen is None else (str(listen[0]), int(listen[1]))
    return MetricsPlan(str(data["namespace"]), str(data["setting"]), address)


def read(run_dir: str) -> GuardPlan | None:
    """The plan the init wrote, or None when there is none or it is not one."""
    data = rundir.read_json(run_dir, rundir.GUARD_PLAN)
    if data is None:
        return None
    try:
        policy: dict[str, Any] = dict(data["policy"])
        action = CrashLoopAction(policy.pop("crashloop_action"))
        lease = data["lease"]
        return GuardPlan(
            program=str(data["program"]),
            policy=RestartPolicy(**policy, crashloop_action=action),
            ledger_path=str(data["ledger_path"]),
            log_format=str(data["log_format"]),
            log_level=str(data["log_level"]),
            handoff=_handoff(data.get("handoff")),
            lease=LeaseRule(_strings(lease["markers"]), float(lease["retry_s"]), float(lease["wait_max_s"])),
            oom_kills_at_boot=int_or_none(data["oom_kills_at_boot"]),
            metrics=_metrics(data.get("metrics")),
        )
    except (KeyError, TypeError, ValueError, IndexError):
        return None
