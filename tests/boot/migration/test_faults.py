"""Faults are warnings: the boot goes on, the source is intact, the target is as it was or migrated.

Each errno comes from the kernel: a 2 MiB tmpfs (ENOSPC), a read-only bind mount (EROFS), a process
without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH or CAP_CHOWN (EACCES, EPERM from chown), an immutable
directory (EPERM from rename), a file removed while the copy runs (ENOENT).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.boot import migration
from entrypoint.common.plans import StopFlag
from tests.boot.migration.helpers import (
    GID,
    RECORD_DIR,
    UID,
    Mounts,
    asides,
    chown_tree,
    events,
    fill,
    gateway_of,
    manifest,
    plan_for,
    populate,
    record_of,
    run_driver,
)

WITHOUT_DAC = ("setpriv", "--bounding-set=-dac_override,-dac_read_search", "--")
WITHOUT_CHOWN = ("setpriv", "--bounding-set=-chown", "--")


def test_no_space_mid_copy_removes_the_staging_and_leaves_the_target_as_it_was(
    scratch: Path, mounts: Mounts
) -> None:
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state", size="2m")
    fill(source, 3_000_000)
    source_before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert events(result) == ["migration_no_space"]
    [warning] = result.warnings
    assert "nothing was copied" in warning["message"]
    assert result.figures["outcome"] == "failed"
    # Measured before the first byte: both numbers, in the warning and the figures.
    assert warning["needed_bytes"] == result.figures["needed_bytes"] >= 3_000_000
    assert warning["free_bytes"] == result.figures["free_bytes"] <= 2 << 20
    for said in (str(warning["needed_bytes"]), str(warning["free_bytes"]), "MOLTBOT_MIGRATE=off"):
        assert said in warning["message"]
    # The hold says what the warning says, but for the ways out, which the hold gives itself.
    assert isinstance(result, migration.MigrationResult) and result.holds is not None
    assert warning["message"].startswith(result.holds) and "MOLTBOT_MIGRATE=off" not in result.holds
    assert sorted(os.listdir(volume)) == [RECORD_DIR, "gateway"]
    assert os.listdir(gateway_of(volume)) == [] and os.listdir(volume / RECORD_DIR) == []  # no staging
    assert manifest(source) == source_before
    assert asides(source) == [] and not source.is_symlink()
    # Once there is room, the next boot migrates.
    subprocess.run(["mount", "-o", "remount,size=8m", str(volume)], check=True)
    assert migration.run(plan_for([source], volume), StopFlag()).figures["outcome"] == "migrated"
    assert manifest(gateway_of(volume)) == source_before


def test_no_space_during_merge_missing_leaves_the_existing_target_untouched(
    scratch: Path, mounts: Mounts
) -> None:
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state", size="2m")
    target = gateway_of(volume)
    fill(source, 3_000_000)
    target.mkdir()
    (target / "moltbot.json").write_text("{}")
    (target / "d0").mkdir()
    (target / "d0" / "mine").write_text("the target's")
    (volume / RECORD_DIR).mkdir()
    (volume / RECORD_DIR / "gateway-token").write_text("token")
    before, records_before = manifest(target), manifest(volume / RECORD_DIR)

    result = migration.run(plan_for([source], volume, mode="merge-missing"), StopFlag())

    assert events(result) == ["migration_no_space"]
    assert result.figures["needed_bytes"] > result.figures["free_bytes"]
    assert manifest(target) == before
    assert manifest(volume / RECORD_DIR) == records_before  # the token is still there, alone


def test_an_estimate_that_fits_but_a_copy_that_does_not_still_says_both_numbers(
    scratch: Path, mounts: Mounts
) -> None:
    """The room is measured in blocks; a volume that another writer fills meanwhile still runs out:
    ENOSPC mid-copy says what was measured, and the staging goes."""
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state", size="8m")
    fill(source, 3_000_000)

    class FilledMeanwhile(StopFlag):
        """Never set; its second look (the copier's first entry) fills the volume from outside."""

        looks = 0

        def is_set(self) -> bool:
            self.looks += 1
            if self.looks == 2:
                with contextlib.suppress(OSError), open(volume / "filler", "wb") as handle:
                    handle.write(b"x" * (8 << 20))
            return False

    result = migration.run(plan_for([source], volume), FilledMeanwhile())

    assert events(result)[0] == "migration_no_space", result.warnings
    warning = result.warnings[0]
    assert warning["needed_bytes"] <= warning["free_bytes"]  # it fitted when measured
    assert "left as it was" in warning["message"]
    assert isinstance(result, migration.MigrationResult) and result.holds is not None


def test_read_only_target_is_a_warning_and_nothing_changes(scratch: Path, mounts: Mounts) -> None:
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    populate(source)
    volume.mkdir()
    mounts.bind(volume, volume, read_only=True)
    source_before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert events(result) == ["migration_target_read_only"]
    assert result.warnings[0]["errno"] == "EROFS"
    assert os.listdir(volume) == []
    assert manifest(source) == source_before


def test_unreadable_source_file_without_dac_capabilities_is_a_warning_and_the_target_stays_empty(
    scratch: Path, mounts: Mounts
) -> None:
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    populate(source)
    chown_tree(source, UID, GID)  # as node left it: 0600 secrets root can read only with DAC caps
    source_before = manifest(source)

    ran = run_driver(plan_for([source], volume), prefix=WITHOUT_DAC)

    assert ran.returncode == 0, ran.stderr
    assert ran.result is not None
    [warning] = ran.result["warnings"]
    assert warning["event"] == "migration_source_unreadable"
    assert warning["errno"] == "EACCES"
    assert warning["path"].startswith(str(source) + "/")
    assert manifest(gateway_of(volume)) == {} and os.listdir(volume / RECORD_DIR) == []
    assert manifest(source) == source_before and not source.is_symlink()


def test_unreadable_first_source_holds_back_the_later_ones(scratch: Path) -> None:
    first, later, volume = scratch / "home" / ".clawdbot", scratch / "home" / ".moltbot", scratch / "state"
    populate(first)
    populate(later, seed=2)
    chown_tree(first, UID, GID)
    first.chmod(0o700)

    ran = run_driver(plan_for([first, later], volume), prefix=WITHOUT_DAC)

    assert ran.result is not None, ran.stderr
    assert ran.result["figures"]["outcome"] == "blocked"
    assert [w["event"] for w in ran.result["warnings"]] == ["migration_source_unreadable"]
    assert manifest(gateway_of(volume)) == {}
    # As root, a legacy dir root cannot read holds the application: its state is not in place.
    assert ran.result["holds"] and ran.result["warnings"][0]["message"].startswith(ran.result["holds"])


@pytest.fixture
def immutable(scratch: Path) -> Iterator[list[Path]]:
    marked: list[Path] = []
    yield marked
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_immutable_source_gets_eperm_is_copied_and_kept_in_place_with_a_warning(
    scratch: Path, immutable: list[Path]
) -> None:
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    target = gateway_of(volume)
    populate(source)
    source_before = manifest(source)
    if subprocess.run(["chattr", "+i", str(source)], capture_output=True).returncode != 0:
        pytest.skip(f"no immutable flag on the filesystem of {scratch}")
    immutable.append(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert result.figures["rename_refused"] == "EPERM"
    assert events(result) == ["migration_source_kept"]
    assert result.warnings[0]["errno"] == "EPERM"
    assert manifest(target)["moltbot.json"] == source_before["clawdbot.json"]
    assert len(manifest(target)) == len(source_before)
    assert manifest(source) == source_before
    assert record_of(volume)["source_after"].startswith("left in place")
    # The record makes the next boot a no-op; the kept source is not a conflict.
    again = migration.run(plan_for([source], volume), StopFlag())
    assert (again.figures["outcome"], again.warnings) == ("already-migrated", [])


def test_without_cap_chown_the_copy_is_kept_owned_by_root_with_one_warning(
    scratch: Path, mounts: Mounts
) -> None:
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    populate(source)
    source_before = manifest(source)

    ran = run_driver(plan_for([source], volume), prefix=WITHOUT_CHOWN)

    assert ran.result is not None, ran.stderr
    assert [w["event"] for w in ran.result["warnings"]] == ["migration_chown_failed"]
    assert ran.result["figures"]["outcome"] == "migrated"
    expected = dict(source_before)
    expected["moltbot.json"] = expected.pop("clawdbot.json")
    assert manifest(gateway_of(volume)) == expected


class RemoveWhileCopying(StopFlag):
    """A stop flag that is never set but, at its n-th look, removes paths from the source: the
    copier looks at it before each entry, so the removal lands between a listing and the copy."""

    def __init__(self, at: int, paths: list[Path]) -> None:
        super().__init__()
        self.at = at
        self.paths = paths
        self.looks = 0

    def is_set(self) -> bool:
        self.looks += 1
        if self.looks == self.at:
            for path in self.paths:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        return False


def test_entries_removed_during_the_copy_are_skipped_and_the_rest_is_exact(
    scratch: Path, mounts: Mounts
) -> None:
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    target = gateway_of(volume)
    for number in range(100):
        (source / "big").mkdir(parents=True, exist_ok=True)
        (source / "big" / f"f{number:03d}").write_bytes(os.urandom(100))
    (source / "big" / "zz").mkdir()
    (source / "big" / "zz" / "inner").write_text("x")
    # Looks: 1 before the migration, 2 for `big`, then one per entry of `big` in sorted order.
    stop = RemoveWhileCopying(50, [source / "big" / "f098", source / "big" / "f099", source / "big" / "zz"])

    result = migration.run(plan_for([source], volume), stop)

    assert result.status == "ok", result.warnings
    assert result.figures["vanished"] == 3
    [aside] = asides(source)
    assert sorted(os.listdir(target / "big")) == [f"f{number:03d}" for number in range(98)]
    expected = manifest(aside)
    expected.pop("big")  # its mtime moved when the entries went; the copy has the one it opened
    after = manifest(target)
    after.pop("big")
    assert after == expected


def test_hard_link_to_a_file_of_another_user_is_not_copied(scratch: Path, mounts: Mounts) -> None:
    """The legacy dir is the host user's (1001); a name planted in it for root's /etc/shadow
    would otherwise hand the shadow's content to the target user."""
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    populate(source)
    chown_tree(source, 1001, 1001)
    outside = scratch / "shadow"
    outside.write_text("root:$6$secret")
    outside.chmod(0o600)
    os.link(outside, source / "innocent.json")

    result = migration.run(plan_for([source], volume), StopFlag())

    assert events(result) == ["migration_hardlinks_skipped"]
    assert not (gateway_of(volume) / "innocent.json").exists()
    assert (asides(source)[0] / "innocent.json").read_text() == "root:$6$secret"  # nothing lost


def test_device_nodes_are_not_recreated_in_the_volume(scratch: Path, mounts: Mounts) -> None:
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    target = gateway_of(volume)
    populate(source)
    os.mknod(source / "null", 0o666 | 0o020000, os.makedev(1, 3))

    result = migration.run(plan_for([source], volume), StopFlag())

    assert events(result) == ["migration_devices_skipped"]
    assert not (target / "null").exists()
    assert (target / "credentials" / "oauth.json").exists()
