"""A restore puts the state dir of an archive `backup` made in place of the live one, sets the live
one aside (never deleted), brings the generated secret back with it and makes the state the
archive's release's, so that its image boots on it as on its own; the release's own CLI checks and
extracts the archive, pointed at a scratch state; every bad archive is refused with its exit code
and changes nothing; a kill at any instant is finished by the next restore, or by the next boot."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from entrypoint.boot.upgrade import restore
from entrypoint.common import checkpoints, releases, statelock, swapjournal
from entrypoint.common.exits import Exit
from entrypoint.common.plans import UpgradePlan
from entrypoint.common.releases import History, Ran
from entrypoint.tools import backup
from tests.boot.migration.helpers import Mounts
from tests.boot.migration.killing import killed, shape
from tests.boot.upgrade.helpers import (
    NEW,
    OLD,
    SECRET,
    backup_plan_for,
    events,
    gate,
    gateway_state,
    killed_at_seeded_points,
    layout,
    plan_for,
)

THE_SECRET = "the-secret-the-clients-know\n"


@contextmanager
def holding(upgrade: UpgradePlan) -> Iterator[None]:
    """The state lock, as the operator's command holds it around a restore."""
    lock = statelock.take(upgrade.record_dir)
    try:
        yield
    finally:
        os.close(lock)


def contents(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry's kind, owner, mode and content: what an archive keeps (not times to the
    nanosecond, nor hard links)."""
    return {
        path: entry[:3] + entry[4:5] if entry[0] == "file" else entry for path, entry in shape(root).items()
    }


def backed_up(root: Path) -> tuple[Path, dict[str, tuple[Any, ...]]]:
    """A state NEW runs on at `root` (its config, credentials, databases, a generated secret and a
    workspace), archived by `backup`: the archive, and the state dir's contents."""
    state, _, workspace = layout(root)
    gateway_state(state, NEW.version)
    (workspace / "notes.md").write_text("the user's work\n")
    secret = root / "volume" / ".moltbot-init" / SECRET
    secret.write_text(THE_SECRET)
    secret.chmod(0o600)
    releases.write(str(root / "volume" / ".moltbot-init"), History([Ran(NEW, 1.0)]))
    plan = backup_plan_for(root)
    assert backup.once(plan, plan_for(root), backup.Options(plan.directory, 7, None)) == Exit.OK
    [archive] = backup.archives(plan.directory, plan.archive_suffix)
    return Path(archive.path), contents(state)


def leftovers(root: Path) -> list[str]:
    """What a restore may leave in the record dir besides what it is for: nothing."""
    record = root / "volume" / ".moltbot-init"
    names = {swapjournal.FILE, swapjournal.STAGING, restore.SCRATCH, checkpoints.BEFORE_RESTORE}
    return sorted(name for name in os.listdir(record) if name in names)


def test_an_archive_restored_onto_a_fresh_volume_is_the_state_it_was_and_boots_as_its_release(
    tmp_path: Path,
) -> None:
    archive, before = backed_up(tmp_path / "first")
    assert Path(f"{archive}.{SECRET}").read_text() == THE_SECRET  # carried beside the archive
    fresh = tmp_path / "fresh"
    fresh_state, _, workspace = layout(fresh)
    fresh_state.chmod(0o700)  # as the image makes it: the release extracts its own 0755
    upgrade, log = plan_for(fresh), tmp_path / "cli.log"
    with holding(upgrade):
        done = restore.restore(upgrade, backup_plan_for(fresh, log=log), str(archive))

    volume = fresh / "volume"
    assert contents(volume / "gateway") == before
    assert (volume / "gateway").stat().st_mode & 0o777 == 0o700
    secret = volume / ".moltbot-init" / SECRET
    assert secret.read_text() == THE_SECRET and secret.stat().st_mode & 0o777 == 0o600
    history = releases.read(upgrade.record_dir)
    assert history is not None and [(ran.release, ran.how) for ran in history.ran] == [(NEW, "restored")]
    # NEW's image boots on it as on its own: no hold, no checkpoint.
    booted = gate(plan_for(fresh, NEW))
    assert (booted.holds, events(booted), booted.figures.get("checkpoint")) == (None, [], None)
    # The workspace volume is left as it was; the archive's copy of it is kept and named.
    assert os.listdir(workspace) == []
    [(kind, where)] = done.held
    assert kind == "workspace" and (Path(where) / "notes.md").read_text() == "the user's work\n"
    said = restore.next_steps(done, str(workspace))
    assert where in said and done.swap.aside in said and "relinking" in said and "secret came back" in said
    assert os.listdir(Path(done.swap.aside)) == ["gateway"]  # the fresh volume's empty state dir
    assert leftovers(fresh) == [checkpoints.BEFORE_RESTORE]
    # The release's CLI only ever saw a scratch state dir and HOME, never the live ones.
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [call["command"][1] for call in calls] == ["verify", "restore"]
    for call in calls:
        assert f"{restore.SCRATCH}/" in call["state_dir"] and f"{restore.SCRATCH}/" in call["home"]


