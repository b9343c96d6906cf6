"""The operator's rollback: a checkpoint's trees put back in place of the live ones, the live ones
set aside under `rolled-back/<UTC time>/` (never deleted), and the release history made to say the
state is the checkpoint's release's again, so that its image boots on it without a downgrade hold.

Where it differs: an operator's one-off process (`<init> rollback [ID]`, a `docker compose run`, a
Kubernetes Job), as the target user, with no application on the state: it takes the state lock
without waiting, and refuses when a live init holds it.

The checkpoint's trees are copied (the checkpoint stays whole, for another rollback) into the
swap's staging directory, then swapped in (`swap.py`: the journal, the renames, and how a kill at
any instant is finished). A rollback or restore that a kill interrupted is finished first, and is
then what this run did. A workspace the checkpoint holds is not put back (the user's work since the
upgrade would go): the output names where it is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ...common import checkpoints, log, releases
from ...common.checkpoints import Manifest
from ...common.fsops import DIR_FLAGS, syncfs
from ...common.plans import StopFlag, UpgradePlan
from ...common.releases import History
from ...common.swapjournal import Swap
from ..treecopy import PART_SUFFIX, Copier, Owner
from . import swap

# The trees a rollback puts back: the state dir and the home (a workspace stays where it is).
PUT_BACK = ("gateway", "home")
logger = log.get("rollback")


class RollbackRefused(Exception):
    """No rollback is possible (no checkpoint to go back to, an unknown id): the message says why."""


@dataclass(frozen=True)
class RolledBack:
    swap: Swap
    checkpoint: Manifest | None  # None: this run finished a swap a kill had interrupted


def choose(plan: UpgradePlan, wanted: str | None) -> Manifest:
    """The checkpoint `wanted`, or by default the newest one of a release older than the newest
    that ran on the state (what the last upgrade came from)."""
    whole = checkpoints.listing(plan.record_dir)
    if wanted is not None:
        found = next((manifest for manifest in whole if manifest.id == wanted), None)
        if found is None:
            ids = ", ".join(manifest.id for manifest in whole) or "none"
            raise RollbackRefused(
                f"no checkpoint {wanted!r} in {checkpoints.root(plan.record_dir)} (there are: {ids})"
            )
        return found
    history = releases.read(plan.record_dir) or History()
    newest = history.newest()
    for manifest in whole:
        if newest is None or manifest.release is None or manifest.release.older_than(newest.release):
            return manifest
    raise RollbackRefused(
        f"no checkpoint of a release older than {newest.release.label if newest else 'the current one'} "
        f"in {checkpoints.root(plan.record_dir)}: nothing to roll back to"
    )


def roll_back(plan: UpgradePlan, wanted: str | None, stop: StopFlag) -> RolledBack:
    """Roll back to `wanted` (or the default), or finish a swap a kill interrupted. The caller
    holds the state lock. Raises RollbackRefused, journal.Unreadable, OSError."""
    resumed = swap.resume(plan.record_dir)
    if resumed is not None:
        log.event(logger, "warning", f"{resumed.kind}_finished", swap.finished(resumed).splitlines()[0])
        return RolledBack(resumed, None)
    manifest = choose(plan, wanted)
    staging = swap.fresh_staging(plan.record_dir)
    _stage(plan, manifest, staging, stop)
    trees = tuple(
        (tree.name, tree.source) for tree in manifest.trees if tree.name in PUT_BACK and tree.included
    )
    aside = swap.aside_dir(plan.record_dir, checkpoints.ROLLED_BACK)
    swapped = Swap("rollback", manifest.id, manifest.release, trees, aside)
    swap.swap_in(plan.record_dir, swapped)
    log.event(
        logger,
        "info",
        "rolled_back",
        f"rolled back to checkpoint {manifest.id}; the live state was set aside in {aside}",
        checkpoint=manifest.id,
        aside=aside,
    )
    return RolledBack(swapped, manifest)


def _stage(plan: UpgradePlan, manifest: Manifest, staging: str, stop: StopFlag) -> None:
    """The checkpoint's trees copied into the staging directory, and on disk."""
    source = os.open(os.path.join(checkpoints.root(plan.record_dir), manifest.id), DIR_FLAGS)
    staging_fd = os.open(staging, DIR_FLAGS)
    copier = Copier(Owner(None), stop, os.geteuid(), (logger, "rollback_progress"))
    try:
        for tree in manifest.trees:
            if tree.name in PUT_BACK and tree.included:
                copier.copy_item(source, tree.name, staging_fd, tree.name)
                os.rename(tree.name + PART_SUFFIX, tree.name, src_dir_fd=staging_fd, dst_dir_fd=staging_fd)
        syncfs(staging_fd)  # the copies on disk before any live tree moves
    finally:
        copier.close()
        os.close(staging_fd)
        os.close(source)


def next_steps(done: RolledBack) -> str:
    """What the operator reads when the rollback is done: what the state is now, what to run."""
    if done.checkpoint is None:
        return swap.finished(done.swap)
    release = done.checkpoint.release
    label = release.label if release else "the release it was taken from"
    lines = [
        f"rolled back: the state is checkpoint {done.checkpoint.id} again, {label}'s.",
        f"The state it replaced is set aside (never deleted) in {done.swap.aside}.",
        swap.next_run(release),
    ]
    if any(tree.name == "workspace" and tree.included for tree in done.checkpoint.trees):
        record_dir = os.path.dirname(os.path.dirname(done.swap.aside))
        copy = os.path.join(checkpoints.root(record_dir), done.checkpoint.id, "workspace")
        lines.append(f"The workspace was not put back (your work since stays); its copy is in {copy}.")
    return "\n".join(lines)
