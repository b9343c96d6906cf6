"""The gate: which release last ran on this state, and what a boot of another one must do first.

- the same release: nothing (a read of the history, no write);
- an older release than the newest that ran: held, nothing changed, the way back named (the
  downgrade guard; `<PREFIX>ALLOW_DOWNGRADE=1` starts it anyway);
- a new release on a state that holds anything: room measured, a checkpoint of the state as the
  last release left it, the new release's preflight on its databases (`incompatible` and
  `indeterminate` hold; `<PREFIX>UPGRADE_PREFLIGHT=warn` starts anyway), then the release recorded;
- a new state (nothing in it yet): the release recorded.

A state without a history yet (an earlier version of this image, upstream's own setup) is dated by
the application's own stamp in its config (the release that last wrote it), so the first boot of
this feature on an old state is gated too; a state with neither is checkpointed as of an unknown
release. The release is recorded only when the gate lets it start: a held boot changes nothing.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ...common import releases
from ...common.guardstate import HoldCause
from ...common.plans import Hold, StopFlag, UpgradePlan
from ...common.releases import History, Ran, Release
from ...common.report import PhaseRecorder
from ...common.settings import Name

if TYPE_CHECKING:
    from ...common.checkpoints import Manifest


@dataclass
class Decision:
    holds: Hold | None = None
    checkpoint: str | None = None  # taken by this boot: the old ones are pruned once it started
    came_from: Release | None = None  # the release that ran before: its newest checkpoint stays


def decide(plan: UpgradePlan, recorder: PhaseRecorder, stop: StopFlag) -> Decision:
    installed = plan.release
    if installed is None:
        recorder.figures["release"] = None
        return Decision()
    recorder.figures["release"] = installed.label
    history = releases.read(plan.record_dir)
    if history is None:
        history = History(_dated(plan))
    last = history.current
    if last is not None and last.release.same(installed):
        if not os.path.exists(os.path.join(plan.record_dir, releases.FILE)):
            _record(plan, history, installed, how="dated")  # once: the state now has a history
        return Decision()
    recorder.figures["from"] = last.release.label if last else None
    newest = history.newest()
    if newest is not None and installed.older_than(newest.release):
        return _downgrade(plan, recorder, history, newest)
    state = plan.trees[0][1]
    if last is None and not _holds_anything(state):
        _record(plan, history, installed)  # a new state: nothing to take a checkpoint of
        return Decision()
    return _upgrade(plan, recorder, history, last.release if last else None, stop)


def _holds_anything(path: str) -> bool:
    try:
        return bool(os.listdir(path))
    except OSError:
        return False


def _dated(plan: UpgradePlan) -> list[Ran]:
    """The release the application's own stamp names (the one that last wrote its config), as the
    state's only known one; none when there is no such stamp."""
    state = plan.trees[0][1]
    for name in plan.config_names:
        try:
            with open(os.path.join(state, name), encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            continue
        for key in plan.stamp:
            data = data.get(key) if isinstance(data, dict) else None
        if isinstance(data, str) and releases.version_key(data):
            package = name.rpartition(".")[0]  # `<package>.json`: the package that wrote it
            return [Ran(Release(package, data), os.stat(os.path.join(state, name)).st_mtime, "dated")]
    return []


def _record(plan: UpgradePlan, history: History, installed: Release, how: str = "booted") -> None:
    history.ran.append(Ran(installed, time.time(), how))
    releases.write(plan.record_dir, history)


def _downgrade(plan: UpgradePlan, recorder: PhaseRecorder, history: History, newest: Ran) -> Decision:
    installed = plan.release
    assert installed is not None
    allow = plan.variables[Name.ALLOW_DOWNGRADE]
    if plan.settings.allow_downgrade:
        recorder.warn(
            "upgrade_downgrade_allowed",
            f"{installed.label} is older than {newest.release.label}, which ran on this state: started "
            f"anyway ({allow}=1); it may refuse or misread the newer state",
            newest=newest.release.label,
        )
        _record(plan, history, installed)
        return Decision()
    from ...common import checkpoints  # here: a boot of the same release never lists them

    matching = next(
        (m for m in checkpoints.listing(plan.record_dir) if m.release and m.release.same(installed)), None
    )
    back = (
        f"checkpoint {matching.id} holds this state as {installed.label} left it: roll back to it with "
        f"`{plan.rollback} {matching.id}` (the state {newest.release.label} made is set aside, not deleted)"
        if matching
        else f"no checkpoint holds this state as {installed.label} left it"
    )
    reason = (
        f"this image runs {installed.label}, older than {newest.release.label}, which ran on this state: "
        f"an older release may refuse or misread a newer state, so {plan.program} was not started and "
        f"nothing was changed; {back}"
    )
    recorder.warn(
        "upgrade_downgrade_held", reason, newest=newest.release.label, checkpoint=matching and matching.id
    )
    how = (
        f"run the image of {newest.release.label} again; or stop this container and run `{plan.rollback}`, "
        f"then start this image; or set {allow}=1 to start it anyway"
    )
    return Decision(Hold(reason, HoldCause.DOWNGRADE, how_to_leave=how, retry=False))


def _upgrade(
    plan: UpgradePlan, recorder: PhaseRecorder, history: History, previous: Release | None, stop: StopFlag
) -> Decision:
    # Imported here, as the release changed: a boot of the same release imports none of it.
    from .. import room
    from . import checkpoint

    installed = plan.release
    assert installed is not None
    setting = plan.variables[Name.UPGRADE_CHECKPOINT]
    if not plan.settings.checkpoint:
        recorder.warn(
            "upgrade_without_checkpoint",
            f"{installed.label} starts on this state without a checkpoint ({setting}=off): there is no way "
            "back but a backup of your own",
        )
        _record(plan, history, installed)
        return Decision()
    trees = checkpoint.trees_to_take(plan.trees, plan.workspace, plan.settings.workspace_max_bytes)
    for tree in trees:
        if not tree.included:
            recorder.warn(
                "checkpoint_workspace_left_out", f"{tree.source} is not in the checkpoint: {tree.reason}"
            )
    why = f"before {installed.label}"
    started = time.monotonic()
    try:
        taken = checkpoint.take(plan.record_dir, previous, trees, why, stop)
    except room.NoRoom as error:
        measured = error.room
        reason = (
            f"a checkpoint of this state before {installed.label} first runs on it needs "
            f"{room.size(measured.needed)} ({measured.needed} bytes) in {plan.record_dir}, which has "
            f"{room.size(measured.free or 0)} ({measured.free} bytes) free: {plan.program} was not started"
        )
        recorder.warn("checkpoint_no_space", reason, needed_bytes=measured.needed, free_bytes=measured.free)
        how = (
            f"free space on the state volume and restart; or set {setting}=off to start without a checkpoint"
        )
        return Decision(Hold(reason, HoldCause.CHECKPOINT_NO_SPACE, how_to_leave=how, retry=False))
    seconds = round(time.monotonic() - started, 3)
    recorder.figures.update(
        checkpoint=taken.id,
        checkpoint_bytes=taken.bytes,
        checkpoint_seconds=seconds,
        databases=len(taken.databases),
    )
    holds = _preflight(plan, recorder, taken)
    if holds is None:
        _record(plan, history, installed)
    return Decision(holds, taken.id, previous)


def _preflight(plan: UpgradePlan, recorder: PhaseRecorder, taken: Manifest) -> Hold | None:
    from ...common import checkpoints
    from . import preflight

    installed = plan.release
    assert installed is not None
    if plan.preflight is None:
        recorder.figures["preflight"] = f"{installed.label} has no database preflight: skipped"
        return None
    state = os.path.join(checkpoints.root(plan.record_dir), taken.id, plan.trees[0][0])
    verdicts = preflight.check(plan.preflight, state, plan.record_dir)
    recorder.figures["preflight"] = {verdict.database: verdict.status for verdict in verdicts}
    refused = [verdict for verdict in verdicts if not verdict.starts]
    if not refused:
        return None
    said = "; ".join(f"{v.database}: {v.status}{' (' + v.detail + ')' if v.detail else ''}" for v in refused)
    setting = plan.variables[Name.UPGRADE_PREFLIGHT]
    if plan.settings.preflight_warns:
        recorder.warn(
            "upgrade_preflight_refused",
            f"{installed.label}'s preflight: {said}; started anyway ({setting}=warn)",
        )
        return None
    reason = f"{installed.label}'s own preflight refuses this state: {said}"
    recorder.warn("upgrade_preflight_refused", reason, verdicts=recorder.figures["preflight"])
    how = (
        f"run the image of the release that last ran again; or stop this container and roll back with "
        f"`{plan.rollback} {taken.id}`; or set {setting}=warn to start anyway"
    )
    return Hold(reason, HoldCause.PREFLIGHT_REFUSED, how_to_leave=how, retry=False)
