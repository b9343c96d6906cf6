"""Staged trees put in place of live ones, the live ones set aside (never deleted), and the state's
release history made to say whose the state is now: the one way a rollback (a checkpoint's trees)
and a restore (an archive's state) change the live state.

Where it differs: the operator's `rollback` and `restore` stage and swap (one-off processes, as the
target user, holding the state lock); the boot's upgrade phase finishes a swap that a kill
interrupted, before anything starts on the state.

Crash safety: the caller fills the staging directory (`<record dir>/swap-staging/`, on the state
volume: every move is then a rename) and flushes it to disk; only then is the journal written
(`common/swapjournal.py`), so that a kill before it leaves the live state untouched and a staging directory
that the next swap (or boot) removes. Each tree then goes in by two renames, each done only if not
done yet; the history is rewritten (to the same result however often); what the staging directory
still holds is kept or removed; the journal goes last. A kill at any instant after the journal is
finished by the next rollback, restore or boot.
"""

from __future__ import annotations

import os
import shutil
import time

from ...common import checkpoints, releases, swapjournal
from ...common.releases import History, Ran, Release
from ...common.swapjournal import Swap

# How the history says the state came to be a release's again.
HOW = {"rollback": "rolled back to", "restore": "restored"}


def fresh_staging(record_dir: str) -> str:
    """An empty staging directory (whatever a killed swap left there is gone)."""
    path = swapjournal.staging(record_dir)
    shutil.rmtree(path, ignore_errors=True)
    os.mkdir(path, 0o700)
    return path


def aside_dir(record_dir: str, kind_dir: str) -> str:
    """`<record dir>/<kind_dir>/<UTC time>`, a name no earlier swap used (two within a second)."""
    parent = os.path.join(record_dir, kind_dir)
    taken = set(os.listdir(parent)) if os.path.isdir(parent) else set()
    return os.path.join(parent, checkpoints.unused(checkpoints.stamp(time.time()), taken))


def swap_in(record_dir: str, swap: Swap) -> None:
    """Put the staged trees in place. The staging directory is whole and on disk; the caller holds
    the state lock. Raises OSError (the journal then lets the next swap or boot finish it)."""
    swapjournal.write(record_dir, swap)
    finish(record_dir, swap)


def resume(record_dir: str) -> Swap | None:
    """Finish the swap a kill interrupted, if any; it. Raises swapjournal.Unreadable, OSError."""
    pending = swapjournal.pending(record_dir)
    if pending is not None:
        finish(record_dir, pending)
    return pending


def finish(record_dir: str, swap: Swap) -> None:
    os.makedirs(swap.aside, 0o700, exist_ok=True)
    staging = swapjournal.staging(record_dir)
    for staged, live in swap.trees:
        _swap(os.path.join(staging, staged), live, os.path.join(swap.aside, os.path.basename(live)))
    rewrite_history(record_dir, swap.release, HOW.get(swap.kind, swap.kind))
    if swap.keep is None:
        shutil.rmtree(staging, ignore_errors=True)
    elif os.path.lexists(staging):
        os.makedirs(os.path.dirname(swap.keep), 0o700, exist_ok=True)
        os.rename(staging, swap.keep)
    swapjournal.remove(record_dir)


def _swap(staged: str, live: str, aside: str) -> None:
    """The live tree aside, the staged one in its place. A staged tree that is gone went in
    already; a live one that is not there (a first token) has nothing to set aside."""
    if not os.path.lexists(staged):
        return
    if os.path.lexists(live) and not os.path.lexists(aside):
        os.rename(live, aside)
    os.rename(staged, live)


def rewrite_history(record_dir: str, release: Release | None, how: str) -> None:
    """The state is `release`'s now: every release newer than it is no longer counted as having
    run on it (kept as rolled back from), and it is the current one."""
    history = releases.read(record_dir) or History()
    kept = [ran for ran in history.ran if release is not None and not release.older_than(ran.release)]
    gone = [ran for ran in history.ran if ran not in kept]
    if release is not None and not (kept and kept[-1].release.same(release)):
        kept.append(Ran(release, time.time(), how))
    releases.write(record_dir, History(kept, [*history.rolled_back, *gone]))


def next_run(release: Release | None) -> str:
    """What to run once the state is `release`'s."""
    label = release.label if release else "the release it belongs to"
    return (
        f"Next: run the image of {label} (in compose.yml, the image that carries it), then start it "
        "(`docker compose up -d`). Its boot finds its own release on the state and starts."
    )


def finished(done: Swap) -> str:
    """What the operator reads when a command finished a swap a kill had interrupted."""
    label = done.release.label if done.release else "the release it belonged to"
    return "\n".join(
        (
            f"finished the {done.kind} of {done.source} that a kill had interrupted: the state is {label}'s.",
            f"The state it replaced is set aside (never deleted) in {done.aside}.",
            "This run did only that: run it again for what you asked, if it was something else.",
            next_run(done.release),
        )
    )
