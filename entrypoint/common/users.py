"""User specs as gosu accepts them: `name`, `uid`, `uid:gid`, `name:group`, `uid:group`, `name:gid`.

Semantics follow gosu (runc's user lookup): a name must exist in the passwd database; a number
need not (containers run arbitrary uids: OpenShift, `docker run --user`), and then its home is `/`
and its group is 0. Supplementary groups come from the group database only when no group was given
explicitly: an explicit group means "this group and no other".

Who uses it: every program reads its settings through it (the target user is a setting); the boot
drops to the user it resolves. Started non-root, `current` describes the user the process already is.
"""

from __future__ import annotations

import grp
import os
import pwd

from .plans import TargetUser

MAX_ID = 2**32 - 2  # (uid_t)-1 is "no change" to the kernel's set*id calls, never a real id


class UserSpecError(ValueError):
    """The spec names no user or group this system knows; the message says which part."""


def parse_id(text: str) -> int | None:
    """A decimal id in range, or None when `text` is not one (`0day`, `-1`, `1e3`, `''`)."""
    if not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MAX_ID else None


def _lookup_user(part: str) -> tuple[int, pwd.struct_passwd | None]:
    try:
        entry = pwd.getpwnam(part)
        return entry.pw_uid, entry
    except KeyError:
        pass
    uid = parse_id(part)
    if uid is None:
        raise UserSpecError(f"no user named {part!r} and not a numeric uid")
    try:
        return uid, pwd.getpwuid(uid)
    except KeyError:
        return uid, None


def _lookup_group(part: str) -> int:
    try:
        return grp.getgrnam(part).gr_gid
    except KeyError:
        pass
    gid = parse_id(part)
    if gid is None:
        raise UserSpecError(f"no group named {part!r} and not a numeric gid")
    return gid


def resolve(spec: str, *, uid_override: int | None = None, gid_override: int | None = None) -> TargetUser:
    """Resolve `spec`, then apply the numeric PUID/PGID overrides (linuxserver's convention)."""
    user_part, has_group, group_part = spec.partition(":")
    if not user_part or (has_group and not group_part):
        raise UserSpecError("expected name, uid, name:group or uid:gid")
    uid, entry = _lookup_user(user_part)
    name = entry.pw_name if entry else str(uid)
    home = entry.pw_dir if entry else "/"
    gid = _lookup_group(group_part) if has_group else (entry.pw_gid if entry else 0)

    if uid_override is not None:
        uid = uid_override
    if gid_override is not None:
        gid = gid_override
    explicit_group = has_group or gid_override is not None
    if entry is not None and not explicit_group:
        groups = tuple(os.getgrouplist(entry.pw_name, gid))
    else:
        groups = (gid,)
    return TargetUser(name=name, uid=uid, gid=gid, groups=groups, home=home)


def current() -> TargetUser:
    """The user the process already runs as (started non-root: nothing to drop)."""
    uid, gid = os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwuid(uid)
        name, home = entry.pw_name, entry.pw_dir
    except KeyError:
        name, home = str(uid), os.environ.get("HOME", "/")
    return TargetUser(name=name, uid=uid, gid=gid, groups=tuple(os.getgroups()) or (gid,), home=home)
