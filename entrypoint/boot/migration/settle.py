"""What every boot does once no migration is pending: report later sources holding data, give the
config file its preferred name, and make the links in the application's home what the plan says.

After a migration that ended (done, or failed with its staging removed), after a record found from
an earlier boot, and when there is nothing to migrate. Never while a staging is kept: the target is
then still the migration's.

The home links. Some generations of the application hard-code paths under a legacy name in their
home (`~/.<old name>/identity`): that name must be a link into its state dir. Others scan the same
names for legacy state on every start, slowly: there, the name must not exist. Each boot makes
the wanted links and removes ours that are not wanted; ours are links whose target lies in the
state volume (or is a target the plan names). A real file or directory there is never removed.
"""

from __future__ import annotations

import os
import stat

from ...common.fsops import describe, errno_name, lexists, rename_noreplace
from .context import Context
from .sources import Source, report_later


def settle(ctx: Context, sources: list[Source], migrated: str | None) -> None:
    """With no migration pending: conflicts, config name, the home's links."""
    report_later(ctx, sources, migrated)
    try:
        target_fd = ctx.open_dir(ctx.plan.target)
    except OSError:
        target_fd = None  # no target: its failure was reported; nothing to rename in it
    if target_fd is not None:
        _rename_config(ctx, target_fd)
    made: list[str] = []
    removed: list[str] = []
    for path, wanted in ctx.plan.home_links:
        try:
            _home_link(ctx, path, wanted, made, removed)
        except OSError as error:
            ctx.recorder.warn(
                "migration_home_link_failed",
                f"could not make {path} "
                + (f"a link to {wanted}" if wanted else "absent")
                + f": {describe(error)}",
                path=path,
                errno=errno_name(error),
            )
    if made or removed:
        ctx.figures["home_links"] = {"made": made, "removed": removed}


def _rename_config(ctx: Context, target_fd: int) -> None:
    """A target holding only an older generation's config name gets the preferred one."""
    preferred, *older = ctx.plan.config_names or ("",)
    if not preferred or lexists(preferred, target_fd):
        return
    for name in older:
        if not lexists(name, target_fd):
            continue
        try:
            rename_noreplace(target_fd, name, target_fd, preferred)
        except OSError as error:
            ctx.recorder.warn(
                "migration_config_rename_failed",
                f"could not rename {name} to {preferred} in {ctx.plan.target}: {describe(error)}",
                path=os.path.join(ctx.plan.target, name),
                errno=errno_name(error),
            )
            return
        ctx.figures["config_renamed"] = f"{name} -> {preferred}"
        return


def _home_link(ctx: Context, path: str, wanted: str | None, made: list[str], removed: list[str]) -> None:
    home, name = os.path.split(path)
    try:
        home_fd = ctx.open_dir(home)
    except FileNotFoundError:
        return  # no home (yet): nothing can be hard-coded under it
    try:
        seen = os.lstat(name, dir_fd=home_fd)
    except FileNotFoundError:
        seen = None
    if seen is not None:
        current = os.readlink(name, dir_fd=home_fd) if stat.S_ISLNK(seen.st_mode) else None
        if current is not None and current == wanted:
            ctx.owner.give(name, home_fd)  # again: a boot killed between symlink and chown
            return
        if current is None or not _ours(ctx, home, current):
            what = "a link to " + current if current is not None else "not a link"
            ctx.recorder.warn(
                "migration_home_link_blocked",
                f"{path} is {what}, which this init did not make: it was left alone, so "
                + (
                    f"it does not lead to {wanted}"
                    if wanted
                    else "the application may read it as legacy state"
                ),
                path=path,
            )
            return
        os.unlink(name, dir_fd=home_fd)
        removed.append(path)
    if wanted:
        os.symlink(wanted, name, dir_fd=home_fd)
        ctx.owner.give(name, home_fd)
        made.append(path)


def _ours(ctx: Context, home: str, target: str) -> bool:
    resolved = os.path.normpath(os.path.join(home, target))
    wanted = {os.path.normpath(link) for _, link in ctx.plan.home_links if link}
    return ctx.in_volume(resolved) is not None or resolved in wanted
