"""A checkpoint is the state as it was, whole, its databases one consolidated file each with
nothing committed lost; it fits or is refused before its first byte; a kill at any instant leaves a
whole one or none, and the live state untouched; old ones go once the new release has started."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from entrypoint.boot.upgrade import checkpoint
from entrypoint.common import checkpoints, releases
from entrypoint.common.plans import StopFlag
from entrypoint.common.releases import History, Ran
from tests.boot.migration.helpers import Mounts
from tests.boot.migration.killing import killed, shape
from tests.boot.upgrade.helpers import (
    NEW,
    OLD,
    database,
    events,
    gate,
    gateway_state,
    layout,
    plan_for,
    rows,
)


def take(root: Path, why: str = "test") -> checkpoints.Manifest:
    plan = plan_for(root)
    trees = checkpoint.trees_to_take(plan.trees, plan.workspace, plan.settings.workspace_max_bytes)
    return checkpoint.take(plan.record_dir, OLD, trees, why, StopFlag())


def live(root: Path) -> dict:
    """The live trees, as bytes, modes and times: what no checkpoint may change."""
    return {name: shape(root / name) for name in ("volume/gateway", "volume/home", "workspace")}


def test_databases_with_committed_frames_only_in_their_log_are_whole_in_one_file(tmp_path: Path) -> None:
    state = layout(tmp_path)[0]
    gateway_state(state)
    live_db = state / "state" / "openclaw.sqlite"
    assert os.path.getsize(str(live_db) + "-wal") > 0  # 39 of its 40 rows are in the log only
    before = live(tmp_path)

    taken = take(tmp_path)

    copy = Path(checkpoints.root(str(tmp_path / "volume" / ".moltbot-init"))) / taken.id / "gateway"
    assert rows(copy / "state" / "openclaw.sqlite") == 40
    assert rows(copy / "agents" / "main" / "agent" / "openclaw-agent.sqlite") == 25
    assert not [path for path in copy.rglob("*") if path.name.endswith(("-wal", "-shm", "-journal"))]
    databases = {database.path: database for database in taken.databases}
    assert databases["gateway/state/openclaw.sqlite"].user_version == 18
    assert databases["gateway/agents/main/agent/openclaw-agent.sqlite"].user_version == 7
    assert live(tmp_path) == before  # the live databases and their logs, untouched


def test_a_database_closed_cleanly_is_copied_byte_for_byte_and_its_stray_index_left_out(
    tmp_path: Path,
) -> None:
    state = layout(tmp_path)[0]
    live_db = state / "state" / "openclaw.sqlite"
    database(live_db, 30, keep_wal=False)  # its writer closed: every row in the file itself
    Path(str(live_db) + "-shm").write_bytes(b"\0" * 32768)  # an index a killed reader left
    Path(str(live_db) + "-wal").write_bytes(b"")

    taken = take(tmp_path)

    copy = Path(checkpoints.root(str(tmp_path / "volume" / ".moltbot-init"))) / taken.id / "gateway"
    assert (copy / "state" / "openclaw.sqlite").read_bytes() == live_db.read_bytes()
    assert rows(copy / "state" / "openclaw.sqlite") == 30
    assert sorted(path.name for path in (copy / "state").iterdir()) == ["openclaw.sqlite"]


def test_everything_else_is_copied_as_it_is_secrets_links_holes_and_times(tmp_path: Path) -> None:
    state, home, workspace = layout(tmp_path)
    gateway_state(state)
    (home / ".config" / "openclaw").mkdir(parents=True)
    (home / ".config" / "openclaw" / "auth-profile-secret-key").write_bytes(os.urandom(32))
    (home / ".config" / "openclaw" / "auth-profile-secret-key").chmod(0o600)
    (state / "latest").symlink_to("credentials/oauth.json")
    os.link(state / "openclaw.json", state / "openclaw.json.bak")
    with open(state / "sparse.bin", "wb") as sparse:
        sparse.seek(200 << 20)
        sparse.write(b"end")
    (workspace / "notes.md").write_text("mine")
    taken = take(tmp_path)
    copy = Path(checkpoints.root(str(tmp_path / "volume" / ".moltbot-init"))) / taken.id
    without_databases = {rel: entry for rel, entry in shape(state).items() if ".sqlite" not in rel}
    assert {rel: e for rel, e in shape(copy / "gateway").items() if ".sqlite" not in rel} == without_databases
    assert shape(copy / "home") == shape(home) and shape(copy / "workspace") == shape(workspace)
    assert (copy / "gateway" / "sparse.bin").stat().st_blocks * 512 < 1 << 20


def test_no_room_is_refused_before_the_first_byte_with_both_numbers(tmp_path: Path, mounts: Mounts) -> None:
    volume = mounts.tmpfs(tmp_path / "volume", size="4m")
    state = layout(tmp_path)[0]
    gateway_state(state)
    (state / "media.bin").write_bytes(os.urandom(3 << 20))
    plan = plan_for(tmp_path)
    releases.write(plan.record_dir, History([Ran(OLD, 1.0)]))
    result = gate(plan)
    assert result.holds is not None and events(result) == ["checkpoint_no_space"]
    warning = result.warnings[0]
    assert warning["needed_bytes"] > warning["free_bytes"]
    for said in (str(warning["needed_bytes"]), str(warning["free_bytes"]), "MOLTBOT_UPGRADE_CHECKPOINT=off"):
        assert said in result.holds.reason + (result.holds.how_to_leave or "")
    assert os.listdir(checkpoints.root(plan.record_dir)) == []  # not a byte copied
    assert sorted(os.listdir(volume / ".moltbot-init")) == ["checkpoints", "releases.json", "state.lock"]


def test_pruning_keeps_the_newest_and_always_the_way_back(tmp_path: Path) -> None:
    gateway_state(layout(tmp_path)[0])
    plan = plan_for(tmp_path)
    trees = checkpoint.trees_to_take(plan.trees, plan.workspace, plan.settings.workspace_max_bytes)
    made = []
    for number, release in enumerate((OLD, NEW, NEW, NEW)):
        made.append(
            checkpoint.take(plan.record_dir, release, trees, "test", StopFlag(), now=lambda n=number: 1e9 + n)
        )
    removed = checkpoint.prune(plan.record_dir, keep=2, spare=OLD)
    assert removed == [made[1].id]  # the oldest NEW goes; OLD's, the way back, stays
    assert [m.id for m in checkpoints.listing(plan.record_dir)] == [made[3].id, made[2].id, made[0].id]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_kill_at_any_instant_leaves_a_whole_checkpoint_or_none_and_the_state_untouched(
    tmp_path: Path, seed: int
) -> None:
    state = layout(tmp_path)[0]
    gateway_state(state)
    records = str(tmp_path / "volume" / ".moltbot-init")
    before = live(tmp_path)

    def step() -> dict:
        return {"id": take(tmp_path).id}

    calls = killed(step).calls
    for kill_at in sorted(random.Random(seed).sample(range(1, calls + 1), min(calls, 25))):
        checkpoint.prune(records, keep=0, spare=None)  # each kill starts from no checkpoint
        assert killed(step, kill_at).killed
        whole = checkpoints.listing(records)
        assert len(whole) <= 1, kill_at
        for manifest in whole:  # a whole one: every tree and database it names is there
            inside = Path(checkpoints.root(records)) / manifest.id
            assert all((inside / db.path).is_file() for db in manifest.databases), kill_at
        assert live(tmp_path) == before, kill_at
        survivor = killed(step)  # the next taker converges, and clears what the kill left
        assert not survivor.killed and survivor.result is not None
        assert not [
            n for n in os.listdir(checkpoints.root(records)) if n.startswith(checkpoints.STAGING_PREFIX)
        ]


def test_a_file_with_sqlite_s_header_that_sqlite_cannot_read_is_copied_as_it_was(tmp_path: Path) -> None:
    state = layout(tmp_path)[0]
    gateway_state(state)
    stray = b"SQLite format 3\x00" + os.urandom(4080)
    (state / "memory.sqlite").write_bytes(stray)
    taken = take(tmp_path)
    [odd] = [database for database in taken.databases if database.path == "gateway/memory.sqlite"]
    assert odd.user_version == -1 and "SQLite cannot read it" in (odd.note or "")
    copy = Path(checkpoints.root(str(tmp_path / "volume" / ".moltbot-init"))) / taken.id / "gateway"
    assert (copy / "memory.sqlite").read_bytes() == stray
