"""The operator's rollback: a checkpoint's trees put back in place of the live ones, the live ones
set aside under `rolled-back/<UTC time>/` (never deleted), and the release history made to say the
state is the checkpoint's release's again, so that its image boots on it without a downgrade hold.

Where it differs: an operator's one-off process (`<init> rollback [ID]`, a `docker compose run`, a
Kubernetes Job), as the target user, with no application on the state: it takes the state lock
without waiting, and refuses when a live init holds it.

Crash safety: a journal in the record dir (`journal.py`) says which checkpoint goes back and
where the live trees go, and is written before anything moves. The checkpoint's trees are copied
(the checkpoint stays whole, for another rollback) into a staging directory; once complete and on
disk, each tree is swapped in by two renames within the state volume, each done only if not done
yet. A rollback killed at any instant is finished by the next one (`rollback` with no argument),
which says so; the checkpoint and the trees set aside are never touched. A workspace the checkpoint
holds is not put back (the user's work since the upgrade would go): the output names where it is.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass

from ...common import checkpoints, log, releases
from ...common.checkpoints import Manifest
from ...common.fsops import DIR_FLAGS, syncfs
from ...common.plans import StopFlag, UpgradePlan
from ...common.releases import History, Ran
from ..treecopy import PART_SUFFIX, Copier, Owner
from . import journal

STAGING = "rollback-staging"
# The trees a rollback puts back: the state dir and the home (a workspace stays where it is).
PUT_BACK = ("gateway", "home")
logger = log.get("rollback")


class RollbackRefused(Exception):
    """No rollback is possible (no checkpoint to go back to, an unknown id): the message says why."""


@dataclass(frozen=True)
class RolledBack:
    checkpoint: Manifest
    aside: str  # where the live trees went
    resumed: bool  # a rollback killed before it finished was finished


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
    """Roll back to `wanted` (or the default), or finish a rollback a kill interrupted. The caller
    holds the state lock. Raises RollbackRefused, OSError."""
    pending = journal.pending(plan.record_dir)
    if pending is not None:
        manifest = choose(plan, str(pending.get("checkpoint")))
        aside = str(pending["aside"])
    else:
        manifest = choose(plan, wanted)
        aside = os.path.join(plan.record_dir, checkpoints.ROLLED_BACK, checkpoints.stamp(time.time()))
        journal.write(plan.record_dir, manifest.id, aside, swapping=False)
    staging = os.path.join(plan.record_dir, STAGING)
    if not (pending or {}).get("swapping"):
        _stage(plan, manifest, staging, stop)
        journal.write(plan.record_dir, manifest.id, aside, swapping=True)
    os.makedirs(aside, 0o700, exist_ok=True)
    for tree in manifest.trees:
        if tree.name in PUT_BACK and tree.included:
            _swap(os.path.join(staging, tree.name), tree.source, os.path.join(aside, tree.name))
    _rewrite_history(plan, manifest)
    shutil.rmtree(staging, ignore_errors=True)
    journal.remove(plan.record_dir)
    log.event(
        logger,
        "info",
        "rolled_back",
        f"rolled back to checkpoint {manifest.id}; the live state was set aside in {aside}",
        checkpoint=manifest.id,
        aside=aside,
        resumed=pending is not None,
    )
    return RolledBack(manifest, aside, pending is not None)


def _stage(plan: UpgradePlan, manifest: Manifest, staging: str, stop: StopFlag) -> None:
    """The checkpoint's trees copied into the staging directory (afresh: a killed copy is redone)."""
    shutil.rmtree(staging, ignore_errors=True)
    os.mkdir(staging, 0o700)
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


def _swap(staged: str, live: str, aside: str) -> None:
    """The live tree aside, the staged one in its place: each rename done only if not done yet."""
    if not os.path.lexists(aside) and os.path.lexists(live):
        os.rename(live, aside)
    if os.path.lexists(staged):
        os.rename(staged, live)


def next_steps(done: RolledBack) -> str:
    """What the operator reads when the rollback is done: what the state is now, what to run."""
    release = done.checkpoint.release
    label = release.label if release else "the release it was taken from"
    lines = [
        ("finished the rollback a kill had interrupted: " if done.resumed else "rolled back: ")
        + f"the state is checkpoint {done.checkpoint.id} again, {label}'s.",
        f"The state it replaced is set aside (never deleted) in {done.aside}.",
        f"Next: run the image of {label} (in compose.yml, the image that carries it), then start it "
        "(`docker compose up -d`). Its boot finds its own release on the state and starts.",
    ]
    if any(tree.name == "workspace" and tree.included for tree in done.checkpoint.trees):
        record_dir = os.path.dirname(os.path.dirname(done.aside))
        copy = os.path.join(checkpoints.root(record_dir), done.checkpoint.id, "workspace")
        lines.append(f"The workspace was not put back (your work since stays); its copy is in {copy}.")
    return "\n".join(lines)


def _rewrite_history(plan: UpgradePlan, manifest: Manifest) -> None:
    """The state is the checkpoint's release's again: every release newer than it is rolled back
    from (kept in the history, no longer counted as having run on this state)."""
    history = releases.read(plan.record_dir) or History()
    back_to = manifest.release
    kept = [ran for ran in history.ran if back_to is not None and not back_to.older_than(ran.release)]
    gone = [ran for ran in history.ran if ran not in kept]
    if back_to is not None and not (kept and kept[-1].release.same(back_to)):
        kept.append(Ran(back_to, time.time(), "rolled back to"))
    releases.write(plan.record_dir, History(kept, [*history.rolled_back, *gone]))
