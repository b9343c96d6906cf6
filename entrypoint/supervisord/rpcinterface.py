"""supervisord's XML-RPC interface, with an operator's stop that always stops.

supervisord loads the factory named in its config (`[rpcinterface:supervisor]`, rendered by
`pid1/supervision.py`) at its start; `supervisorctl`, `status` and the crash guard call it.

supervisord's own `stopProcess` refuses a program that is not running (NOT_RUNNING): one the crash
guard is about to start again (EXITED, during its backoff or while it asks the program whether the
exit was a restart it requested) or one that could not be spawned (FATAL). `supervisorctl stop`
then answered "not running", and the guard started the program anyway when its delay ended. Here
such a stop moves the program to STOPPED, as supervisord does for a program stopped in its own
BACKOFF: supervisord emits PROCESS_STATE_STOPPED, which the crash guard takes as an operator's stop
(it cancels what it had planned and never starts the program again by itself); `status` shows
STOPPED, and `start` works as always.
"""

from __future__ import annotations

from typing import Any

from supervisor.rpcinterface import SupervisorNamespaceRPCInterface
from supervisor.states import ProcessStates

# Not running, and nothing in supervisord will start it again: a stop has nothing to signal.
_NOT_RUNNING = (ProcessStates.EXITED, ProcessStates.FATAL)


def _stop_idle(process: Any) -> bool:
    """Move a program that is not running to STOPPED; True when it was such a program."""
    if process.get_state() not in _NOT_RUNNING:
        return False
    process.change_state(ProcessStates.STOPPED)
    return True


class OperatorStops(SupervisorNamespaceRPCInterface):
    """supervisord's `supervisor.*` namespace; its stops also stop programs that are not running."""

    def stopProcess(self, name: str, wait: bool = True) -> Any:
        self._update("stopProcess")
        _, process = self._getGroupAndProcess(name)
        if process is not None and _stop_idle(process):
            return True
        return super().stopProcess(name, wait)

    def stopProcessGroup(self, name: str, wait: bool = True) -> Any:
        self._update("stopProcessGroup")
        group = self.supervisord.process_groups.get(name)
        for process in group.processes.values() if group is not None else ():
            _stop_idle(process)
        return super().stopProcessGroup(name, wait)

    def stopAllProcesses(self, wait: bool = True) -> Any:
        self._update("stopAllProcesses")
        for group in self.supervisord.process_groups.values():
            for process in group.processes.values():
                _stop_idle(process)
        return super().stopAllProcesses(wait)

    # supervisord documents its methods (system.methodHelp, methodSignature) from their docstrings.
    stopProcess.__doc__ = SupervisorNamespaceRPCInterface.stopProcess.__doc__
    stopProcessGroup.__doc__ = SupervisorNamespaceRPCInterface.stopProcessGroup.__doc__
    stopAllProcesses.__doc__ = SupervisorNamespaceRPCInterface.stopAllProcesses.__doc__


def make_rpcinterface(supervisord: Any, **config: Any) -> OperatorStops:
    """The factory supervisord calls with itself and the section's other options (none)."""
    return OperatorStops(supervisord)
