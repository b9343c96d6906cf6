"""The standby's life: become the user, import what supervisord serves with, wait for PID 1's
orders, then serve them.

Where it differs: from the start of the boot, in the child PID 1 forked before the boot's own
modules were imported (`pid1/supervision.Standby`), on the other CPU while PID 1 boots. It never
holds the boot's modules, and it is never root past its first step. When the boot ends the container
instead, PID 1's exit closes its end of their socket, and the standby ends without a word.
"""

from __future__ import annotations

import importlib
import os
import socket
from collections.abc import Callable

from ..common import handover
from ..common.exits import Exit
from . import INTERFACES

# What supervisord's process imports before it can start the program: supervisord, the parts it
# imports as its config is read and its servers made, and the interfaces its config names.
IMPORTED_BEFORE_SERVING = (
    "supervisor.supervisord",
    "supervisor.rpcinterface",
    "supervisor.process",
    "supervisor.web",
    *(factory.partition(":")[0] for factory in INTERFACES.values()),
)


def stand_by(channel: socket.socket, become_user: Callable[[], bool], serve: Callable[[str], int]) -> int:
    """The standby's whole life, in the forked child; its exit code (its `serve`'s, once served).

    A standby that cannot become the user or import ends at once, saying nothing: PID 1 then makes
    supervisord's process after the boot, which meets the same fault where the boot reports it."""
    try:
        if not become_user():
            return Exit.SOFTWARE
        for name in IMPORTED_BEFORE_SERVING:
            importlib.import_module(name)
    except Exception:
        return Exit.SOFTWARE
    try:
        with channel:
            handover.say_ready(channel)
            orders = handover.receive(channel)
    except OSError:  # PID 1 ended it meanwhile
        return Exit.OK
    if orders is None:
        return Exit.OK  # cancelled: the boot ended the container
    os.environ.clear()  # unsetenv too: the program supervisord starts sees only these
    os.environ.update(orders.env)
    return serve(orders.config)
