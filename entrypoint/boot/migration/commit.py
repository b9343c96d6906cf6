"""From a complete staging to the record: commit, set the source aside, record, clean up; or, for
a staging that cannot go on, back to the target as it was (discard).

Where it differs: in the boot that staged the migration, or in a later one resuming it after a kill.

Crash safety. The journal is written (atomically, fsynced) before each step that matters, and each
step is idempotent, so a SIGKILL at any instant followed by a new boot converges to the state an
uninterrupted run reaches. "committing": every move whose staged entry still exists is done; the
others were done already. A copied source is only read until the record is in place; only then is
a plain source directory renamed aside, a mount point never. The journal is removed last. The
target is never written in place: what appears in it is a complete entry, moved by a rename that
refuses to replace anything (renameat2 RENAME_NOREPLACE). The commit goes into the journal's own
target: the application's state dir, a saved copy's directory in the record dir, or, for a staging
an earlier version of the init left, the volume's root (from where relocation then moves it).
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass

from ...common import log
from ...common.fsops import (
    AT_FDCWD,
    DIR_FLAGS,
    describe,
    errno_name,
    lexists,
    remove,
    rename_noreplace,
    syncfs,
    walk_to,
)
from .context import Context, Outcome, logger
from .journal import (
    ITEMS_DIR,
    JOURNAL_FILE,
    LEGACY_DIR,
    RECORD_FILE,
    STAGING_DIR,
    TREE_DIR,
    Journal,
    Record,
    State,
    Strategy,
    write_journal,
    write_record,
)

_SAMPLES = 5


@dataclass
class Staging:
    """A migration under way: its journal and the directories it works in (held open by the Context)."""

    journal: Journal
    record_fd: int
    staging_fd: int


def finish(ctx: Context, staging: Staging) -> bool:
    """Commit a complete staging and record it. True when it ended settled: migrated, or failed
    before the commit with a copy's staging removed; False when the staging is kept for the next boot."""
    journal = staging.journal
    try:
        if journal.state is State.STAGING:
            journal.entries, journal.size = _measure_staged(ctx, staging)
            if journal.strategy is not Strategy.RENAME:
                syncfs(staging.staging_fd)
            journal.state = State.COMMITTING
            write_journal(staging.staging_fd, journal)
    except OSError as error:
        # Still before the commit: a copy can be dropped (the source has it all); a renamed
        # tree is the source itself and stays where it is for the next boot.
        renamed = journal.strategy is Strategy.RENAME
        ctx.fault(error, kept=renamed)
        if not renamed:
            discard(ctx, staging.record_fd)
        return not renamed
    try:
        target_fd = _target(ctx, staging)
        log.event(logger, "info", "migration_commit", f"moving staged entries into {journal.target}")
        _commit(ctx, staging, target_fd)
        saved = journal.strategy is Strategy.SAVE
        record = Record(
            source=journal.source,
            strategy=journal.strategy.value,
            entries=journal.entries,
            size=journal.size,
            time=journal.started,
            result=Outcome.CONFLICT.value if saved else Outcome.MIGRATED.value,
            source_after=_set_aside(ctx, journal),
            kept_existing=journal.kept_existing,
            saved=journal.target if saved else None,
            conflicts=journal.conflict_count if saved else None,
        )
        write_record(staging.record_fd, record, prepare=ctx.owner.give)
        syncfs(staging.record_fd)  # the record is durable before the staging (and its journal) goes
        _clean(staging.record_fd, staging.staging_fd)
    except OSError as error:
        ctx.fault(error, kept=True)
        return False
    _report(ctx, journal, record)
    return True


def _report(ctx: Context, journal: Journal, record: Record) -> None:
    ctx.outcome = Outcome(record.result)
    ctx.source, ctx.strategy = journal.source, journal.strategy
    ctx.figures.update(
        entries=journal.entries,
        bytes=journal.size,
        record=os.path.join(ctx.plan.record_dir, RECORD_FILE),
        source_after=record.source_after,
    )
    if journal.strategy in (Strategy.MERGE, Strategy.MERGE_MISSING):
        kept = "kept_identical" if journal.strategy is Strategy.MERGE else "kept_existing"
        ctx.figures.update({kept: journal.kept_existing, "added": len(journal.moves)})
    fields = {key: value for key, value in record.to_json().items() if key != "version"}
    log.event(logger, "info", "migration_done", f"migrated {journal.source} into {journal.target}", **fields)
    if record.saved is None:
        return
    samples = journal.conflicts or []
    ctx.figures.update(saved=record.saved, conflicting_paths=journal.conflict_count)
    target, setting = ctx.plan.target, ctx.plan.mode_setting
    ctx.conflict(
        "migration_conflict",
        f"{journal.source} and {target} both hold state and differ at {journal.conflict_count} "
        f"path(s) (e.g. {', '.join(samples)}): {target} was kept as it is and the application starts "
        f"on it; the whole of {journal.source} was copied to {record.saved}. To merge by hand, copy "
        f"what you need from {record.saved} into {target}; or set {setting}=merge-missing to add "
        f"every path {target} lacks, its own versions winning.",
        source=journal.source,
        target=target,
        saved=record.saved,
        conflicting_paths=journal.conflict_count,
        samples=samples[:_SAMPLES],
        setting=f"{setting}=merge-missing",
    )


