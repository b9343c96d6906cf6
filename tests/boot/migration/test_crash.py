"""Crash safety: a migration killed (or stopped) at any point converges on the next boot.

The SIGKILL test kills the driver at >= 100 moments drawn from a seeded generator over the length of
an uninterrupted run (measured first), then reboots it to completion. After every kill the target
may only show complete entries, each identical to the source's, and the source must be intact
(in place, or renamed aside whole); after every reboot the state must equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from entrypoint.boot import migration
from entrypoint.common.plans import MigrationPlan, StopFlag
from tests.boot.migration.helpers import (
    GID,
    RECORD_DIR,
    UID,
    Entry,
    Mounts,
    asides,
    driver_command,
    driver_env,
    fill,
    manifest,
    owners,
    plan_for,
    populate,
    record_of,
    staging_of,
)

SEED = 20261127
KILLS_WANTED = 120
KILLS_REQUIRED = 100
ATTEMPTS_MAX = 400
# A kill mid-write can leave the record's temporary; the resumed commit writes it again and renames it.
RECORD_ENTRIES = {"migration.json", "migration.json.tmp", "migration-staging"}
# The last event a killed driver logged tells how far it got.
PHASES = {
    "migration_started": "staging",
    "migration_copy_fallback": "staging",
    "migration_resumed": "staging",
    "migration_progress": "staging",
    "migration_commit": "commit",
    "migration_done": "settle",
}


class StopAt(StopFlag):
    """Set from its n-th look on, as a SIGTERM handler would set it mid-copy."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.looks = 0

    def is_set(self) -> bool:
        self.looks += 1
        if self.looks == self.at:
            self.set(signal.SIGTERM)
        return super().is_set()


def expected_target(source_manifest: dict[str, Entry]) -> dict[str, Entry]:
    expected = dict(source_manifest)
    expected["moltbot.json"] = expected.pop("clawdbot.json")
    return expected


def test_stop_flag_mid_copy_returns_interrupted_keeps_the_staging_and_the_next_boot_resumes(
    scratch: Path, mounts: Mounts
) -> None:
    source, target = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    populate(source, scale=3)
    before = manifest(source)

    stopped = migration.run(plan_for([source], target), StopAt(40))

    assert stopped.figures["interrupted"] is True
    assert stopped.figures["outcome"] == "interrupted"
    assert stopped.warnings == []
    assert staging_of(target).is_dir()
    assert manifest(target) == {}  # nothing of the copy is visible yet
    assert manifest(source) == before and not source.is_symlink()

    resumed = migration.run(plan_for([source], target), StopFlag())

    assert resumed.figures["resumed"] is True
    assert resumed.figures["outcome"] == "migrated"
    assert manifest(target) == expected_target(before)
    assert not staging_of(target).exists()


@dataclass
class Run:
    returncode: int
    events: list[str]
    arrivals: dict[str, float] = field(default_factory=dict)  # first arrival of each event, after ready
    result: dict | None = None
    kill_after: float | None = None

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    @property
    def phase(self) -> str:
        known = [PHASES[name] for name in self.events if name in PHASES]
        return known[-1] if known else "before"


