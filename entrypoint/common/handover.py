"""The hand-over to supervisord's standby: how PID 1 gives supervisord's process, forked at the
boot's start, its orders once the boot is done.

Who uses it: PID 1 (`pid1/supervision.Standby`, as root at the fork, then as the target user: it
waits for the standby and sends the orders) and the standby in supervisord's process
(`supervisord/standby`, as the target user: it says it is ready and receives them), each on its
end of one socket pair.

The standby says it is ready with one byte, once its imports are done; it closes its end instead
when it cannot go on. PID 1 then sends the orders, one JSON object (the config's path and
supervisord's environment: the program's own, with its token, which never touches a file), and
closes its end: the end of file completes them. An end of file with no orders at all means the
boot ended the container; the standby then ends without a word.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass

_READY = b"r"


@dataclass(frozen=True)
class Orders:
    config: str  # supervisord's config, rendered by PID 1
    env: Mapping[str, str]  # supervisord's whole environment, which its programs inherit


def say_ready(channel: socket.socket) -> None:
    """The standby's side: its imports are done. Raises OSError when PID 1 is gone."""
    channel.sendall(_READY)


def receive(channel: socket.socket) -> Orders | None:
    """The standby's side: the orders, or None when PID 1 closed its end without any (the boot
    ended the container). Raises OSError when the channel breaks."""
    received = b"".join(iter(lambda: channel.recv(65536), b""))
    if not received:
        return None
    data = json.loads(received)
    return Orders(str(data["config"]), dict(data["env"]))


def give(channel: socket.socket, orders: Orders, ready_within_s: float) -> None:
    """PID 1's side: wait until the standby is ready, send the orders, close. Raises OSError
    (TimeoutError included) when the standby ended without being ready, or is stuck."""
    channel.settimeout(ready_within_s)
    if channel.recv(1) != _READY:
        raise ConnectionResetError("the standby ended")
    channel.sendall(json.dumps({"config": orders.config, "env": dict(orders.env)}).encode())
    channel.close()
