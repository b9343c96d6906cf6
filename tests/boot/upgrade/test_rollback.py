"""A rollback puts a checkpoint back in place of the live state, sets the live state aside (never
deleted), and makes the state its release's again, so that its image boots without a downgrade
hold; it refuses while an application runs on the state; a kill at any instant is finished by the
next rollback, or by the next boot, never a start on half a state."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from entrypoint.boot.upgrade import rollback
from entrypoint.common import checkpoints, releases, statelock, swapjournal
from entrypoint.common.plans import StopFlag
from entrypoint.common.releases import History, Ran
from tests.boot.migration.killing import killed, shape
from tests.boot.upgrade.helpers import (
    NEW,
    OLD,
    database,
    events,
    gate,
    gateway_state,
    killed_at_seeded_points,
    layout,
    plan_for,
    rows,
)


def upgraded(root: Path) -> tuple[dict, dict]:
    """A state OLD made, upgraded to NEW (a checkpoint of OLD's), then changed by NEW; its trees'
    shapes before (OLD's) and after (NEW's)."""
    state, home, _ = layout(root)
    gateway_state(state)
    (home / "key").write_text("auth-profile key")
    releases.write(str(root / "volume" / ".moltbot-init"), History([Ran(OLD, 1.0)]))
    old = {name: shape(root / "volume" / name) for name in ("gateway", "home")}
    assert gate(plan_for(root, NEW)).holds is None
    database(state / "state" / "openclaw.sqlite", 5, version=19, keep_wal=False)  # NEW migrates forward
    (state / "openclaw.json").write_text('{"meta": {"lastTouchedVersion": "2026.9.6"}}')
    new = {name: shape(root / "volume" / name) for name in ("gateway", "home")}
    return old, new


def test_a_rollback_puts_the_old_state_back_sets_the_new_aside_and_the_old_image_boots(
    tmp_path: Path,
) -> None:
    old, new = upgraded(tmp_path)
    plan = plan_for(tmp_path, NEW)
    lock = statelock.take(plan.record_dir)  # as the operator's command holds it
    try:
        done = rollback.roll_back(plan, None, StopFlag())
    finally:
        os.close(lock)
    assert done.checkpoint is not None and done.checkpoint.release == OLD  # not a resumed swap
    state = tmp_path / "volume" / "gateway"
    assert rows(state / "state" / "openclaw.sqlite") == 40  # OLD's rows, consolidated
    assert {k: v for k, v in shape(state).items() if ".sqlite" not in k} == {
        k: v for k, v in old["gateway"].items() if ".sqlite" not in k
    }
    assert shape(tmp_path / "volume" / "home") == old["home"]
    aside = Path(done.swap.aside)
    assert aside.parent.name == checkpoints.ROLLED_BACK
    assert shape(aside / "gateway") == new["gateway"] and shape(aside / "home") == new["home"]
    assert [m.id for m in checkpoints.listing(plan.record_dir)] == [done.swap.source]  # still whole
    history = releases.read(plan.record_dir)
    assert history is not None and [ran.release for ran in history.ran] == [OLD]
    assert [ran.release for ran in history.rolled_back] == [NEW]
    # OLD's image boots on it: no downgrade hold, nothing taken.
    result = gate(plan_for(tmp_path, OLD))
    assert (result.holds, events(result)) == (None, [])
    said = rollback.next_steps(done)
    assert OLD.label in said and done.swap.aside in said


def test_a_rollback_refuses_without_a_checkpoint_to_go_back_to(tmp_path: Path) -> None:
    layout(tmp_path)
    with pytest.raises(rollback.RollbackRefused, match="nothing to roll back to"):
        rollback.roll_back(plan_for(tmp_path), None, StopFlag())
    with pytest.raises(rollback.RollbackRefused, match="no checkpoint 'nope'"):
        rollback.roll_back(plan_for(tmp_path), "nope", StopFlag())


@pytest.mark.parametrize("seed", [11, 12])
def test_a_kill_at_any_instant_is_finished_by_the_next_rollback_or_the_next_boot(
    tmp_path: Path, seed: int
) -> None:
    old, new = upgraded(tmp_path)
    plan = plan_for(tmp_path, NEW)
    volume = tmp_path / "volume"

    def step() -> dict:
        return {"aside": rollback.roll_back(plan, None, StopFlag()).swap.aside}

    aside_dir = volume / ".moltbot-init" / checkpoints.ROLLED_BACK
    for number, kill_at, journaled in killed_at_seeded_points(step, volume, seed, 20):
        if not journaled:
            # Killed before its journal: nothing moved; the state is still the one NEW made.
            assert {name: shape(volume / name) for name in ("gateway", "home")} == new, kill_at
            assert not aside_dir.exists() or os.listdir(aside_dir) == [], kill_at
            assert not killed(step).killed  # a rollback run again does it all
        elif number % 2:
            assert not killed(step).killed  # the next rollback finishes it
        else:
            result = gate(plan_for(tmp_path, OLD))  # the next boot (OLD's image) finishes it first
            assert result.holds is None and events(result) == ["rollback_finished"], (
                kill_at,
                result.warnings,
            )
        assert {k: v for k, v in shape(volume / "gateway").items() if ".sqlite" not in k} == {
            k: v for k, v in old["gateway"].items() if ".sqlite" not in k
        }, kill_at
        [aside] = os.listdir(aside_dir)
        assert shape(aside_dir / aside / "gateway") == new["gateway"], kill_at
        assert not (volume / ".moltbot-init" / swapjournal.FILE).exists()
