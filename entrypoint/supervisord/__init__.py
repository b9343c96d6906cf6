"""supervisord's process: supervisor's daemon, with the crash guard inside it.

Who runs it: supervisord's process, as the target user. PID 1 forks it at the start of the boot
(its standby: it becomes the user at once, imports what it serves with while PID 1 boots, then
waits for its orders, `standby`); where a fork is not safe, PID 1 execs this same program as
`<init> supervisord -c CONFIG`. Either way it then runs `serve`: a waker thread, supervisord's main
loop, and at its end the crash guard's last words. supervisord loads its XML-RPC interfaces from
the config PID 1 rendered (`pid1/supervision.render`), by name: its own namespace with an
operator's stop that always stops (`rpcinterface`), and the crash guard (`crashguard/plugin`),
which runs as a thread of this process from then on.
"""

from __future__ import annotations

_PACKAGE = __name__.rpartition(".")[0]
# The interfaces supervisord loads from its config ([rpcinterface:NAME]), each by its factory.
INTERFACES = {
    "supervisor": f"{__name__}.rpcinterface:make_rpcinterface",
    "crashguard": f"{_PACKAGE}.crashguard.plugin:make_rpcinterface",
}
