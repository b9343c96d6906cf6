"""Phase `privileges`: become the target user for good, or, when started non-root, check access.

The order is the one the kernel needs and that Moby, containerd and podman each got wrong once
(CVE-2022-29162 and friends): supplementary groups first (setgroups needs CAP_SETGID, which setuid
takes away), then the gid, then the uid. Afterwards we prove it cannot be undone.
"""

from __future__ import annotations

import os
import stat

from ..common import procfs
from ..common.plans import TargetUser
from ..common.report import PhaseRecorder, PhaseResult
from .access import unwritable_for


class PrivilegeDropError(RuntimeError):
    """The drop did not hold: continuing would run the program with more rights than asked."""


def _hand_over_std_streams(user: TargetUser, recorder: PhaseRecorder) -> None:
    # After the drop, opening /dev/stdout re-opens fd 1 through /proc and the kernel checks the
    # owner of the pipe, tty or file behind it (root): EACCES for supervisord's log files. Hand
    # the user what we were given to write to; never a device such as /dev/null, shared by all.
    for fd in (0, 1, 2):
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISREG(mode) or os.isatty(fd):
                os.fchown(fd, user.uid, user.gid)
        except OSError as error:
            recorder.warn("stream_not_handed_over", f"fd {fd}: {error.strerror}", fd=fd, errno=error.errno)


def _prove_irreversible(user: TargetUser) -> None:
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PrivilegeDropError("setuid(0) succeeded after the drop")
    if user.gid != 0 and 0 not in user.groups:
        try:
            os.setegid(0)
        except PermissionError:
            pass
        else:
            raise PrivilegeDropError("setegid(0) succeeded after the drop")
    held = procfs.effective_capabilities()
    if held is None:
        raise PrivilegeDropError("cannot read CapEff from /proc/self/status")
    if held != 0:
        raise PrivilegeDropError("effective capabilities are not empty after the drop")


def user_environment(user: TargetUser) -> dict[str, str]:
    return {"HOME": user.home, "USER": user.name, "LOGNAME": user.name}


def drop(user: TargetUser) -> PhaseResult:
    """Become `user` (started as root). Raises PrivilegeDropError when the drop cannot be proven."""
    recorder = PhaseRecorder("privileges")
    recorder.figures.update(uid=user.uid, gid=user.gid, groups=list(user.groups), dropped=user.uid != 0)
    _hand_over_std_streams(user, recorder)
    os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)
    if user.uid == 0:
        recorder.warn("running_as_root", "the target user is root: the program keeps every privilege")
    else:
        _prove_irreversible(user)
    os.environ.update(user_environment(user))
    return recorder.result()


def become(user: TargetUser) -> bool:
    """`drop` for a process that reports nothing (supervisord's standby, forked at the boot's
    start): whether it held. Where it fails, the boot's own `drop` fails the same way, and says so."""
    try:
        drop(user)
    except (PrivilegeDropError, OSError):
        return False
    return True


def check_access(user: TargetUser, directories: tuple[str, ...]) -> PhaseResult:
    """Started non-root: nothing to drop or repair; say plainly what the user cannot write."""
    recorder = PhaseRecorder("privileges")
    recorder.figures.update(uid=user.uid, gid=user.gid, dropped=False, started_as_root=False)
    unwritable = unwritable_for(user, directories)
    recorder.figures["unwritable"] = unwritable
    for path in unwritable:
        recorder.warn(
            "directory_not_writable",
            f"{path} is not writable by uid {user.uid} gid {user.gid}: start the container as root "
            f"(no --user) so the init repairs ownership, or run `chown -R {user.uid}:{user.gid}` "
            "on that volume",
            path=path,
        )
    return recorder.result()