def test_a_restore_sets_the_state_it_replaces_aside_and_an_older_archive_rolls_the_history_back(
    tmp_path: Path,
) -> None:
    """An archive of OLD's on a state NEW has run on since: the state is OLD's again, NEW's is
    rolled back from (its image would be held on it; OLD's boots)."""
    state, _, _ = layout(tmp_path)
    gateway_state(state, OLD.version)
    releases.write(str(tmp_path / "volume" / ".moltbot-init"), History([Ran(OLD, 1.0)]))
    plan = backup_plan_for(tmp_path, version=OLD.version, supported=True)
    assert backup.once(plan, plan_for(tmp_path, OLD), backup.Options(plan.directory, 7, None)) == 0
    [archive] = backup.archives(plan.directory, plan.archive_suffix)
    old = contents(state)
    (state / "openclaw.json").write_text('{"meta": {"lastTouchedVersion": "2026.9.6"}}')
    releases.write(str(tmp_path / "volume" / ".moltbot-init"), History([Ran(OLD, 1.0), Ran(NEW, 2.0)]))
    newer = shape(state)

    upgrade = plan_for(tmp_path, NEW)
    with holding(upgrade):
        done = restore.restore(upgrade, plan, archive.name)  # a name in the backups directory
    assert contents(state) == old and shape(Path(done.swap.aside) / "gateway") == newer
    history = releases.read(upgrade.record_dir)
    assert history is not None and [ran.release for ran in history.ran] == [OLD]
    assert [ran.release for ran in history.rolled_back] == [NEW]
    assert gate(plan_for(tmp_path, OLD)).holds is None


def refusing(root: Path, case: str, mounts: Mounts) -> tuple[str, dict[str, Any]]:
    """The archive to restore and the backup plan's changes, for each case."""
    if case == "no-room":
        mounts.tmpfs(root / "volume", "4m")  # the live state, the record dir and the staging on it
    if case == "missing":
        return str(root / "backups" / "gone-openclaw-backup.tar.gz"), {}
    if case == "a-directory":
        return str(root / "first"), {}
    if case == "not-an-archive":
        (root / "junk.tar.gz").write_bytes(b"\x1f\x8b junk, not a gzip stream")
        return str(root / "junk.tar.gz"), {}
    archive, _ = backed_up(root / "first")
    changes = {"refused-by-its-verify": {"refuse": "verify"}, "refused-by-its-restore": {"refuse": "restore"}}
    return str(archive), changes.get(
        case, {"supported": False} if case == "a-release-without-archives" else {}
    )


CASES = {
    "missing": Exit.NO_INPUT,
    "a-directory": Exit.NO_INPUT,
    "not-an-archive": Exit.DATA_ERROR,
    "refused-by-its-verify": Exit.DATA_ERROR,
    "refused-by-its-restore": Exit.FAILED,
    "a-release-without-archives": Exit.UNAVAILABLE,
    "no-room": Exit.CANT_CREATE,
}


@pytest.mark.parametrize("case", CASES)
def test_a_restore_refuses_what_it_cannot_restore_with_its_code_and_changes_nothing(
    tmp_path: Path, mounts: Mounts, case: str
) -> None:
    (tmp_path / "first").mkdir()
    archive, changes = refusing(tmp_path, case, mounts)
    state, _, _ = layout(tmp_path)
    gateway_state(state)
    if case == "no-room":  # all but 64 KiB of the volume taken
        free = os.statvfs(state).f_bavail * os.statvfs(state).f_frsize
        (tmp_path / "volume" / "ballast").write_bytes(b"\0" * (free - (64 << 10)))
    upgrade, plan = plan_for(tmp_path), backup_plan_for(tmp_path, **changes)
    with holding(upgrade):
        before = shape(tmp_path / "volume")
        with pytest.raises(restore.RestoreRefused) as refused:
            restore.restore(upgrade, plan, archive)
    assert refused.value.code == CASES[case], refused.value
    said = str(refused.value)
    assert "\n" not in said and len(said) < 600, said
    if case == "no-room":
        assert "nothing was changed" in said and said.count(" bytes") == 2
    assert shape(tmp_path / "volume") == before  # nothing live touched, nothing left behind
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("seed", [21, 22])
def test_a_kill_at_any_instant_is_finished_by_the_next_restore_or_the_next_boot(
    tmp_path: Path, seed: int
) -> None:
    archive, restored = backed_up(tmp_path / "first")
    volume = tmp_path / "volume"
    state, _, _ = layout(tmp_path)
    gateway_state(state, NEW.version)
    (state / "openclaw.json").write_text('{"changed": "since the backup"}')
    live = shape(state)
    upgrade, plan = plan_for(tmp_path), backup_plan_for(tmp_path)

    def step() -> dict:
        return {"aside": restore.restore(upgrade, plan, str(archive)).swap.aside}

    aside_dir = volume / ".moltbot-init" / checkpoints.BEFORE_RESTORE
    for number, kill_at, journaled in killed_at_seeded_points(step, volume, seed, 24):
        if not journaled:
            # Killed before its journal: nothing live moved; a boot removes what it staged.
            assert shape(state) == live and not aside_dir.exists(), kill_at
            if number % 2:
                result = gate(plan_for(tmp_path, NEW))
                assert result.holds is None and events(result) == [], kill_at
                assert not (volume / ".moltbot-init" / swapjournal.STAGING).exists(), kill_at
            assert not killed(step).killed  # a restore run again does it all
        elif number % 2:
            assert not killed(step).killed  # the next restore finishes it
        else:
            result = gate(plan_for(tmp_path, NEW))  # the next boot finishes it first
            assert result.holds is None and events(result) == ["restore_finished"], (kill_at, result.warnings)
        assert contents(state) == restored, kill_at
        [aside] = os.listdir(aside_dir)
        assert shape(aside_dir / aside / "gateway") == live, kill_at
        assert (volume / ".moltbot-init" / SECRET).read_text() == THE_SECRET
        assert leftovers(tmp_path) == [checkpoints.BEFORE_RESTORE], kill_at
