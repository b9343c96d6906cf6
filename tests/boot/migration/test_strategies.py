"""Rename where the kernel allows it; a byte-for-byte copy where it answers EBUSY or EXDEV."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from entrypoint.boot import migration
from entrypoint.boot import treecopy as copier
from entrypoint.common.plans import StopFlag
from tests.boot.migration.helpers import (
    GID,
    RECORD_DIR,
    UID,
    Mounts,
    asides,
    gateway_of,
    manifest,
    owners,
    plan_for,
    populate,
    record_of,
    staging_of,
)


def expected_after_config_rename(before: dict) -> dict:
    """The migration renames clawdbot.json to the preferred moltbot.json, nothing else changes."""
    after = dict(before)
    after["moltbot.json"] = after.pop("clawdbot.json")
    return after


def test_plain_source_on_the_target_filesystem_is_renamed_into_the_target_and_no_link_is_left(
    scratch: Path,
) -> None:
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    target = gateway_of(volume)
    populate(source)
    target.mkdir(parents=True)
    before = manifest(source)
    inode = os.stat(source / "credentials" / "oauth.json").st_ino

    result = migration.run(plan_for([source], volume), StopFlag())

    assert result.status == "ok", result.warnings
    assert result.figures["strategy"] == "rename"
    assert result.figures["outcome"] == "migrated"
    assert manifest(target) == expected_after_config_rename(before)
    assert os.stat(target / "credentials" / "oauth.json").st_ino == inode  # moved, not copied
    assert not os.path.lexists(source)  # the gateway's HOME is in the volume: no link is needed
    assert asides(source) == []
    assert not staging_of(volume).exists()


def test_bind_mounted_source_gets_a_real_ebusy_and_is_copied_byte_for_byte_and_left_untouched(
    scratch: Path, mounts: Mounts
) -> None:
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    target = gateway_of(volume)
    populate(source)
    mounts.bind(source, source)  # the upstream compose file's `~/.clawdbot:/home/node/.clawdbot`
    volume.mkdir()
    before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert result.status == "ok", result.warnings
    assert result.figures["rename_refused"] == "EBUSY"
    assert result.figures["strategy"] == "copy"
    assert manifest(target) == expected_after_config_rename(before)
    assert manifest(source) == before  # not renamed aside, not linked, not one byte changed
    assert os.path.ismount(source) or not source.is_symlink()
    assert asides(source) == []
    assert "left in place" in result.figures["source_after"]


def test_source_on_another_filesystem_gets_a_real_exdev_is_copied_then_set_aside(
    scratch: Path, mounts: Mounts
) -> None:
    home = mounts.tmpfs(scratch / "home")
    source, volume = home / ".clawdbot", scratch / "state"
    target = gateway_of(volume)
    populate(source)
    before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert result.status == "ok", result.warnings
    assert result.figures["rename_refused"] == "EXDEV"
    assert manifest(target) == expected_after_config_rename(before)
    [aside] = asides(source)
    assert manifest(aside) == before
    assert not os.path.lexists(source)
    assert result.figures["source_after"] == f"renamed to {aside}"


def test_mount_point_source_on_another_filesystem_is_copied_and_never_modified(
    scratch: Path, mounts: Mounts
) -> None:
    source, volume = mounts.tmpfs(scratch / "home" / ".clawdbot"), scratch / "state"
    target = gateway_of(volume)
    populate(source)
    before = manifest(source)
    source_mtime = os.stat(source).st_mtime_ns

    result = migration.run(plan_for([source], volume), StopFlag())

    # rename(2) resolves the parent and stops at the last component, the mount point: EBUSY, even
    # though the mounted filesystem differs (EXDEV is for a parent on another mount).
    assert result.figures["rename_refused"] == "EBUSY"
    assert manifest(target) == expected_after_config_rename(before)
    assert manifest(source) == before
    assert os.stat(source).st_mtime_ns == source_mtime
    assert asides(source) == []


@pytest.mark.parametrize("workers", [1, 4], ids=["inline-copy", "pool-of-4"])
def test_copy_into_a_volume_mount_point_gives_every_entry_to_the_target_user_and_keeps_modes_times_links(
    scratch: Path, mounts: Mounts, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr(copier, "WORKERS", workers)
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    target = gateway_of(volume)
    populate(source)
    before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert result.status == "ok", result.warnings
    after = manifest(target)
    assert after == expected_after_config_rename(before)
    assert owners(target) == {(UID, GID)}
    assert after["credentials/oauth.json"][1] == 0o600
    assert after["sandboxes"][1] == 0o700
    assert os.readlink(target / "browser/default/user-data/SingletonLock") == "old-hostname-4242"
    assert os.readlink(target / "agents/current") == "main"
    assert stat.S_ISFIFO(os.lstat(target / "browser/default/fifo").st_mode)
    record = record_of(volume)
    assert record is not None
    assert record["strategy"] == "copy"
    assert record["entries"] == len(before)
    assert record["bytes"] == sum(entry[2] for entry in before.values() if entry[0] == "file")
    assert result.figures["entries"] == record["entries"]
    assert result.figures["record"] == str(volume / RECORD_DIR / "migration.json")
    assert not staging_of(volume).exists()
    assert sorted(os.listdir(volume)) == [RECORD_DIR, "gateway"]


def test_absent_volume_and_target_are_created_for_the_target_user_0700(scratch: Path) -> None:
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    target = gateway_of(volume)
    populate(source)
    before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert result.status == "ok", result.warnings
    assert manifest(target) == expected_after_config_rename(before)
    for made in (volume, target, volume / RECORD_DIR):
        seen = os.stat(made)
        assert (seen.st_uid, seen.st_gid, stat.S_IMODE(seen.st_mode)) == (UID, GID, 0o700), made
