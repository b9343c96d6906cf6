"""A migration from its start to a complete staging, and the resumption of one a kill interrupted.

Once the decision chose a source and a strategy (`migrate`) or found a staging left by a killed boot
(`resume`). The migration lock (`lock`, taken first thing by every boot) keeps a second init sharing
the volume out.

Strategies:
- rename: the source directory is renamed into the staging in one step, then each top-level entry
  is renamed into the target. Possible only into an empty target, as root, when the source is on
  the target's mount and is not a mount point itself; the kernel answers EBUSY (a mount point) or
  EXDEV (another mount), and then
- copy: each top-level entry is copied into `items/<i>.part`, renamed to `items/<i>` once complete,
  and after all of them are staged (and flushed with syncfs) they are renamed into the target.
- merge and merge-missing: a copy whose items are the paths missing from the target.
- save: a copy of every top-level entry, committed into a new directory of the record dir.

After a kill, a staging in state "staging" is resumed: for a copy, completed items are kept and
`.part` ones redone, provided the source is still the same directory (device, inode), otherwise
the staging is discarded and the migration starts over; for a rename, if `tree` exists the rename
happened and the commit proceeds, if not the staging (journal only) is discarded. Any other state
goes on to the commit.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import os
import time

from ...common import log
from ...common.fsops import describe, errno_name, flock_within, is_mount_point, lexists, remove, walk_to
from .. import room
from ..room import NoRoom, Room
from ..treecopy import PART_SUFFIX, Copier, Interrupted, SourceError, from_source
from .commit import Staging, discard, finish
from .compare import Comparison
from .context import Context, Outcome, logger
from .journal import (
    ASIDE_MARK,
    ITEMS_DIR,
    LEGACY_DIR,
    STAGING_DIR,
    TREE_DIR,
    Journal,
    State,
    Strategy,
    read_journal,
    write_journal,
)

# A source that cannot be moved but may still be readable: a mount point (EBUSY), another mount
# (EXDEV), an immutable directory or a sticky parent (EPERM, EACCES). All of them get copied.
_RENAME_FALLBACK = frozenset({errno.EBUSY, errno.EXDEV, errno.EPERM, errno.EACCES})


LOCK_WAIT_S = 60.0


class Resumed(enum.Enum):
    FINISHED = enum.auto()  # migrated or saved: the boot settles
    DISCARDED = enum.auto()  # the staging described nothing any more: the boot starts afresh
    STOPPED = enum.auto()  # failed, interrupted or locked out: the staging (if any) waits


def lock(ctx: Context) -> int | None:
    """The record directory, created when missing, locked against a second init sharing the volume
    (flock locks of two open() of one directory exclude each other); None when another holds it
    past LOCK_WAIT_S, or a stop comes first."""
    parent = ctx.open_dir(os.path.dirname(ctx.plan.record_dir))
    with contextlib.suppress(FileExistsError):
        os.mkdir(ctx.record_name, 0o700, dir_fd=parent)
    record_fd = ctx.open(ctx.record_name, parent)
    # The holder may be a boot of this same volume on its way out (a container being replaced, a
    # process still dying after a kill): giving up at once would start the gateway on a target
    # whose commit that boot left half done. Waiting lets this boot finish it instead.
    if flock_within(record_fd, LOCK_WAIT_S, ctx.stop.is_set):
        return record_fd
    ctx.recorder.warn(
        "migration_busy",
        f"another init held the migration lock on {ctx.plan.record_dir} for {LOCK_WAIT_S:g}s: this one "
        "migrates nothing; a migration that init left unfinished is finished at the next boot",
        target=ctx.plan.target,
    )
    return None


def migrate(
    ctx: Context, record_fd: int, source: str, source_fd: int, strategy: Strategy, found: Comparison | None
) -> bool:
    """Migrate `source` (open as `source_fd`) by `strategy`, with what the comparison found for a
    merge or a save; True when it ended settled (done, or failed with the staging removed), False
    when a staging stays for the next boot."""
    opened = os.fstat(source_fd)
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    saved = os.path.join(ctx.plan.record_dir, LEGACY_DIR, f"{os.path.basename(source)}-{stamp}")
    journal = Journal(
        state=State.STAGING,
        strategy=strategy,
        source=source,
        source_id=(opened.st_dev, opened.st_ino),
        source_mount=is_mount_point(source),
        aside=f"{source}{ASIDE_MARK}{stamp}",
        target=saved if strategy is Strategy.SAVE else ctx.plan.target,
        started=log.rfc3339(now),
    )
    if found is not None and strategy is Strategy.SAVE:
        journal.conflicts, journal.conflict_count = found.conflicts[:5], len(found.conflicts)
    elif found is not None:
        # Both merges keep the target's entries; merge-missing keeps those that differ too.
        journal.kept_existing = found.alike + (
            len(found.conflicts) if strategy is Strategy.MERGE_MISSING else 0
        )
    log.event(
        logger,
        "info",
        "migration_started",
        f"migrating {source} into {journal.target} ({strategy})",
        source=source,
        target=journal.target,
        source_mount=journal.source_mount,
    )
    try:
        os.mkdir(STAGING_DIR, 0o700, dir_fd=record_fd)
        staging = Staging(journal, record_fd, ctx.open(STAGING_DIR, record_fd))
        if strategy is Strategy.RENAME and _try_rename(ctx, staging):
            return finish(ctx, staging)
        if found is not None and strategy is not Strategy.SAVE:
            paths = found.missing
        else:
            paths = [
                name for name in sorted(from_source("", os.listdir, source_fd)) if name != ctx.record_name
            ]
        _fits(ctx, record_fd, source_fd, paths)  # before the first byte is copied
        journal.moves = [(f"{ITEMS_DIR}/{index}", rel) for index, rel in enumerate(paths)]
        write_journal(staging.staging_fd, journal)
    except (SourceError, OSError) as error:
        ctx.fault(error, kept=False)
        discard(ctx, record_fd)
        return True
    return stage(ctx, staging, source_fd)


def _fits(ctx: Context, record_fd: int, source_fd: int, paths: list[str]) -> None:
    """Measure what the copy of `paths` will take and what the volume has; raises NoRoom when it
    cannot fit (the numbers go into the report either way)."""
    try:
        needed = room.needed(source_fd, paths)
    except OSError as error:  # what the copy would have met first: the same warning
        raise SourceError(error.filename or "", error) from error
    measured = Room(needed, room.free(record_fd))
    ctx.room = measured
    ctx.figures.update(needed_bytes=measured.needed, free_bytes=measured.free)
    if not measured.enough:
        raise NoRoom(measured, ctx.plan.volume)


def resume(ctx: Context, record_fd: int) -> Resumed:
    """Continue what a killed boot left in the staging."""
    staging_fd = ctx.open(STAGING_DIR, record_fd)
    journal = read_journal(staging_fd)
    ctx.figures["resumed"] = True
    if journal is not None and not journal.fits(ctx.plan):
        ctx.recorder.warn(
            "migration_staging_foreign",
            f"the journal in {ctx.staging} names paths this configuration does not migrate "
            f"(source {journal.source}, target {journal.target}): it is not followed",
            path=ctx.staging,
        )
        journal = None
    if journal is None or (journal.strategy is Strategy.RENAME and not lexists(TREE_DIR, staging_fd)):
        discard(ctx, record_fd)
        return Resumed.STOPPED if lexists(STAGING_DIR, record_fd) else Resumed.DISCARDED
    log.event(
        logger,
        "info",
        "migration_resumed",
        f"resuming the migration of {journal.source} ({journal.state})",
        source=journal.source,
        strategy=journal.strategy.value,
        state=journal.state.value,
    )
    ctx.source, ctx.strategy = journal.source, journal.strategy
    staging = Staging(journal, record_fd, staging_fd)
    if journal.state is State.STAGING and journal.strategy is not Strategy.RENAME:
        try:
            source_fd = ctx.open(journal.source)
            opened = os.fstat(source_fd)
        except OSError:
            opened = None
        if opened is None or (opened.st_dev, opened.st_ino) != journal.source_id:
            # Not the directory the staged copies came from: they describe nothing any more.
            discard(ctx, record_fd)
            return Resumed.DISCARDED
        settled = stage(ctx, staging, source_fd)
    else:
        settled = finish(ctx, staging)
    finished = ctx.outcome in (Outcome.MIGRATED, Outcome.CONFLICT)
    return Resumed.FINISHED if settled and finished else Resumed.STOPPED


def stage(ctx: Context, staging: Staging, source_fd: int) -> bool:
    """Copy every item not staged yet, then finish. False when stopped (the staging resumes)."""
    copier = Copier(ctx.owner, ctx.stop, os.fstat(source_fd).st_uid, (logger, "migration_progress"))
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(ITEMS_DIR, 0o700, dir_fd=staging.staging_fd)
        with walk_to(staging.staging_fd, ITEMS_DIR) as items_fd:
            for staged, rel in staging.journal.moves:
                item = staged.rpartition("/")[2]
                if lexists(item, items_fd):
                    copier.index(source_fd, rel, item)  # staged whole by an earlier run
                    continue
                remove(item + PART_SUFFIX, items_fd)  # half a copy, from a killed run
                copier.copy_item(source_fd, rel, items_fd, item)
                if lexists(item + PART_SUFFIX, items_fd):
                    os.rename(item + PART_SUFFIX, item, src_dir_fd=items_fd, dst_dir_fd=items_fd)
    except Interrupted:
        ctx.stopped()
        return False
    except (SourceError, OSError) as error:
        ctx.fault(error, kept=False)
        discard(ctx, staging.record_fd)
        return True
    finally:
        copier.close()
        _report_copier(ctx, copier)
    return finish(ctx, staging)


def _try_rename(ctx: Context, staging: Staging) -> bool:
    """The source renamed into the staging in one step; False when the kernel refuses and a copy
    is to be made instead (the journal then says so)."""
    journal = staging.journal
    write_journal(staging.staging_fd, journal)
    try:
        os.rename(journal.source, TREE_DIR, dst_dir_fd=staging.staging_fd)
    except OSError as error:
        if error.errno not in _RENAME_FALLBACK:
            raise SourceError("", error) from error
        log.event(
            logger,
            "info",
            "migration_copy_fallback",
            f"{journal.source} cannot be renamed into {ctx.plan.target} ({describe(error)}): copying instead",
            errno=errno_name(error),
        )
        journal.strategy = Strategy.COPY
        # EBUSY is the kernel's own word that the source is a mount point, whatever /proc said.
        journal.source_mount = journal.source_mount or error.errno == errno.EBUSY
        ctx.figures["rename_refused"] = errno_name(error)
        return False
    return True


def _report_copier(ctx: Context, copier: Copier) -> None:
    if copier.vanished:
        ctx.figures["vanished"] = ctx.figures.get("vanished", 0) + len(copier.vanished)
    if copier.linked:
        ctx.figures["hard_links_kept"] = ctx.figures.get("hard_links_kept", 0) + copier.linked
    left_out = (
        (
            "migration_devices_skipped",
            copier.devices,
            "device node(s) in the legacy state were not copied",
            "a device node in a user-owned volume would hand the device over to that user",
        ),
        (
            "migration_hardlinks_skipped",
            copier.hardlinks,
            "file(s) with several hard links, owned by neither the legacy directory's owner nor "
            "the target user, were not copied",
            "such a link can be planted to another user's file; they remain in the source",
        ),
        (
            "migration_xattrs_not_kept",
            copier.attributes_refused,
            "extended attribute(s) or ACL(s) could not be kept",
            f"the filesystem of {ctx.plan.volume} refused them; the files themselves were copied",
        ),
    )
    for event, found, what, why in left_out:
        if found:
            ctx.recorder.warn(
                event, f"{len(found)} {what} (e.g. {found[0]}): {why}", count=len(found), samples=found[:5]
            )
