"""The migration decision: lock, finish a killed migration, gather the volume's root into the
target, then find a migration recorded, or choose a source and the way to migrate it; settle.

On every boot: a boot with nothing to migrate still gathers the volume's root and settles the home's
links.

The way a legacy tree reaches the target depends on what the target holds:
- nothing at all: the tree itself, renamed where the kernel allows (as root), else copied;
- only entries the tree lacks or holds alike (the leftovers of an earlier start): a merge, the
  missing paths copied in, nothing of the target's touched;
- an entry that differs from the tree's: a save, the target kept as it is and the whole tree
  copied into the record dir, once (the record says so; a later boot copies nothing again);
- with `merge-missing` asked for: the missing paths copied in, whatever differs.
"""

from __future__ import annotations

import os

from ...common.fsops import lexists
from ...common.plans import MigrationMode
from ..treecopy import SourceError, from_source
from . import relocate, staging
from .compare import Comparison, compare
from .context import OPERATOR_DIR, Context, Outcome
from .journal import RECORD_FILE, STAGING_DIR, Record, Strategy, find_record
from .settle import settle
from .sources import Kind, choose, report_odd, survey


def decide(ctx: Context) -> None:
    """What this boot does about legacy state; the outcome ends up in `ctx`."""
    plan = ctx.plan
    # What each legacy path holds; foreign links, files and unreadable ones get a warning.
    sources = survey(ctx) if plan.mode != MigrationMode.OFF else []
    ctx.legacy_found = any(source.kind in (Kind.DATA, Kind.UNREADABLE) for source in sources)
    report_odd(ctx, sources)
    # The records, locked against a second init on the volume, and the target (made if missing).
    try:
        _volume(ctx)
        record_fd = staging.lock(ctx)
        target_fd = None if record_fd is None else relocate.open_target(ctx)
    except OSError as error:  # a read-only or full volume, a target that is not a directory
        ctx.fault(error, kept=False)
        return
    if record_fd is None or target_fd is None:  # another init holds the volume: nothing was done
        ctx.outcome = Outcome.FAILED
        return
    ctx.made += (record_fd, target_fd)
    # A staging left by a killed boot comes before anything new: finished (an earlier version's
    # into the volume's root, its target), kept, or dropped.
    pending = plan.mode != MigrationMode.OFF and lexists(STAGING_DIR, record_fd)
    resumed = staging.resume(ctx, record_fd) if pending else None
    # What lies at the volume's root that is not the volume's own belongs in the target.
    relocate.gather(ctx, record_fd, target_fd)
    if plan.mode == MigrationMode.OFF or resumed is staging.Resumed.STOPPED:
        return
    if resumed is staging.Resumed.FINISHED:
        settle(ctx, sources, ctx.source)
        return
    # A record of an earlier boot's migration: nothing to migrate again, unless merge-missing is
    # asked for after a conflict (it adds what the target lacks, the warning said so).
    record = find_record(record_fd)
    merges_after_conflict = plan.mode == MigrationMode.MERGE_MISSING and record is not None
    if record is not None and not (merges_after_conflict and record.result == Outcome.CONFLICT):
        _already_migrated(ctx, record)
        settle(ctx, sources, record.source)
        return
    # Legacy paths that are links into the volume were an earlier version's: nothing to migrate.
    # An unreadable first source blocks the rest.
    chosen = choose(sources)
    if chosen is None or chosen.kind is Kind.UNREADABLE:
        if chosen is not None:
            ctx.outcome = Outcome.BLOCKED
        settle(ctx, sources, None)
        return
    ctx.source = chosen.path
    # A stop asked for before anything was written: nothing to resume, the next boot starts over.
    if ctx.stop.is_set():
        ctx.stopped()
        return
    # How, from what the target holds; then migrate. Settled unless a staging stays for next boot.
    try:
        source_fd = from_source("", ctx.open, chosen.path)
        strategy, found = _strategy(ctx, source_fd, target_fd)
    except (SourceError, OSError) as error:
        ctx.fault(error, kept=False)
        settle(ctx, sources, chosen.path)
        return
    if staging.migrate(ctx, record_fd, chosen.path, source_fd, strategy, found):
        settle(ctx, sources, chosen.path)


def _volume(ctx: Context) -> None:
    """The state volume's root, made when missing (outside a container nothing else made it)."""
    if not os.path.lexists(ctx.plan.volume):
        os.mkdir(ctx.plan.volume, 0o700)
        ctx.made.append(ctx.open(ctx.plan.volume, flags=OPERATOR_DIR))


def _strategy(ctx: Context, source_fd: int, target_fd: int) -> tuple[Strategy, Comparison | None]:
    if not os.listdir(target_fd):
        # Root renames the tree and the ownership phase re-owns it; as the user, a copy is the
        # only way to own all of it (and to leave nothing half-moved when a part is unreadable).
        return (Strategy.RENAME if ctx.plan.owner is not None else Strategy.COPY), None
    found = compare(ctx, source_fd, target_fd)
    if ctx.plan.mode == MigrationMode.MERGE_MISSING:
        return Strategy.MERGE_MISSING, found
    return (Strategy.SAVE if found.conflicts else Strategy.MERGE), found


def _already_migrated(ctx: Context, record: Record) -> None:
    ctx.outcome, ctx.source = Outcome.ALREADY_MIGRATED, record.source
    ctx.strategy = Strategy.parse(record.strategy)
    # The figures show the record as written, a strategy this version does not know included.
    ctx.figures.update(
        strategy=record.strategy,
        entries=record.entries,
        bytes=record.size,
        record=os.path.join(ctx.plan.record_dir, RECORD_FILE),
        result=record.result,
    )
    if record.saved is not None:
        ctx.figures["saved"] = record.saved
