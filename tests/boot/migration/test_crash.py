"""Crash safety: a migration killed (or stopped) at any point converges on the next boot.

This SIGKILL test kills the driver, a process of its own with its pool of copier threads, at >= 100
moments drawn from a seeded generator over the length of an uninterrupted run (measured first),
then reboots it to completion; a failure replays from SEED. After every kill the target may only
show complete entries, each identical to the source's, and the source must be intact (in place,
or renamed aside whole); after every reboot the state must equal an uninterrupted run's.
test_kill_points.py kills before every single filesystem call instead, one thread, in order.
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
    StopAt,
    asides,
    driver_command,
    driver_env,
    fill,
    gateway_of,
    manifest,
    owners,
    plan_for,
    populate,
    record_of,
    staging_of,
    write_earlier_journal,
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


def expected_target(source_manifest: dict[str, Entry]) -> dict[str, Entry]:
    expected = dict(source_manifest)
    expected["moltbot.json"] = expected.pop("clawdbot.json")
    return expected


def test_stop_flag_mid_copy_returns_interrupted_keeps_the_staging_and_the_next_boot_resumes(
    scratch: Path, mounts: Mounts
) -> None:
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    populate(source, scale=3)
    before = manifest(source)

    stopped = migration.run(plan_for([source], volume), StopAt(40))

    assert stopped.figures["interrupted"] is True
    assert stopped.figures["outcome"] == "interrupted"
    assert stopped.warnings == []
    assert staging_of(volume).is_dir()
    assert manifest(gateway_of(volume)) == {}  # nothing of the copy is visible yet
    assert manifest(source) == before and not source.is_symlink()

    resumed = migration.run(plan_for([source], volume), StopFlag())

    assert resumed.figures["resumed"] is True
    assert resumed.figures["outcome"] == "migrated"
    assert manifest(gateway_of(volume)) == expected_target(before)
    assert not staging_of(volume).exists()


def test_a_staging_left_by_an_earlier_version_in_journal_format_1_is_finished_then_relocated(
    scratch: Path, mounts: Mounts
) -> None:
    """The journal is a contract between versions of the init: a staging as format 1 writes it
    (literal JSON here, not this version's writer), cut short by a kill mid-copy, resumes. That
    version's target was the volume's root: the copy is finished there, then moved into the
    application's own directory with the rest of the root."""
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    populate(source)
    before = manifest(source)
    items = staging_of(volume) / "items"
    items.mkdir(parents=True)
    (items / "0.part").write_bytes(b"half a copy")
    journal = write_earlier_journal(source, volume, sorted(os.listdir(source)))

    resumed = migration.run(plan_for([source], volume), StopFlag())

    assert resumed.warnings == []
    assert resumed.figures["resumed"] is True
    assert resumed.figures["outcome"] == "migrated"
    assert resumed.figures["relocated"] == len(os.listdir(source.parent / Path(journal["aside"]).name))
    assert sorted(os.listdir(volume)) == [RECORD_DIR, "gateway"]
    assert manifest(gateway_of(volume)) == expected_target(before)
    assert owners(gateway_of(volume)) == {(UID, GID)}
    assert sorted(os.listdir(volume / RECORD_DIR)) == ["migration.json"]
    assert record_of(volume) == {
        "version": 1,
        "source": str(source),
        "strategy": "copy",
        "entries": len(before),
        "bytes": sum(entry[2] for entry in before.values() if entry[0] == "file"),
        "time": "2026-01-01T00:00:00.000Z",
        "result": "migrated",
        "source_after": f"renamed to {source}.migrated-20260101T000000Z",
    }
    assert asides(source) == [Path(journal["aside"])]
    assert not os.path.lexists(source)


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


def check_after_kill(source: Path, volume: Path, original: dict[str, Entry]) -> None:
    """Only complete entries in the target, each the source's; the source intact somewhere."""
    expected = expected_target(original)
    target = gateway_of(volume)
    assert set(os.listdir(volume)) <= {RECORD_DIR, "gateway"}
    assert set(os.listdir(volume / RECORD_DIR)) <= RECORD_ENTRIES
    visible = manifest(target) if target.exists() else {}
    for name in os.listdir(target) if target.exists() else ():
        subtree = {rel: entry for rel, entry in visible.items() if rel == name or rel.startswith(name + "/")}
        wanted = {rel: entry for rel, entry in expected.items() if rel == name or rel.startswith(name + "/")}
        if name == "clawdbot.json":  # committed, not yet renamed to the preferred name
            wanted = {name: original[name]}
        assert subtree == wanted, f"partial or altered entry visible in the target: {name}"
    found = asides(source)
    if source.is_dir():
        assert found == []
        assert manifest(source) == original
    else:
        [aside] = found  # renamed aside whole
        assert manifest(aside) == original


def check_converged(
    run: Run, source: Path, volume: Path, original: dict[str, Entry], reference: dict
) -> None:
    assert run.returncode == 0
    assert run.result is not None
    assert run.result["warnings"] == []
    assert run.result["figures"]["outcome"] in ("migrated", "already-migrated")
    assert manifest(gateway_of(volume)) == expected_target(original)
    assert owners(gateway_of(volume)) == {(UID, GID)}
    assert sorted(os.listdir(volume / RECORD_DIR)) == ["migration.json"]
    record = record_of(volume)
    assert record is not None
    assert {key: record[key] for key in ("source", "strategy", "entries", "bytes", "result")} == reference
    assert not os.path.lexists(source)
    [aside] = asides(source)
    assert manifest(aside) == original


def reset(source: Path, volume: Path) -> None:
    for name in os.listdir(volume):
        path = volume / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    for aside in asides(source):
        aside.rename(source)


def test_sigkill_at_over_100_random_points_then_reboot_converges_and_never_shows_a_partial_entry(
    scratch: Path, mounts: Mounts
) -> None:
    # The source on the disk, a plain directory; the target a tmpfs mount point, as a volume: EXDEV,
    # so the whole path runs: staged copy, commit, record, set aside, with the pool of copier threads.
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "vol", size="256m")
    populate(source, scale=2)
    fill(source, 12_000_000)
    # Many small files in many top-level entries: a copy long enough to aim at, a commit of ~40 moves.
    for number in range(1000):
        sessions = source / f"bulk{number % 20:02d}"
        sessions.mkdir(exist_ok=True)
        (sessions / f"{number:05d}.jsonl").write_bytes(random.Random(number).randbytes(number % 700))
    original = manifest(source)
    plan = plan_for([source], volume)

    calibration = drive(plan, None)
    assert calibration.result is not None and calibration.result["warnings"] == []
    record = record_of(volume)
    assert record is not None and record["strategy"] == "copy"
    reference = {key: record[key] for key in ("source", "strategy", "entries", "bytes", "result")}
    done_at = calibration.arrivals["migration_done"]
    commit_window = done_at - calibration.arrivals["migration_commit"]
    reset(source, volume)

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
            check_after_kill(source, volume, original)
        check_converged(drive(plan, None), source, volume, original, reference)
        reset(source, volume)

    by_phase = {phase: sum(1 for _, seen in kills if seen == phase) for _, phase in kills}
    assert len(kills) >= KILLS_REQUIRED, f"only {len(kills)} kills landed in {attempts} attempts: {by_phase}"
    assert len({delay for delay, _ in kills}) == len(kills)  # all different moments
    assert {"before", "staging", "commit", "settle"} <= set(by_phase), f"kills by phase: {by_phase}"
