"""What this binary is, and how it runs itself: the command that starts the same program again,
and the files it runs from (which the user it drops to must be able to read).

Who runs it: PID 1, as root, before its boot plan is made (`wiring`) and before it forks or execs
supervisord's process (`start`). It reads no profile and no setting: only the interpreter's view
of itself.
"""

from __future__ import annotations

import importlib.util
import os
import sys


def self_command() -> tuple[str, ...]:
    """How to run this same program again (supervisord, where PID 1 cannot fork it)."""
    if getattr(sys, "frozen", False):
        return (sys.executable,)
    return (sys.executable, "-m", "entrypoint")


def runtime_paths() -> tuple[str, ...]:
    """What this program runs from, for the user it drops to: frozen, the executable and its
    directory; otherwise the interpreter, the standard library, this package and supervisor."""
    frozen_dir = getattr(sys, "_MEIPASS", None) if getattr(sys, "frozen", False) else None
    if frozen_dir is not None:
        return (sys.executable, frozen_dir)
    supervisor = importlib.util.find_spec("supervisor")
    modules = (os.__file__, __file__, supervisor.origin if supervisor and supervisor.origin else "")
    return tuple(path for path in (sys.executable, os.path.realpath(sys.executable), *modules) if path)
