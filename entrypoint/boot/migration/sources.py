"""The survey of the legacy paths: what each one holds, which one is migrated, and the warnings
about the others.

On every boot: a finished migration still reports later sources holding data. It only looks: lstat,
realpath and a listing, never following a legacy path that is a link elsewhere (the user owns the
directory it sits in and could point it at /etc). A legacy path that is a link into the state volume
was left by an earlier version of the init, which linked the legacy paths to its target: ours,
migrated.
"""

from __future__ import annotations

import enum
import os
import stat
from dataclasses import dataclass

from ...common.fsops import describe
from .context import Context


class Kind(enum.Enum):
    ABSENT = "absent"
    LINKED = "linked"  # a link into the state volume: an earlier boot's, silently ignored
    FOREIGN_LINK = "foreign-link"  # a link elsewhere: never followed
    NOT_DIR = "not-dir"
    EMPTY = "empty"
    DATA = "data"
    UNREADABLE = "unreadable"
    IS_TARGET = "is-target"  # the state volume, or a directory in it, under another name
    HOLDS_TARGET = "holds-target"  # the state volume lies inside it


@dataclass(frozen=True)
class Source:
    """A legacy path as found; `detail` says why an unreadable one could not be read."""

    path: str
    kind: Kind
    detail: str = ""


def survey(ctx: Context) -> list[Source]:
    return [_survey_one(ctx, path) for path in ctx.plan.sources]


def choose(sources: list[Source]) -> Source | None:
    """The first source holding data wins; one that cannot be read may be it, so it holds back the
    later ones (reported by report_odd) rather than letting them jump the queue."""
    return next((source for source in sources if source.kind in (Kind.DATA, Kind.UNREADABLE)), None)


def _within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _survey_one(ctx: Context, path: str) -> Source:
    try:
        seen = os.lstat(path)
    except FileNotFoundError:
        return Source(path, Kind.ABSENT)
    except OSError as error:
        return Source(path, Kind.UNREADABLE, describe(error))
    real = os.path.realpath(path)
    if stat.S_ISLNK(seen.st_mode):
        return Source(path, Kind.LINKED if _within(real, ctx.volume_real) else Kind.FOREIGN_LINK)
    if not stat.S_ISDIR(seen.st_mode):
        return Source(path, Kind.NOT_DIR)
    if _within(real, ctx.volume_real):
        return Source(path, Kind.IS_TARGET)
    if _within(ctx.volume_real, real):
        return Source(path, Kind.HOLDS_TARGET)
    try:
        names = [name for name in os.listdir(path) if name != ctx.record_name]
    except OSError as error:
        return Source(path, Kind.UNREADABLE, describe(error))
    return Source(path, Kind.DATA if names else Kind.EMPTY)


def report_odd(ctx: Context, sources: list[Source]) -> None:
    """A warning for each legacy path nothing can be migrated from although something is there."""
    for source in sources:
        if source.kind is Kind.FOREIGN_LINK:
            ctx.recorder.warn(
                "migration_source_link_ignored",
                f"{source.path} is a symbolic link to {os.path.realpath(source.path)}, outside "
                f"{ctx.plan.volume}: it was not followed and nothing was migrated from it",
                source=source.path,
            )
        elif source.kind is Kind.NOT_DIR:
            ctx.recorder.warn(
                "migration_source_not_directory",
                f"{source.path} is not a directory: nothing was migrated from it",
                source=source.path,
            )
        elif source.kind is Kind.HOLDS_TARGET:
            ctx.recorder.warn(
                "migration_source_holds_target",
                f"{ctx.plan.volume} lies inside {source.path}: it cannot be migrated into itself",
                source=source.path,
            )
        elif source.kind is Kind.UNREADABLE:
            ctx.recorder.warn(
                "migration_source_unreadable",
                f"cannot read {source.path}: {source.detail}; nothing was migrated, and a legacy "
                f"directory that cannot be read holds back the migration of any later one"
                f"{ctx.unreadable_fix(source.path)}",
                source=source.path,
            )


def report_later(ctx: Context, sources: list[Source], migrated: str | None) -> None:
    """Every other source holding data is a conflict: it was not merged."""
    for source in sources:
        if migrated is None or source.kind is not Kind.DATA or source.path == migrated:
            continue
        ctx.conflict(
            "migration_source_conflict",
            f"{source.path} also holds state, but only {migrated} (the first legacy directory "
            f"holding data) is migrated into {ctx.plan.target}: {source.path} was left as it is; "
            "merge what you need from it by hand",
            source=source.path,
            migrated_from=migrated,
            target=ctx.plan.target,
        )
