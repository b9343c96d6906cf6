"""What the kernel says in /proc, parsed in one place: a process' stat line, its start time, its
threads and CPU time, the process tree, effective capabilities, a descriptor's mount, the mount table.

Who uses it: every program of the binary, as whatever user it runs as (none of these files needs
a privilege to read): the boot (capabilities, mounts), PID 1 (its own threads), the crash guard
(when the program started), `status` (the program's tree, RSS and CPU). Every reader returns
"unknown" (None, empty) for a process that is gone or a /proc that is not mounted: the caller
decides from less, it never fails for it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# /proc/PID/stat from field 3 (`state`) on: index = field number - 3.
_PPID, _UTIME, _STIME, _STARTTIME, _RSS = 1, 11, 12, 19, 21


def stat_fields(pid: int | str = "self") -> list[str]:
    """/proc/PID/stat from field 3 (`state`) on (the command name, which may hold spaces and
    parentheses, cut off at its last `)`); empty when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rpartition(")")[2].split()
    except OSError:
        return []


def parent(fields: list[str]) -> int:
    return int(fields[_PPID])


def rss_pages(fields: list[str]) -> int:
    return int(fields[_RSS])


def cpu_ticks(fields: list[str]) -> int:
    """utime + stime, in clock ticks: they count the threads that have ended, too."""
    return int(fields[_UTIME]) + int(fields[_STIME])


def started_at(pid: int) -> float | None:
    """When the process started (epoch seconds), as psutil would say: the boot time plus its
    start in clock ticks after it; None when it is gone."""
    fields = stat_fields(pid)
    try:
        ticks = int(fields[_STARTTIME])
        with open("/proc/stat", encoding="ascii") as handle:
            booted = next(int(line.split()[1]) for line in handle if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return None
    return booted + ticks / os.sysconf("SC_CLK_TCK")


def tree(root: int) -> list[int]:
    """`root` and every process below it, from each process' parent; empty when `root` is gone."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        fields = stat_fields(int(entry)) if entry.isdigit() else []
        if fields:
            children.setdefault(parent(fields), []).append(int(entry))
    if not stat_fields(root):
        return []
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, ()))
    return found


def cpu_ns(pid: int) -> int:
    """CPU time of the process' threads now, in nanoseconds (each thread's schedstat: exact, where
    stat's ticks are hundredths of a second)."""
    total = 0
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for thread in threads:
        try:
            with open(f"/proc/{pid}/task/{thread}/schedstat", encoding="ascii") as handle:
                total += int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):  # the thread ended meanwhile
            continue
    return total


def thread_count() -> int | None:
    """How many threads this process has, as the kernel counts them (a library's included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def effective_capabilities() -> int | None:
    """CapEff of this process; None when /proc cannot tell."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def mount_id(fd: int) -> int | None:
    """The id of the mount an open descriptor lies on (`mnt_id` in its fdinfo)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as info:
            for line in info:
                key, _, value = line.partition(":")
                if key == "mnt_id":
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo, the fields the init reads."""

    root: str  # the directory of the filesystem mounted here
    point: str  # where, in this mount namespace
    fstype: str
    super_options: tuple[str, ...]


def mounts(proc: str = "/proc/self") -> list[Mount]:
    """This mount namespace's mounts, in the kernel's order; empty without /proc."""
    try:
        with open(f"{proc}/mountinfo", encoding="utf-8", errors="surrogateescape") as mountinfo:
            lines = [line.split() for line in mountinfo if line.strip()]
    except OSError:
        return []
    found = []
    for fields in lines:
        if "-" not in fields[6:]:  # not a line of the format below
            continue
        # id, parent, dev, root, mount point, options, optional..., "-", fstype, source, super options
        separator = fields.index("-", 6)
        found.append(
            Mount(
                _unescape(fields[3]),
                _unescape(fields[4]),
                fields[separator + 1],
                tuple(fields[-1].split(",")),
            )
        )
    return found


def _unescape(field: str) -> str:
    """mountinfo octal-escapes space, tab, newline and backslash."""
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), field)
