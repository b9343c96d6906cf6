"""A migration that cannot finish holds the gateway: never a start on an empty state while the
user's old state waits. Here the state volume is a real 4 MiB tmpfs and the legacy dir holds 8 MB:
the init measures both before it copies anything, stays up with the gateway not started, and says
why and the ways out (health, status, the startup report); `supervisorctl start` starts it once
anyway; a restart with room migrates and starts, with nothing lost on either side."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator

import pytest

from tests.boot.migration.helpers import Mounts, enter_private_mount_namespace, fill, manifest
from tests.conftest import InitRunner
from tests.supervised import Supervised, free_port, standin

pytestmark = pytest.mark.pid1


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    """Mounts in a private mount namespace of this test process (the init's namespace is a copy)."""
    enter_private_mount_namespace()
    made = Mounts()
    yield made
    made.undo()


def test_no_room_holds_with_both_numbers_and_a_restart_with_room_migrates_and_starts(
    init: InitRunner, supervised: Callable[..., Supervised], mounts: Mounts
) -> None:
    volume = mounts.tmpfs(init.box / "state", size="4m")
    legacy = init.box / "legacy"
    fill(legacy, 8_000_000)
    before = manifest(legacy)
    port = free_port()
    gateway = standin("healthy", "--port", port, "--pidfile", init.box / "gateway.pid")

    running = supervised(gateway, MOLTBOT_GATEWAY_PORT=str(port))
    try:
        held = running.wait_for("boot_held")[0]
        state = running.guard_state("held")
        health = running.init_command("health")
        status = json.loads(running.init_command("status", "--json").stdout)
        started_anyway = running.supervisorctl("start", "gateway")
        running.wait_for("gateway_running")
    finally:
        assert running.terminate() == 0
    report = running.events("startup_report")[0]
    warning = next(w for w in report["warnings"] if w["event"] == "migration_no_space")
    assert warning["needed_bytes"] > warning["free_bytes"] > 0  # measured before the copy
    for said in (held["reason"], state["held_reason"], health.stdout, report["held"]["reason"]):
        assert str(warning["needed_bytes"]) in said and str(warning["free_bytes"]) in said, said
    assert health.returncode == 1 and health.stdout.startswith("failing: gateway held: the old state")
    assert "MOLTBOT_MIGRATE=off" in health.stdout and "supervisorctl start gateway" in health.stdout
    assert status["crash_guard"]["state"] == "held" and status["startup"]["held"] == report["held"]
    assert state["retry_at"] is None  # never tried again by itself: the state is not the user's
    assert "started" in started_anyway.stdout  # the operator's choice, once
    assert sorted(p.name for p in (volume / "gateway").iterdir()) == []  # nothing half-copied
    assert manifest(legacy) == before

    subprocess.run(["mount", "-o", "remount,size=32m", str(volume)], check=True)
    again = supervised(gateway, MOLTBOT_GATEWAY_PORT=str(port))
    try:
        again.wait_for("gateway_running")
        healthy = again.health_once_listening()
    finally:
        assert again.terminate() == 0
    migration = next(p for p in again.events("startup_report")[0]["phases"] if p["name"] == "migration")
    assert migration["figures"]["outcome"] == "migrated" and again.events("boot_held") == []
    assert healthy.returncode == 0, healthy.stdout
    # Nothing lost on either side: the state in the volume, the legacy dir renamed aside whole.
    [aside] = [path for path in legacy.parent.iterdir() if path.name.startswith("legacy.migrated-")]
    assert manifest(volume / "gateway") == before and manifest(aside) == before
