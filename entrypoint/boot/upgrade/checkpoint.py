"""A checkpoint: the state's trees copied whole into the record dir, every SQLite database in them
consolidated, a manifest last; and the pruning of old ones.

Where it differs: the operator's `checkpoint` and `rollback` (one-off processes, as the target user)
take one too, holding the state lock as the upgrade phase does.

Crash safety: everything is written into `.staging-<id>/`, flushed (syncfs), then renamed to `<id>`
in one step: a SIGKILL at any instant leaves a whole checkpoint or a staging directory, which the
next taker removes; the live trees are only ever read. Room is measured before the first byte:
what the trees occupy (a workspace over the budget left out and named) against what the volume has.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable

from ...common import checkpoints, log, rundir
from ...common.checkpoints import Manifest, Tree
from ...common.fsops import DIR_FLAGS, syncfs
from ...common.plans import StopFlag
from ...common.releases import Release
from .. import room
from ..room import NoRoom, Room
from ..treecopy import PART_SUFFIX, Copier, Owner
from . import sqlitecopy

logger = log.get("upgrade")


def clear_staging(root: str) -> None:
    """Remove what a killed taker left (a staging directory, a half-taken tree)."""
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(root):
            if name.startswith(checkpoints.STAGING_PREFIX):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)


def _size(path: str) -> int:
    parent = os.open(os.path.dirname(path) or "/", DIR_FLAGS)
    try:
        return room.needed(parent, [os.path.basename(path)])
    finally:
        os.close(parent)


def trees_to_take(
    trees: tuple[tuple[str, str], ...], workspace: str | None, workspace_max: int
) -> list[Tree]:
    """What a checkpoint holds: each tree that exists, with its size; the workspace when it is no
    larger than `workspace_max` (else it is named as left out)."""
    taken = [Tree(name, path, bytes=_size(path)) for name, path in trees if os.path.isdir(path)]
    if workspace is not None and os.path.isdir(workspace):
        size = _size(workspace)
        if size <= workspace_max:
            taken.append(Tree("workspace", workspace, bytes=size))
        else:
            why = f"{room.size(size)}, over the checkpoint's workspace budget of {room.size(workspace_max)}"
            taken.append(Tree("workspace", workspace, included=False, reason=why, bytes=size))
    return taken


def take(
    record_dir: str,
    release: Release | None,
    trees: list[Tree],
    why: str,
    stop: StopFlag,
    now: Callable[[], float] = time.time,
) -> Manifest:
    """Take a checkpoint of `trees` (as `trees_to_take` measured them). Raises NoRoom before the
    first byte when it cannot fit, Interrupted when `stop` is set (its staging is removed), OSError."""
    root = checkpoints.root(record_dir)
    os.makedirs(root, 0o700, exist_ok=True)
    clear_staging(root)
    root_fd = os.open(root, DIR_FLAGS)
    try:
        measured = Room(sum(tree.bytes for tree in trees if tree.included), room.free(root_fd))
        if not measured.enough:
            raise NoRoom(measured, record_dir)
        started = now()
        name = checkpoints.unused(checkpoints.new_id(release, started), set(os.listdir(root_fd)))
        staging = checkpoints.STAGING_PREFIX + name
        os.mkdir(staging, 0o700, dir_fd=root_fd)
        try:
            manifest = _fill(root, staging, root_fd, name, release, trees, why, stop, started)
        except BaseException:
            shutil.rmtree(os.path.join(root, staging), ignore_errors=True)
            raise
        os.rename(staging, name, src_dir_fd=root_fd, dst_dir_fd=root_fd)  # whole, in one step
        os.fsync(root_fd)
    finally:
        os.close(root_fd)
    log.event(
        logger,
        "info",
        "checkpoint_taken",
        f"checkpoint {name}: {manifest.entries} entries, {room.size(manifest.bytes)}",
        checkpoint=name,
        entries=manifest.entries,
        bytes=manifest.bytes,
        seconds=round(now() - started, 3),
    )
    return manifest


def _fill(
    root: str,
    staging: str,
    root_fd: int,
    name: str,
    release: Release | None,
    trees: list[Tree],
    why: str,
    stop: StopFlag,
    started: float,
) -> Manifest:
    staging_fd = os.open(staging, DIR_FLAGS, dir_fd=root_fd)
    try:
        copier = Copier(Owner(None), stop, os.geteuid(), (logger, "checkpoint_progress"))
        try:
            for tree in trees:
                if not tree.included:
                    continue
                parent = os.open(os.path.dirname(tree.source) or "/", DIR_FLAGS)
                try:
                    copier.copy_item(parent, os.path.basename(tree.source), staging_fd, tree.name)
                finally:
                    os.close(parent)
                os.rename(tree.name + PART_SUFFIX, tree.name, src_dir_fd=staging_fd, dst_dir_fd=staging_fd)
        finally:
            copier.close()
        inside = os.path.join(root, staging)
        found = [sqlitecopy.copied(path, inside) for path in sqlitecopy.databases(inside)]
        manifest = Manifest(
            id=name,
            release=release,
            taken=started,
            why=why,
            entries=copier.entries,
            bytes=copier.bytes,
            reflinked=copier.content.reflinked,
            trees=tuple(trees),
            databases=tuple(found),
        )
        data = rundir.json_bytes(manifest.to_json())
        rundir.replace_file(checkpoints.MANIFEST, data, dir_fd=staging_fd, mode=0o600)
        syncfs(staging_fd)  # every copied byte on disk before the name says it is whole
    finally:
        os.close(staging_fd)
    return manifest


def prune(record_dir: str, keep: int, spare: Release | None) -> list[str]:
    """Remove all but the newest `keep` checkpoints, never the newest one of `spare` (the release
    the running one came from: the way back); the ids removed."""
    whole = checkpoints.listing(record_dir)
    spared = next((m.id for m in whole if spare is not None and m.release and m.release.same(spare)), None)
    removed = []
    root = checkpoints.root(record_dir)
    for manifest in whole[keep:]:
        if manifest.id == spared:
            continue
        # Out of the listing first, in one step: a removal killed half-way is a staging leftover,
        # never a checkpoint with files missing.
        going = checkpoints.STAGING_PREFIX + "removed-" + manifest.id
        os.rename(os.path.join(root, manifest.id), os.path.join(root, going))
        shutil.rmtree(os.path.join(root, going), ignore_errors=True)
        removed.append(manifest.id)
    clear_staging(root)
    if removed:
        log.event(
            logger, "info", "checkpoints_pruned", f"removed {len(removed)} old checkpoints", removed=removed
        )
    return removed
