"""The upgrade gate's decisions, on real files: the same release costs a read; a new state records
its release; another release gets a checkpoint and its own preflight first; an older one is held
with nothing changed; no room holds with both numbers; every hold is said with its way out."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from entrypoint.common import checkpoints, releases
from entrypoint.common.releases import History, Ran, Release
from tests.boot.upgrade.helpers import (
    NEW,
    OLD,
    ROLLBACK,
    database,
    events,
    gate,
    gateway_state,
    layout,
    plan_for,
)


def history_of(root: Path) -> History | None:
    return releases.read(str(root / "volume" / ".moltbot-init"))


def record(root: Path, *ran: Release) -> None:
    layout(root)
    history = History([Ran(release, 1_700_000_000.0 + number) for number, release in enumerate(ran)])
    releases.write(str(root / "volume" / ".moltbot-init"), history)


def test_a_boot_of_the_release_that_ran_last_changes_nothing_and_writes_nothing(tmp_path: Path) -> None:
    record(tmp_path, OLD, NEW)
    gateway_state(layout(tmp_path)[0])
    path = tmp_path / "volume" / ".moltbot-init" / releases.FILE
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    result = gate(plan_for(tmp_path, NEW))
    assert (result.status, result.holds, result.after_start) == ("ok", None, None)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert checkpoints.listing(str(tmp_path / "volume" / ".moltbot-init")) == []


def test_a_new_state_records_its_first_release_and_takes_no_checkpoint(tmp_path: Path) -> None:
    result = gate(plan_for(tmp_path, NEW))
    assert result.holds is None and result.figures["release"] == NEW.label
    history = history_of(tmp_path)
    assert history is not None and history.current is not None and history.current.release == NEW
    assert checkpoints.listing(str(tmp_path / "volume" / ".moltbot-init")) == []


def test_an_upgrade_takes_a_checkpoint_asks_the_new_release_then_records_it(tmp_path: Path) -> None:
    record(tmp_path, OLD)
    state = layout(tmp_path)[0]
    gateway_state(state)
    database(state / "agents" / "ops" / "agent" / "openclaw-agent.sqlite", 3, version=7)  # a second agent
    log = tmp_path / "preflight.log"
    result = gate(plan_for(tmp_path, NEW, log=log))
    assert result.holds is None and result.after_start is not None
    [taken] = checkpoints.listing(str(tmp_path / "volume" / ".moltbot-init"))
    assert taken.release == OLD and taken.id.startswith("openclaw-2026.1.29-")
    assert result.figures["checkpoint"] == taken.id
    assert result.figures["preflight"] == {  # each database by its path: the agents' share a file name
        "state/openclaw.sqlite": "exact",
        "agents/main/agent/openclaw-agent.sqlite": "exact",
        "agents/ops/agent/openclaw-agent.sqlite": "exact",
    }
    # The new release read copies: consolidated (no sidecar), of the old release's versions, with its
    # state dir and HOME in a scratch directory, never the live ones.
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(call["command"], call["agent"], call["user_version"]) for call in calls] == [
        ("preflight", None, 18),
        ("preflight-agent", "main", 7),
        ("preflight-agent", "ops", 7),
    ]
    assert all(call["sidecars"] == [] for call in calls)
    assert all(
        not call["state_dir"].startswith(str(state)) and "preflight-scratch" in call["home"] for call in calls
    )
    assert not (tmp_path / "volume" / ".moltbot-init" / "preflight-scratch").exists()
    history = history_of(tmp_path)
    assert history is not None and [ran.release for ran in history.ran] == [OLD, NEW]


def test_a_state_without_a_history_is_dated_by_the_application_s_own_stamp(tmp_path: Path) -> None:
    """The first boot of this feature on an old state is gated like any other upgrade."""
    gateway_state(layout(tmp_path)[0], stamp="2026.1.29")
    result = gate(plan_for(tmp_path, NEW))
    assert result.figures["from"] == "openclaw@2026.1.29"
    [taken] = checkpoints.listing(str(tmp_path / "volume" / ".moltbot-init"))
    assert taken.release == Release("openclaw", "2026.1.29")


def test_a_state_without_history_or_stamp_is_checkpointed_as_an_unknown_release(tmp_path: Path) -> None:
    gateway_state(layout(tmp_path)[0], stamp=None)
    gate(plan_for(tmp_path, NEW))
    [taken] = checkpoints.listing(str(tmp_path / "volume" / ".moltbot-init"))
    assert taken.release is None and taken.id.startswith("unknown-release-")


def test_an_older_release_is_held_with_the_way_back_and_nothing_changes(tmp_path: Path) -> None:
    record(tmp_path, OLD)
    state = layout(tmp_path)[0]
    gateway_state(state)
    gate(plan_for(tmp_path, NEW))  # the upgrade: a checkpoint of OLD, NEW recorded
    records = tmp_path / "volume" / ".moltbot-init"
    before = {path: path.read_bytes() for path in (records / releases.FILE, state / "openclaw.json")}
    result = gate(plan_for(tmp_path, OLD))
    assert result.holds is not None and result.holds.retry is False
    assert events(result) == ["upgrade_downgrade_held"]
    [taken] = checkpoints.listing(str(records))
    for said in (OLD.label, NEW.label, taken.id, f"{ROLLBACK} {taken.id}"):
        assert said in result.holds.reason, said
    assert "MOLTBOT_ALLOW_DOWNGRADE=1" in (result.holds.how_to_leave or "")
    assert {path: path.read_bytes() for path in before} == before
    assert len(checkpoints.listing(str(records))) == 1


def test_allow_downgrade_starts_it_anyway_with_a_warning(tmp_path: Path) -> None:
    record(tmp_path, OLD, NEW)
    result = gate(plan_for(tmp_path, OLD, allow_downgrade=True))
    assert result.holds is None and events(result) == ["upgrade_downgrade_allowed"]


@pytest.mark.parametrize(
    ("verdict", "agent_verdict"), [("incompatible", "exact"), ("exact", "indeterminate"), ("none", "exact")]
)
def test_a_refusing_preflight_holds_keeps_the_checkpoint_and_records_nothing(
    tmp_path: Path, verdict: str, agent_verdict: str
) -> None:
    record(tmp_path, OLD)
    gateway_state(layout(tmp_path)[0])
    result = gate(plan_for(tmp_path, NEW, verdict=verdict, agent_verdict=agent_verdict))
    assert result.holds is not None and events(result) == ["upgrade_preflight_refused"]
    [taken] = checkpoints.listing(str(tmp_path / "volume" / ".moltbot-init"))
    assert f"{ROLLBACK} {taken.id}" in (result.holds.how_to_leave or "")
    assert "MOLTBOT_UPGRADE_PREFLIGHT=warn" in (result.holds.how_to_leave or "")
    history = history_of(tmp_path)
    assert history is not None and [ran.release for ran in history.ran] == [OLD]


def test_preflight_warn_starts_it_anyway(tmp_path: Path) -> None:
    record(tmp_path, OLD)
    gateway_state(layout(tmp_path)[0])
    result = gate(plan_for(tmp_path, NEW, verdict="incompatible", preflight_warns=True))
    assert result.holds is None and events(result) == ["upgrade_preflight_refused"]


def test_a_release_without_a_preflight_skips_it_and_says_so(tmp_path: Path) -> None:
    record(tmp_path, Release("clawdbot", "2026.1.24-3"))
    gateway_state(layout(tmp_path)[0])
    plan = plan_for(tmp_path, OLD)
    result = gate(plan.__class__(**{**plan.__dict__, "preflight": None}))
    assert result.holds is None and "no database preflight" in result.figures["preflight"]


def test_checkpoint_off_starts_without_one_and_says_there_is_no_way_back(tmp_path: Path) -> None:
    record(tmp_path, OLD)
    gateway_state(layout(tmp_path)[0])
    result = gate(plan_for(tmp_path, NEW, checkpoint=False))
    assert result.holds is None and events(result) == ["upgrade_without_checkpoint"]
    assert checkpoints.listing(str(tmp_path / "volume" / ".moltbot-init")) == []


def test_a_workspace_over_the_budget_is_left_out_and_named(tmp_path: Path) -> None:
    record(tmp_path, OLD)
    state, _, workspace = layout(tmp_path)
    gateway_state(state)
    (workspace / "big.bin").write_bytes(os.urandom(2 << 20))
    result = gate(plan_for(tmp_path, NEW, workspace_max_bytes=1 << 20))
    assert events(result) == ["checkpoint_workspace_left_out"]
    [taken] = checkpoints.listing(str(tmp_path / "volume" / ".moltbot-init"))
    [left] = [tree for tree in taken.trees if not tree.included]
    assert left.name == "workspace" and "over the checkpoint's workspace budget" in (left.reason or "")
