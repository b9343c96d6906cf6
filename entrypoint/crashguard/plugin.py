"""The crash guard plugged into supervisord: its events handed to the guard's worker, in order.

Where it differs: supervisord's main thread: it calls `make_rpcinterface` while it starts, because
its config names it (`[rpcinterface:crashguard]`, rendered by `pid1/supervision.py`), and again at
each reload (SIGHUP); then `_feed` for each event. The process that ran supervisord calls `finish`
once supervisord has returned (`supervisord/serve`).

An XML-RPC interface factory is the one hook supervisord offers to code in its own process, and
it is called at the right moment: after supervisord has reset its event bus (at its start and at
each reload), before it starts any program. The guard subscribes to that bus, where supervisord's
event listeners get their events from: the program's state changes, its output
(`stdout_events_enabled`, `stderr_events_enabled`) and TICK_5. Subscribing replaces an event
listener process, the listener protocol and a third start of this program; each event is the
`Event` a listener would have parsed from the same payload. Callbacks run in supervisord's loop,
between its polls: `_feed` only renders the payload and queues it, and the worker
(`runtime.Runtime`, one thread) does the rest, talking to supervisord over its control socket
like any client. One guard per process: it outlives supervisord's reloads with its state. Sharing
the process has one more consequence: supervisord reaps each of its children, and the guard's
(the program's CLI) are among them; the factory limits that to the programs supervisord started.
"""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from supervisor import events

from ..common import guardplan, log
from .runtime import Event, Runtime

# What the guard reads: every state change of the program, its output, and a clock.
SUBSCRIBED = (events.ProcessStateEvent, events.ProcessLogEvent, events.Tick5Event)
# After supervisord has stopped, how long the worker gets to write what its last events lead to.
FINISH_WITHIN_S = 5.0

_logger = log.get("crashguard")
_runtime: Runtime | None = None
_names: dict[type, str] = {}


class CrashGuardInterface:
    """The guard's XML-RPC namespace (`crashguard`), which has no method: operators and tools
    read the guard's state file (`status`, `health`), which says more."""


def make_rpcinterface(supervisord: Any, run_dir: str = "") -> CrashGuardInterface:
    """The factory supervisord calls with itself and the section's other options (`run_dir`,
    where the init left the guard's orders). Without orders supervisord does not start: a
    program nobody restarts would look supervised."""
    global _runtime
    if _runtime is None:
        plan = guardplan.read(run_dir) if run_dir else None
        if plan is None:
            log.event(
                _logger,
                "error",
                "crash_guard_without_plan",
                f"the crash guard found no orders in {run_dir or 'its section'}: the init writes "
                "them before it starts supervisord",
                run_dir=run_dir,
            )
            raise ValueError(f"no crash guard plan in {run_dir!r}")
        log.configure(plan.log_format, plan.log_level)
        # The state file says which supervisord it describes: this process, starting now.
        _runtime = Runtime(run_dir, plan, supervisord_started=time.time(), supervisord_pid=os.getpid())
        _runtime.start()
    for kind in SUBSCRIBED:
        if (kind, _feed) not in events.callbacks:  # one subscription, however often it is called
            events.subscribe(kind, _feed)
    # supervisord reaps every child of its process (waitpid(-1)), which now has the guard's too:
    # the program's CLI, whose exit code says whether it offers restart handoffs. Its own only.
    supervisord.options.waitpid = functools.partial(_reap_programs, supervisord.options)
    return CrashGuardInterface()


def _reap_programs(options: Any) -> tuple[int | None, int | None]:
    """supervisord's `waitpid`, for the programs it started only (it knows them by pid)."""
    for pid in list(options.pidhistory):
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # reaped already: nothing to report
            continue
        if reaped:
            return reaped, status
    return None, None


def _feed(event: events.Event) -> None:
    """supervisord's callback, in its loop: the program's output into the backlog, as the bytes it
    wrote; any other event rendered as a listener gets it, and queued."""
    runtime = _runtime
    if runtime is None:
        return
    if isinstance(event, events.ProcessLogEvent):
        data = event.data if isinstance(event.data, bytes) else str(event.data).encode()
        runtime.output(event.process.config.name, str(event.channel), data)
        return
    kind = type(event)
    name = _names.get(kind)
    if name is None:
        name = _names[kind] = str(events.getEventNameByType(kind))
    runtime.submit(event_of(name, event.payload(), time.time()))


def event_of(name: str, payload: str, now: float) -> Event:
    """An event as supervisord's listeners get it: the payload's `key:value` tokens (a value may
    itself contain ':')."""
    pairs = (token.split(":", 1) for token in payload.split())
    return Event(name, {pair[0]: pair[1] for pair in pairs if len(pair) == 2}, now)


def current() -> Runtime | None:
    """The guard this process runs (once supervisord has loaded it, until `finish`), or None."""
    return _runtime


def finish() -> None:
    """Once supervisord has returned: the worker handles what is queued, then ends, and the guard
    with it (a supervisord started again in this process would load a fresh one)."""
    global _runtime
    runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.finish(FINISH_WITHIN_S)
