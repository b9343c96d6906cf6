"""The memory cgroup this process lives in: its limit, its peak and its OOM-kill count, as the
kernel reports them (cgroup v2's memory.max/peak/events, or v1's memory controller).

Who uses it: PID 1 at boot, to size the program's heap from the container's memory limit; the crash
guard inside supervisord, as the target user, to tell an OOM kill from any other SIGKILL. Reading
these files needs no privilege. The cgroup is found the way the kernel describes it
(/proc/self/cgroup, and where /proc/self/mountinfo says the hierarchy is mounted), so it works in a
container whose cgroup filesystem is mounted at its own cgroup as well as on a host.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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


def _unescape(path: str) -> str:
    # mountinfo octal-escapes space, tab, newline and backslash.
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        path = path.replace(code, char)
    return path


def find(proc: str = "/proc/self") -> MemoryCgroup | None:
    """This process' memory cgroup, or None when the kernel shows none (no /proc, no controller)."""
    try:
        with open(f"{proc}/cgroup", encoding="utf-8") as handle:
            memberships = [line.rstrip("\n").split(":", 2) for line in handle if line.count(":") >= 2]
        with open(f"{proc}/mountinfo", encoding="utf-8") as handle:
            mounts = [line.split() for line in handle]
    except OSError:
        return None
    # v1: "4:memory:/docker/ID"; v2: "0::/PATH" (the unified hierarchy has no controller list).
    v1 = [path for _, controllers, path in memberships if "memory" in controllers.split(",")]
    v2 = next((path for number, controllers, path in memberships if (number, controllers) == ("0", "")), None)
    for fields in mounts:
        # id, parent, dev, root, mount point, options, optional..., "-", fstype, source, super options
        separator = fields.index("-")
        fstype, super_options = fields[separator + 1], fields[-1]
        root, point = _unescape(fields[3]), _unescape(fields[4])
        if fstype == "cgroup" and "memory" in super_options.split(",") and v1:
            return MemoryCgroup(os.path.join(point, os.path.relpath(v1[0], root)), v2=False)
        if fstype == "cgroup2" and v2 is not None and not v1:
            return MemoryCgroup(os.path.join(point, os.path.relpath(v2, root)), v2=True)
    return None
