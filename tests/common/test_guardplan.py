"""The crash guard's orders survive their file: what the init writes is what the guard reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from entrypoint.common import guardplan, rundir
from entrypoint.common.plans import CrashLoopAction, RestartPolicy

HANDOFF = guardplan.HandoffPlan(
    capabilities=("node", "/app/cli.mjs", "gateway", "restart-handoff", "capabilities", "--json"),
    consume=(
        "node",
        "/app/cli.mjs",
        "gateway",
        "restart-handoff",
        "consume",
        "--expected-pid",
        guardplan.PID,
    ),
    timeout_s=45.0,
    cache_path="/state/.init/restart-handoff.json",
    identity="openclaw@2026.9.6 node /app/cli.mjs",
)
LEASE = guardplan.LeaseRule(("owner lease is still active",), 20.0, 360.0)


@pytest.mark.parametrize("action", list(CrashLoopAction))
@pytest.mark.parametrize(("handoff", "oom_kills"), [(HANDOFF, 3), (None, None)])
def test_a_written_plan_reads_back_equal(
    tmp_path: Path, action: CrashLoopAction, handoff: guardplan.HandoffPlan | None, oom_kills: int | None
) -> None:
    policy = RestartPolicy(0.5, 30.0, 600.0, 3, 120.0, action, 330.0, 60.0)
    ledger = "/state/.init/boot-ledger.json"
    plan = guardplan.GuardPlan("gateway", policy, ledger, "json", "debug", handoff, LEASE, oom_kills)
    guardplan.write(str(tmp_path), plan)
    assert guardplan.read(str(tmp_path)) == plan
    assert (tmp_path / rundir.GUARD_PLAN).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    "content", ["", "{}", '{"program": "gateway"}', json.dumps({"policy": {"crashloop_action": "reboot"}})]
)
def test_a_missing_or_foreign_plan_reads_as_none(tmp_path: Path, content: str) -> None:
    if content:
        (tmp_path / rundir.GUARD_PLAN).write_text(content)
    assert guardplan.read(str(tmp_path)) is None
