"""The memory cgroup this process lives in: its limit, its peak and its OOM-kill count, as the
kernel reports them (cgroup v2's memory.max/peak/events, or v1's memory controller).

Who uses it: PID 1 at boot, to size the program's heap from the container's memory limit; the crash
guard inside supervisord, as the target user, to tell an OOM kill from any other SIGKILL. Reading
these files needs no privilege. The cgroup is found the way the kernel describes it
(/proc/self/cgroup, and where the mount table says the hierarchy is mounted), so it works in a
container whose cgroup filesystem is mounted at its own cgroup as well as on a host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import procfs

# A v1 limit at or above this is "no limit" (the kernel reports PAGE_COUNTER_MAX pages in bytes).
_UNLIMITED_V1 = 1 << 60


@dataclass(frozen=True)
class MemoryCgroup:
    directory: str
    v2: bool

    def _read(self, name: str) -> str | None:
        try:
            with open(os.path.join(self.directory, name), encoding="ascii") as handle:
                return handle.read()
        except (OSError, ValueError):
            return None

    def _number(self, name: str) -> int | None:
        text = self._read(name)
        try:
            return None if text is None else int(text.strip())
        except ValueError:
            return None  # "max": no limit

    def _field(self, name: str, key: str) -> int | None:
        for line in (self._read(name) or "").splitlines():
            label, _, value = line.partition(" ")
            if label == key and value.strip().isdigit():
                return int(value)
        return None

    def limit(self) -> int | None:
        """The memory limit in bytes, or None when there is none."""
        if self.v2:
            return self._number("memory.max")
        value = self._number("memory.limit_in_bytes")
        return value if value is not None and value < _UNLIMITED_V1 else None

    def peak(self) -> int | None:
        """The highest usage seen, in bytes (memory.peak needs Linux 5.19 on v2)."""
        return self._number("memory.peak" if self.v2 else "memory.max_usage_in_bytes")

    def oom_kills(self) -> int | None:
        """How many processes the OOM killer has killed in this cgroup (v1: Linux 4.13 and later)."""
        return self._field("memory.events" if self.v2 else "memory.oom_control", "oom_kill")


def find(proc: str = "/proc/self") -> MemoryCgroup | None:
    """This process' memory cgroup, or None when the kernel shows none (no /proc, no controller)."""
    try:
        with open(f"{proc}/cgroup", encoding="utf-8") as handle:
            memberships = [line.rstrip("\n").split(":", 2) for line in handle if line.count(":") >= 2]
    except OSError:
        return None
    # v1: "4:memory:/docker/ID"; v2: "0::/PATH" (the unified hierarchy has no controller list).
    v1 = [path for _, controllers, path in memberships if "memory" in controllers.split(",")]
    v2 = next((path for number, controllers, path in memberships if (number, controllers) == ("0", "")), None)
    for mount in procfs.mounts(proc):
        if mount.fstype == "cgroup" and "memory" in mount.super_options and v1:
            return MemoryCgroup(os.path.join(mount.point, os.path.relpath(v1[0], mount.root)), v2=False)
        if mount.fstype == "cgroup2" and v2 is not None and not v1:
            return MemoryCgroup(os.path.join(mount.point, os.path.relpath(v2, mount.root)), v2=True)
    return None
