"""Preflight: can a boot started as root carry out the drop it promises? Two facts, checked first
thing in a root boot, before any volume is touched, each refused with one line that names what
is missing and what to do:

- The capabilities the drop needs (CAP_SETGID for the groups and gid, CAP_SETUID for the uid):
  without them (`--cap-drop ALL`) the drop fails with a bare EPERM after the repairs.
- The init's own code readable by the target user: after the drop PID 1 still imports modules
  lazily and starts supervisord from the same interpreter; an interpreter under /root (pyenv,
  0700) dies there with "unknown encoding: ascii".

A refusal is a configuration error (exit 78): restarting cannot fix it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..common import procfs
from ..common.plans import TargetUser
from .access import READABLE, denied_for

# linux/capability.h: the bits of CapEff in /proc/self/status.
CAPABILITIES = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_SETGID": 6, "CAP_SETUID": 7}
# Without these the drop cannot happen at all.
NEEDED_TO_DROP = ("CAP_SETGID", "CAP_SETUID")
# The root steps also re-own volumes (CHOWN), read legacy dirs of any owner (DAC_OVERRIDE) and set
# modes and times on what they hand over (FOWNER): the whole minimal set, for `--cap-add`.
NEEDED_BY_ROOT_STEPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID")


@dataclass(frozen=True)
class Refusal:
    event: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


def _missing(held: int, names: tuple[str, ...]) -> list[str]:
    return [name for name in names if not held >> CAPABILITIES[name] & 1]


def check(user: TargetUser, runtime_paths: tuple[str, ...]) -> Refusal | None:
    """Why this root boot cannot go on as promised, or None. Nothing to check for a root target."""
    if user.uid == 0:
        return None
    held = procfs.effective_capabilities()
    # Unknown (no /proc): the drop itself will say whether it can be done, and prove it.
    missing = [] if held is None else _missing(held, NEEDED_TO_DROP)
    if missing:
        cap_add = " ".join(f"--cap-add {name.removeprefix('CAP_')}" for name in NEEDED_BY_ROOT_STEPS)
        return Refusal(
            "capabilities_missing",
            f"cannot drop to {user.name} ({user.uid}:{user.gid}): the container lacks "
            f"{' and '.join(missing)} (started with --cap-drop ALL?). Either start it as that user "
            f"(docker run --user {user.uid}:{user.gid}; Kubernetes runAsUser: {user.uid}), which skips "
            f"the root steps, or give the root steps what they need: {cap_add}",
            {
                "missing": missing,
                "missing_for_repairs": _missing(held or 0, NEEDED_BY_ROOT_STEPS),
                "needed": list(NEEDED_BY_ROOT_STEPS),
                "fix": f"--user {user.uid}:{user.gid}, or {cap_add}",
            },
        )
    # A directory must be searchable too, to reach what the program loads from it later.
    checks = ((path, READABLE | (os.X_OK if os.path.isdir(path) else 0)) for path in runtime_paths)
    unreadable = denied_for(user, checks)
    if unreadable:
        return Refusal(
            "runtime_unreadable",
            f"{unreadable[0]} is not readable by {user.name} ({user.uid}:{user.gid}), and the init keeps "
            "running from it after the drop: install the init where that user can read it (for example "
            "a virtual environment under /opt, mode 755), or use the image's frozen init",
            {"paths": unreadable, "uid": user.uid},
        )
    return None
