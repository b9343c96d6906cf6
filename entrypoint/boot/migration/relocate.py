"""Relocation: the target made when missing, and every entry at the state volume's root that is
the application's own (its config, credentials, agents, ...: the plan's `state_entries`) moved into
it. What else lies at the root, beside the volume's own (the target, the init's records, the home,
lost+found), is the user's (a `backups/` for the application's own backup command): it stays, and a
warning names it the first time it is seen.

On every boot, after a killed migration's staging was finished: an earlier version of the init kept
the application's state at the volume's root (and finished its stagings there), and the seed left
its empty `cron/`, `canvas/`, `logs/` there. Each entry moves in one rename within the volume, which
never replaces anything: a kill between two of them is continued by the next boot; a name that
exists in both places stays at the root, with a warning.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os

from ...common import log
from ...common.fsops import describe, errno_name, rename_noreplace
from .context import Context, logger
from .journal import read_named_at_root, write_named_at_root


def open_target(ctx: Context) -> int:
    """The target, held open; made (0700) when missing. Raises OSError."""
    name = _root_name(ctx)
    if name is None:
        return ctx.open_dir(ctx.plan.target)  # not a directory of the root: the operator's to make
    volume_fd = ctx.open_dir(ctx.plan.volume)
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=volume_fd)
    return ctx.open(name, volume_fd)


def gather(ctx: Context, record_fd: int, target_fd: int) -> None:
    """Move every entry at the volume's root that is the application's into the target."""
    plan = ctx.plan
    name = _root_name(ctx)
    if name is None:
        return
    volume_fd = ctx.open_dir(plan.volume)
    own = {*plan.kept_at_root, name, ctx.in_volume(plan.record_dir)}
    moved, users = 0, []
    for entry in sorted(os.listdir(volume_fd)):
        if entry in own:
            continue
        if not any(fnmatch.fnmatchcase(entry, pattern) for pattern in plan.state_entries):
            users.append(entry)
            continue
        try:
            rename_noreplace(volume_fd, entry, target_fd, entry)
        except OSError as error:
            _left_at_root(ctx, entry, error)
            continue
        moved += 1
    ctx.figures["relocated"] = moved
    _name_the_users(ctx, record_fd, users)
    if moved:
        log.event(
            logger,
            "info",
            "migration_relocated",
            f"moved {moved} entries from {plan.volume} into {plan.target}",
            count=moved,
        )


def _name_the_users(ctx: Context, record_fd: int, users: list[str]) -> None:
    """The user's entries at the root, in the report at every boot, in a warning once each."""
    if users:
        ctx.figures["kept_at_root"] = users
    named = read_named_at_root(record_fd)
    new = [entry for entry in users if entry not in named]
    if not new:
        return
    ctx.recorder.warn(
        "migration_root_entries_kept",
        f"{', '.join(new)} at the root of {ctx.plan.volume} is not the application's state: it stays "
        f"where it is (the application's state is {ctx.plan.target}); said once",
        entries=new,
        volume=ctx.plan.volume,
    )
    with contextlib.suppress(OSError):  # unrecorded, it is named again at the next boot: no harm
        write_named_at_root(record_fd, sorted({*named, *new}), prepare=ctx.owner.give)


def _root_name(ctx: Context) -> str | None:
    """The target's name when it is a directory of the volume's root (the image's layout)."""
    name = ctx.in_volume(ctx.plan.target)
    return name if name and "/" not in name else None


def _left_at_root(ctx: Context, entry: str, error: OSError) -> None:
    at_root, inside = os.path.join(ctx.plan.volume, entry), os.path.join(ctx.plan.target, entry)
    if isinstance(error, FileExistsError):
        ctx.recorder.warn(
            "migration_relocation_conflict",
            f"{at_root} was left where it is: {inside} exists too and is the one the application "
            f"uses; merge the two by hand, then remove {at_root}",
            path=at_root,
            target=inside,
        )
        return
    ctx.recorder.warn(
        "migration_relocation_failed",
        f"could not move {at_root} into {ctx.plan.target}: {describe(error)}; it was left where it is",
        path=at_root,
        errno=errno_name(error),
    )
