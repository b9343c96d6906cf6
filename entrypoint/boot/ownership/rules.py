"""What the ownership walk may touch, and how it reports what it left alone.

Every engine applies these rules, through `walk` (in the worker processes of a large tree too). The
trees it walks are writable by the user it hands them to, so it treats their contents as hostile:

- Every name is resolved relative to a directory file descriptor, and no call follows a symbolic
  link: `fstatat`/`fchownat` with AT_SYMLINK_NOFOLLOW (a link is re-owned itself, lchown-style, its
  target never), and directories are opened with O_NOFOLLOW, then `fstat`ed and compared (device,
  inode) with what the listing's `lstat` saw. A directory swapped for a link or for another directory
  between the two is left alone (`replaced`), so a race can never steer the walk out of the tree.
- It stays on each root's filesystem: any entry whose device differs (a nested mount point), or
  that /proc/self/mountinfo lists as a mount point (a bind mount from the same filesystem, e.g. a
  bind-mounted file, has the same device), is reported (`mount_point`), neither entered nor
  re-owned.
- A non-directory with more than one hard link that is not already the target's is left alone
  (`hardlink`): its other names may be outside the tree, e.g. a link planted to /etc/shadow.
- A directory is re-owned only after everything below it (post-order): while its entries are
  being handled it keeps its old owner, so a user who could not write into it before cannot swap
  its entries under the walk either. In a directory the user could already write, a regular file
  swapped for a hard link between the `lstat` and the `fchownat` remains a window; the kernel's
  fs.protected_hardlinks=1 (the default of every mainstream distribution) closes it by refusing
  hard links to files the user does not own.
- A root is opened without following its last component: a root that is a symbolic link (say,
  planted by the user owning the directory above it) is reported (`symlink_root`), not followed.
- FIFOs, sockets and device nodes are re-owned by name, never opened (an open of a FIFO blocks,
  an open of a device can act on the hardware).
- Mode bits are never set. The kernel itself clears the set-user-ID bit (and set-group-ID when
  group-execute is set) of a regular file whose owner changes, and drops its file capabilities;
  that is kept on purpose (restoring it would mint set-ID programs of the target user) and counted
  as `setid_cleared`. 0600 secrets stay 0600.
- chown(2) is atomic per entry: whenever the walk stops (SIGTERM via the stop flag, or a fault),
  every entry is either old-owned or new-owned.

Faults (EPERM without CAP_CHOWN, EROFS, EACCES, ELOOP, entries vanishing) are counted and reported
as one warning per kind with a few sample paths; nothing is raised out of the phase.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field

from ...common import fsops
from ...common.report import PhaseRecorder

PHASE = "ownership"
SAMPLES = 5  # sample paths kept per kind of fault or skip: enough to act on, never 100k lines
SKIP_REASONS = ("mount_point", "hardlink", "replaced", "vanished", "missing_root", "symlink_root")

_HINTS = {
    errno.EPERM: "the init lacks CAP_CHOWN (--cap-drop ALL?) or the volume is root-squashed NFS",
    errno.EROFS: "the volume is mounted read-only",
    errno.EACCES: "the init may not read or search these directories (capabilities dropped? FUSE?)",
    errno.ELOOP: "a path component is a symbolic link; it was not followed",
}

_SKIP_MESSAGES = {
    "mount_point": "mount point(s) inside the roots were not entered; list them as roots to re-own them",
    "hardlink": "file(s) with several hard links were left alone: their other names may be outside",
    "replaced": "entry(ies) were replaced while the walk ran (a race or an attack); left alone",
    "vanished": "entry(ies) disappeared while the walk ran",
}


@dataclass(eq=False, slots=True)
class Dir:
    """An opened, verified directory. `pending` counts its own listing plus each unfinished
    subdirectory; when it drops to 0 the directory itself is re-owned and its descriptor closed."""

    fd: int
    path: str
    dev: int
    uid: int
    gid: int
    parent: Dir | None
    pending: int = 1
    # False in a worker process for the directories it inherited: the parent process re-owns
    # them once every worker is done with what is below them.
    in_charge: bool = True


# A subdirectory seen in a listing but not opened yet, as (parent, name, its lstat): opening is
# deferred to whoever walks it, so a directory with 10k subdirectories does not hold 10k
# descriptors. A plain tuple: one is made per directory of the tree, on the hot path.
Child = tuple[Dir, str, os.stat_result]

# What is left to walk: directories open already (the roots), and subdirectories to enter.
Task = Dir | Child


@dataclass
class Tally:
    """One per walker, updated without a lock; the progress line reads them (a stale read is fine)."""

    seen: int = 0
    changed: int = 0
    setid_cleared: int = 0


@dataclass
class Samples:
    """How often one kind of skip or fault happened, and the first few paths it happened to."""

    count: int = 0
    paths: list[str] = field(default_factory=list)

    def add(self, path: str) -> None:
        self.count += 1
        if len(self.paths) < SAMPLES:
            self.paths.append(path)

    def absorb(self, count: int, paths: list[str]) -> None:
        """Add what another walker (a worker process) recorded of the same kind."""
        self.count += count
        self.paths += paths[: SAMPLES - len(self.paths)]


def loses_setid(mode: int) -> bool:
    # The kernel's rule for a regular file whose owner changes: S_ISUID always goes; S_ISGID goes
    # only with group-execute (without it, S_ISGID marks mandatory locking, not a set-ID program).
    return bool(mode & stat.S_ISUID or (mode & stat.S_ISGID and mode & stat.S_IXGRP))


def warn(recorder: PhaseRecorder, skipped: dict[str, Samples], faults: dict[int, Samples]) -> None:
    """One warning per root that was not walked, per kind of skip and per errno, with samples."""
    for path in skipped["missing_root"].paths:
        recorder.warn("ownership_root_missing", f"{path} does not exist; nothing to re-own", path=path)
    for path in skipped["symlink_root"].paths:
        recorder.warn(
            "ownership_root_symlink",
            f"{path} is a symbolic link; it is not followed (name the real directory instead)",
            path=path,
        )
    for reason, text in _SKIP_MESSAGES.items():
        samples = skipped[reason]
        if samples.count:
            recorder.warn(
                f"ownership_{reason}", f"{samples.count} {text}", count=samples.count, samples=samples.paths
            )
    for number, samples in sorted(faults.items()):
        name = fsops.errno_name(OSError(number, os.strerror(number)))
        hint = _HINTS.get(number, os.strerror(number))
        recorder.warn(
            "ownership_error",
            f"{samples.count} entry(ies) failed with {name}: {hint}",
            errno=name,
            count=samples.count,
            samples=samples.paths,
        )
