"""Two inits on one volume: the second waits for the first's migration lock, bounded, and never
starts on a target whose commit the first left half done."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.boot import migration
from entrypoint.boot.migration import staging
from entrypoint.common.plans import StopFlag
from tests.boot.migration.helpers import RECORD_DIR, gateway_of, manifest, plan_for, populate

# Holds the record dir's flock for the given seconds, then exits (its lock goes with it).
HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold_lock(volume: Path, seconds: float) -> subprocess.Popen[str]:
    (volume / RECORD_DIR).mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(volume / RECORD_DIR), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_a_boot_waits_for_a_lock_held_by_an_init_on_its_way_out_then_migrates(scratch: Path) -> None:
    volume, legacy = scratch / "state", scratch / "home" / ".clawdbot"
    populate(legacy)
    before = manifest(legacy)
    holder = hold_lock(volume, 1.5)
    result = migration.run(plan_for([legacy], volume), StopFlag())
    holder.wait(timeout=10)
    assert result.figures["outcome"] == "migrated", result
    assert not [w for w in result.warnings if w["event"] == "migration_busy"]
    assert len(manifest(gateway_of(volume))) == len(before)  # every entry, the config renamed


def test_a_lock_held_past_the_bound_is_one_warning_and_nothing_is_migrated(
    scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(staging, "LOCK_WAIT_S", 0.5)
    volume, legacy = scratch / "state", scratch / "home" / ".clawdbot"
    populate(legacy)
    holder = hold_lock(volume, 30)
    try:
        result = migration.run(plan_for([legacy], volume), StopFlag())
    finally:
        holder.kill()
        holder.wait()
    assert [w["event"] for w in result.warnings] == ["migration_busy"]
    target = gateway_of(volume)
    assert not target.exists() or os.listdir(target) == []
    again = migration.run(plan_for([legacy], volume), StopFlag())
    assert again.figures["outcome"] == "migrated"  # the holder's flock went with its process