def discard(ctx: Context, record_fd: int) -> None:
    """Drop a staging that holds copies only (never a renamed tree) and leave the target as it was."""
    try:
        with walk_to(record_fd, STAGING_DIR) as staging_fd:
            if lexists(TREE_DIR, staging_fd):
                ctx.recorder.warn(
                    "migration_staging_kept",
                    f"{ctx.staging}/{TREE_DIR} holds a renamed legacy directory but no usable journal: "
                    "it was left alone; move its entries into place by hand",
                    path=f"{ctx.staging}/{TREE_DIR}",
                )
                return
            for name in (ITEMS_DIR, JOURNAL_FILE, JOURNAL_FILE + ".tmp"):
                remove(name, staging_fd)
        os.rmdir(STAGING_DIR, dir_fd=record_fd)
    except FileNotFoundError:
        pass
    except OSError as error:
        ctx.recorder.warn(
            "migration_staging_not_removed",
            f"could not remove {ctx.staging}: {describe(error)}",
            path=ctx.staging,
            errno=errno_name(error),
        )


def _target(ctx: Context, staging: Staging) -> int:
    """The journal's target, held open: a saved copy's directory is made when its commit begins."""
    journal = staging.journal
    if journal.strategy is not Strategy.SAVE:
        return ctx.open_dir(journal.target)
    saved_in = _made(ctx, staging.record_fd, LEGACY_DIR)
    return _made(ctx, saved_in, os.path.basename(journal.target))


def _made(ctx: Context, dir_fd: int, name: str) -> int:
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o700, dir_fd=dir_fd)
    fd = ctx.open(name, dir_fd)
    ctx.made.append(fd)
    return fd


def _measure(dir_fd: int, name: str) -> tuple[int, int]:
    """Entries (the tree's root included) and bytes of regular files under `name`, no link followed."""
    seen = os.lstat(name, dir_fd=dir_fd)
    if not stat.S_ISDIR(seen.st_mode):
        return 1, seen.st_size if stat.S_ISREG(seen.st_mode) else 0
    entries, size = 1, 0
    fd = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
    try:
        for child in os.listdir(fd):
            child_entries, child_size = _measure(fd, child)
            entries += child_entries
            size += child_size
    finally:
        os.close(fd)
    return entries, size


def _measure_staged(ctx: Context, staging: Staging) -> tuple[int, int]:
    entries, size = 0, 0
    for staged, _ in _moves(ctx, staging):
        parent, _, name = staged.rpartition("/")
        with walk_to(staging.staging_fd, parent) as parent_fd:
            if lexists(name, parent_fd):
                staged_entries, staged_size = _measure(parent_fd, name)
                entries += staged_entries
                size += staged_size
    return entries, size


def _moves(ctx: Context, staging: Staging) -> list[tuple[str, str]]:
    """(staged path, path in the target) of every entry still to move."""
    if staging.journal.strategy is not Strategy.RENAME:
        return staging.journal.moves
    # The renamed tree is the list: what is still in it is still to move.
    try:
        with walk_to(staging.staging_fd, TREE_DIR) as tree_fd:
            names = sorted(os.listdir(tree_fd))
    except FileNotFoundError:
        return []
    return [(f"{TREE_DIR}/{name}", name) for name in names if name != ctx.record_name]


def _commit(ctx: Context, staging: Staging, target_fd: int) -> None:
    for staged, rel in _moves(ctx, staging):
        staged_parent, _, staged_name = staged.rpartition("/")
        parent, _, name = rel.rpartition("/")
        with contextlib.ExitStack() as stack:
            try:
                from_fd = stack.enter_context(walk_to(staging.staging_fd, staged_parent))
            except FileNotFoundError:
                continue  # the cleanup of a run killed after its commit removed it: all moved
            if not lexists(staged_name, from_fd):
                continue  # moved by an earlier run, or it vanished from the source before its copy
            to_fd = stack.enter_context(walk_to(target_fd, parent))
            rename_noreplace(from_fd, staged_name, to_fd, name)


def _set_aside(ctx: Context, journal: Journal) -> str:
    """Rename a plain source directory aside once its content is in the target; a mount is
    never touched (it may be read-only, and it is the host's), nor a source only saved."""
    source, aside = journal.source, journal.aside
    if journal.strategy is Strategy.RENAME:
        return f"moved into {journal.target}"
    if journal.strategy is Strategy.SAVE:
        return f"left in place: {ctx.plan.target} kept its own state"
    if journal.source_mount:
        return "left in place: a mount point is never modified"
    try:
        seen = os.lstat(source)
    except FileNotFoundError:
        seen = None
    if seen is None or stat.S_ISLNK(seen.st_mode):
        if os.path.lexists(aside):  # renamed by an earlier run that was interrupted after it
            return f"renamed to {aside}"
        return "left in place: it was removed during the migration"
    if (seen.st_dev, seen.st_ino) != journal.source_id:
        return "left in place: it was replaced during the migration"
    try:
        rename_noreplace(AT_FDCWD, source, AT_FDCWD, aside)
    except OSError as error:
        ctx.recorder.warn(
            "migration_source_kept",
            f"{source} was migrated but could not be renamed aside to {aside} ({describe(error)}): "
            "it stays as it is",
            source=source,
            errno=errno_name(error),
        )
        return f"left in place: {describe(error)}"
    return f"renamed to {aside}"


def _clean(record_fd: int, staging_fd: int) -> None:
    """The journal goes last: until then a new boot can redo any step of the commit. Anything
    else goes first, a journal.json.tmp left by a kill mid-write included."""
    for name in os.listdir(staging_fd):
        if name != JOURNAL_FILE:
            remove(name, staging_fd)
    os.unlink(JOURNAL_FILE, dir_fd=staging_fd)
    os.rmdir(STAGING_DIR, dir_fd=record_fd)