def drive(plan: MigrationPlan, kill_after: float | None, after_event: str = "ready") -> Run:
    """Start the driver; SIGKILL it `kill_after` seconds after it is ready, or after it logs
    `after_event` (None: let it finish)."""
    process = subprocess.Popen(
        driver_command(plan), env=driver_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline().strip() == "ready"
    ready = time.monotonic()
    lines: list[tuple[float, str]] = []
    seen = threading.Event()

    def read_stderr() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append((time.monotonic() - ready, line))
            if json.loads(line)["event"] == after_event:
                seen.set()
        seen.set()  # the driver ended without logging it: nothing left to aim at

    reader = threading.Thread(target=read_stderr)
    reader.start()
    if kill_after is not None:
        if after_event != "ready":
            seen.wait(timeout=60)
        time.sleep(kill_after)
        process.kill()
    out = process.stdout.read()
    process.wait()
    reader.join()
    events: list[str] = []
    arrivals: dict[str, float] = {}
    for arrival, line in lines:
        name = json.loads(line)["event"]
        events.append(name)
        arrivals.setdefault(name, arrival)
    arrivals["exit"] = time.monotonic() - ready
    result = json.loads(out.splitlines()[-1]) if out.strip() else None
    return Run(process.returncode, events, arrivals, result, kill_after)


def check_after_kill(source: Path, target: Path, original: dict[str, Entry]) -> None:
    """Only complete entries in the target, each the source's; the source intact somewhere."""
    expected = expected_target(original)
    visible = manifest(target)
    for name in os.listdir(target):
        if name == RECORD_DIR:
            assert set(os.listdir(target / RECORD_DIR)) <= RECORD_ENTRIES
            continue
        subtree = {rel: entry for rel, entry in visible.items() if rel == name or rel.startswith(name + "/")}
        wanted = {rel: entry for rel, entry in expected.items() if rel == name or rel.startswith(name + "/")}
        if name == "clawdbot.json":  # committed, not yet renamed to the preferred name
            wanted = {name: original[name]}
        assert subtree == wanted, f"partial or altered entry visible in the target: {name}"
    found = asides(source)
    if source.is_symlink():
        assert os.readlink(source) == str(target)
    if source.is_dir() and not source.is_symlink():
        assert found == []
        assert manifest(source) == original
    else:
        [aside] = found  # renamed aside whole (and maybe not yet linked)
        assert manifest(aside) == original


def check_converged(
    run: Run, source: Path, target: Path, original: dict[str, Entry], reference: dict
) -> None:
    assert run.returncode == 0
    assert run.result is not None
    assert run.result["warnings"] == []
    assert run.result["figures"]["outcome"] in ("migrated", "already-migrated")
    assert manifest(target) == expected_target(original)
    assert owners(target) == {(UID, GID)}
    assert sorted(os.listdir(target / RECORD_DIR)) == ["migration.json"]
    record = record_of(target)
    assert record is not None
    assert {key: record[key] for key in ("source", "strategy", "entries", "bytes", "result")} == reference
    assert os.readlink(source) == str(target)
    [aside] = asides(source)
    assert manifest(aside) == original


def reset(source: Path, target: Path) -> None:
    for name in os.listdir(target):
        path = target / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if source.is_symlink():
        source.unlink()
    for aside in asides(source):
        aside.rename(source)


def test_sigkill_at_over_100_random_points_then_reboot_converges_and_never_shows_a_partial_entry(
    scratch: Path, mounts: Mounts
) -> None:
    # The source on the disk, a plain directory; the target a tmpfs mount point, as a volume: EXDEV,
    # so the whole path runs: staged copy, commit, record, set aside, link.
    source, target = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "vol", size="256m")
    populate(source, scale=2)
    fill(source, 12_000_000)
    # Many small files in many top-level entries: a copy long enough to aim at, a commit of ~40 moves.
    for number in range(1000):
        sessions = source / f"bulk{number % 20:02d}"
        sessions.mkdir(exist_ok=True)
        (sessions / f"{number:05d}.jsonl").write_bytes(random.Random(number).randbytes(number % 700))
    original = manifest(source)
    plan = plan_for([source], target)

    calibration = drive(plan, None)
    assert calibration.result is not None and calibration.result["warnings"] == []
    record = record_of(target)
    assert record is not None and record["strategy"] == "copy"
    reference = {key: record[key] for key in ("source", "strategy", "entries", "bytes", "result")}
    done_at = calibration.arrivals["migration_done"]
    commit_window = done_at - calibration.arrivals["migration_commit"]
    reset(source, target)

    rng = random.Random(SEED)
    kills: list[tuple[float, str]] = []
    attempts = 0
    while len(kills) < KILLS_WANTED and attempts < ATTEMPTS_MAX:
        # Each boot is killed up to three times (the later ones during resumed runs), then rebooted.
        for round_number in range(3):
            if rng.random() < 0.35:
                # The commit lasts a few ms, less than the copy's own jitter: aim from its log line.
                run = drive(plan, rng.uniform(0.0, commit_window + 0.001), after_event="migration_commit")
            else:
                run = drive(plan, rng.uniform(0.0, done_at * (1.0 if round_number == 0 else 0.6)))
            attempts += 1
            if run.killed:
                kills.append((run.kill_after, run.phase))
            check_after_kill(source, target, original)
        check_converged(drive(plan, None), source, target, original, reference)
        reset(source, target)

    by_phase = {phase: sum(1 for _, seen in kills if seen == phase) for _, phase in kills}
    assert len(kills) >= KILLS_REQUIRED, f"only {len(kills)} kills landed in {attempts} attempts: {by_phase}"
    assert len({delay for delay, _ in kills}) == len(kills)  # all different moments
    assert {"before", "staging", "commit", "settle"} <= set(by_phase), f"kills by phase: {by_phase}"
