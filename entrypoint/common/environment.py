"""The environment a program inherits from the init: everything, less what is the init's own.

Who uses it: the boot, for the program's environment (PID 1); supervisord's process, exec'd where
PID 1 cannot fork it, for its own (the programs it starts inherit it); the settings, whose secret
files are only the program's variables.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

# The notify socket is the init's alone (systemd takes notifications from the main pid only);
# the rest are the PyInstaller loader's, set again in every frozen process it starts.
_INIT_ONLY_VARIABLES = frozenset({"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "_MEIPASS2"})


def reaches_program(name: str) -> bool:
    """False for the init's own variables and the frozen loader's (`_PYI_ARCHIVE_FILE`...)."""
    return name not in _INIT_ONLY_VARIABLES and not name.startswith("_PYI_")


def for_program(env: Mapping[str, str], frozen: bool | None = None) -> dict[str, str]:
    """`env` without the init's variables and, when frozen, without the loader's library path."""
    frozen = getattr(sys, "frozen", False) if frozen is None else frozen
    cleaned = {key: value for key, value in env.items() if reaches_program(key)}
    if frozen:
        # The bootloader points LD_LIBRARY_PATH at its bundled libraries (libssl, libcrypto...)
        # and keeps the user's value in *_ORIG: node and its children must load the system's.
        original = cleaned.pop("LD_LIBRARY_PATH_ORIG", None)
        cleaned.pop("LD_LIBRARY_PATH", None)
        if original is not None:
            cleaned["LD_LIBRARY_PATH"] = original
    return cleaned
