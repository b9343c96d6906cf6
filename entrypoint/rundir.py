"""The run dir's files, named once: the init, supervisord, the crash guard, `health` and `status`
are separate processes that find each other only through these names."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any

SUPERVISOR_CONFIG = "supervisord.conf"
SUPERVISOR_SOCKET = "supervisor.sock"
STARTUP_REPORT = "startup-report.json"
# Written by the crash guard: the gateway's state as the restart policy sees it.
GUARD_STATE = "crashguard.json"
# Created by the init on SIGTERM/SIGINT: from then on nothing may restart the gateway.
STOPPING_MARKER = "stopping"
# Written by the crash guard when it refuses with the `exit` action: the init's exit code, which
# is CRASH_LOOP_EXIT_CODE (EX_TEMPFAIL: not 78, so an orchestrator tells it from a bad setting).
EXIT_CODE = "exit-code"
CRASH_LOOP_EXIT_CODE = 75


def read_json(run_dir: str, name: str) -> dict[str, Any] | None:
    """A run-dir file's JSON object, or None when it is missing, unreadable or not an object."""
    try:
        with open(os.path.join(run_dir, name), encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(run_dir: str, name: str, data: Mapping[str, Any]) -> str | None:
    """Write atomically (temp file + rename: a reader in another process never sees half of it).

    Returns the path, or None when the run dir cannot be written."""
    path = os.path.join(run_dir, name)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1)
            handle.write("\n")
        os.replace(temporary, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        return None
    return path


def read_exit_code(run_dir: str) -> int | None:
    """The code the crash guard asked the init to exit with, if it asked."""
    try:
        with open(os.path.join(run_dir, EXIT_CODE), encoding="ascii") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return None
