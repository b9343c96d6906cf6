"""The state volume's layout, kept on every boot: whatever lies at its root that is not its own is
moved into the application's directory, and the application's home gets the links it needs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from entrypoint.boot import migration
from entrypoint.common.plans import StopFlag
from tests.boot.migration.helpers import (
    GID,
    HOME_DIR,
    RECORD_DIR,
    UID,
    events,
    gateway_of,
    manifest,
    plan_for,
    populate,
    record_of,
)


def test_an_earlier_versions_volume_is_moved_into_the_target_and_its_record_still_counts(
    scratch: Path,
) -> None:
    """What the previous version of the image left: the state at the volume's root, its record
    in the same record dir, a link at the legacy path (into the volume) and the legacy dir aside."""
    volume, legacy = scratch / "state", scratch / "home" / ".clawdbot"
    populate(volume)
    (volume / "lost+found").mkdir()
    (volume / RECORD_DIR).mkdir()
    record = {
        "version": 1,
        "source": str(legacy),
        "strategy": "copy",
        "entries": 12,
        "bytes": 3400,
        "time": "2026-01-01T00:00:00.000Z",
        "result": "migrated",
        "source_after": f"renamed to {legacy}.migrated-20260101T000000Z",
    }
    (volume / RECORD_DIR / "migration.json").write_text(json.dumps(record))
    legacy.parent.mkdir()
    legacy.symlink_to(volume)
    state = manifest(volume, exclude=("lost+found", RECORD_DIR))

    result = migration.run(plan_for([legacy], volume), StopFlag())

    assert (result.status, result.warnings) == ("ok", [])
    assert result.figures["outcome"] == "already-migrated"
    assert result.figures["relocated"] == len(os.listdir(gateway_of(volume)))
    assert sorted(os.listdir(volume)) == [RECORD_DIR, "gateway", "lost+found"]
    expected = dict(state)
    expected["moltbot.json"] = expected.pop("clawdbot.json")  # the config rename runs as always
    assert manifest(gateway_of(volume)) == expected
    assert record_of(volume) == record
    # Every later boot: nothing left to move.
    assert migration.run(plan_for([legacy], volume), StopFlag()).figures["relocated"] == 0


def test_the_seeds_leftovers_are_not_a_conflict_they_are_moved_in_and_merged_with_the_legacy_state(
    scratch: Path,
) -> None:
    """The seed's failed start: root-owned empty cron/, canvas/, logs/ and a log file at the root."""
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    populate(source)
    for leftover in ("cron", "canvas", "logs"):
        (volume / leftover).mkdir(parents=True)
    (volume / "gateway.log").write_text("EACCES: permission denied, mkdir '/home/node/.clawdbot/agents'\n")
    leftovers = manifest(volume)
    source_before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert (result.status, result.warnings) == ("ok", [])
    assert (result.figures["outcome"], result.figures["strategy"]) == ("migrated", "merge")
    assert result.figures["relocated"] == 4
    # Nothing was in both with the same name but the directories: every other path was added.
    assert result.figures["kept_identical"] == 0
    assert (
        result.figures["added"]
        == len([rel for rel in source_before if "/" not in rel or rel == "cron/jobs.json"]) - 2
    )
    after = manifest(gateway_of(volume))
    for rel, entry in source_before.items():
        if rel not in ("cron", "logs"):  # in both: the target's directories, entered
            assert after["moltbot.json" if rel == "clawdbot.json" else rel] == entry, rel
    assert after["gateway.log"] == leftovers["gateway.log"] and after["canvas"] == leftovers["canvas"]
    assert record_of(volume)["strategy"] == "merge"
    assert (os.lstat(gateway_of(volume) / "cron" / "jobs.json").st_uid, GID) == (UID, GID)


def test_files_alike_in_both_are_kept_and_counted_not_conflicts(scratch: Path) -> None:
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    populate(source)
    target = gateway_of(volume)
    target.mkdir(parents=True)
    (target / "exec-approvals.json").write_bytes((source / "exec-approvals.json").read_bytes())
    (target / "agents").mkdir()
    (target / "agents" / "current").symlink_to("main")
    before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert (result.figures["strategy"], result.warnings) == ("merge", [])
    assert result.figures["kept_identical"] == 2
    after = manifest(target)
    added = {rel: entry for rel, entry in before.items() if rel.startswith("agents/main/")}
    assert {rel: after[rel] for rel in added} == added


def test_a_name_both_at_the_root_and_in_the_target_stays_at_the_root_with_a_warning_naming_both(
    scratch: Path,
) -> None:
    volume = scratch / "state"
    (volume / "gateway").mkdir(parents=True)
    (volume / "gateway" / "moltbot.json").write_text("the one in use")
    (volume / "moltbot.json").write_text("an older one")
    (volume / "media").mkdir()

    result = migration.run(plan_for([], volume), StopFlag())

    assert events(result) == ["migration_relocation_conflict"]
    [warning] = result.warnings
    assert str(volume / "moltbot.json") in warning["message"]
    assert str(volume / "gateway" / "moltbot.json") in warning["message"]
    assert (volume / "moltbot.json").read_text() == "an older one"
    assert (volume / "gateway" / "moltbot.json").read_text() == "the one in use"
    assert (volume / "gateway" / "media").is_dir() and result.figures["relocated"] == 1


def test_a_link_planted_in_place_of_the_target_is_never_followed(scratch: Path) -> None:
    """The volume's root is the user's: a link there must not send root's renames elsewhere."""
    volume, elsewhere = scratch / "state", scratch / "etc"
    elsewhere.mkdir()
    volume.mkdir()
    (volume / "gateway").symlink_to(elsewhere)
    (volume / "passwd").write_text("to be moved")

    result = migration.run(plan_for([], volume), StopFlag())

    assert events(result) == ["migration_failed"]
    assert result.warnings[0]["errno"] in ("ELOOP", "ENOTDIR")  # O_NOFOLLOW | O_DIRECTORY
    assert os.listdir(elsewhere) == []
    assert (volume / "passwd").read_text() == "to be moved"


def test_the_homes_links_are_made_and_stale_ones_of_ours_removed_real_entries_are_left_with_a_warning(
    scratch: Path,
) -> None:
    volume = scratch / "state"
    home, gateway = volume / HOME_DIR, gateway_of(volume)
    home.mkdir(parents=True)
    (home / ".openclaw").symlink_to(volume)  # an earlier generation's link: ours, not wanted now
    (home / ".moltbot").mkdir()  # a real directory: never removed
    (home / ".moldbot").symlink_to("/etc")  # not ours
    links = (
        (str(home / ".clawdbot"), str(gateway)),
        (str(home / ".openclaw"), None),
        (str(home / ".moltbot"), None),
        (str(home / ".moldbot"), None),
    )

    result = migration.run(plan_for([], volume, home_links=links), StopFlag())

    assert result.figures["home_links"] == {
        "made": [str(home / ".clawdbot")],
        "removed": [str(home / ".openclaw")],
    }
    assert os.readlink(home / ".clawdbot") == str(gateway)
    assert (os.lstat(home / ".clawdbot").st_uid, os.lstat(home / ".clawdbot").st_gid) == (UID, GID)
    assert not os.path.lexists(home / ".openclaw")
    assert (home / ".moltbot").is_dir() and os.readlink(home / ".moldbot") == "/etc"
    assert events(result) == ["migration_home_link_blocked", "migration_home_link_blocked"]
    assert [w["path"] for w in result.warnings] == [str(home / ".moltbot"), str(home / ".moldbot")]
    # Every boot makes them true again; with nothing to change, it changes nothing.
    again = migration.run(plan_for([], volume, home_links=links), StopFlag())
    assert "home_links" not in again.figures
    os.unlink(home / ".clawdbot")
    assert migration.run(plan_for([], volume, home_links=links), StopFlag()).figures["home_links"][
        "made"
    ] == [str(home / ".clawdbot")]


def test_without_a_home_no_link_is_made_and_nothing_is_said(scratch: Path) -> None:
    volume = scratch / "state"
    links = ((str(volume / HOME_DIR / ".clawdbot"), str(gateway_of(volume))),)

    result = migration.run(plan_for([], volume, home_links=links), StopFlag())

    assert (result.status, result.warnings) == ("ok", [])
    assert not (volume / HOME_DIR).exists()


def test_what_the_user_keeps_at_the_volume_root_stays_there_and_is_named_once(scratch: Path) -> None:
    """`backups/` (where the gateway's own `backup create --output` writes) is the user's: only the
    gateway's own entries at the root (an earlier layout's) are moved into its state dir."""
    volume = scratch / "state"
    (volume / "backups").mkdir(parents=True)
    (volume / "backups" / "openclaw-backup-1.tar.gz").write_bytes(b"archive")
    (volume / "notes.txt").write_text("mine")
    (volume / "clawdbot.json").write_text("{}")  # the earlier layout's config: the gateway's
    (volume / "cron").mkdir()  # the seed's leftover

    first = migration.run(plan_for([], volume), StopFlag())
    again = migration.run(plan_for([], volume), StopFlag())

    assert sorted(os.listdir(volume)) == [RECORD_DIR, "backups", "gateway", "notes.txt"]
    assert (volume / "backups" / "openclaw-backup-1.tar.gz").read_bytes() == b"archive"
    assert sorted(os.listdir(gateway_of(volume))) == ["cron", "moltbot.json"]
    [warning] = first.warnings
    assert warning["event"] == "migration_root_entries_kept" and warning["entries"] == [
        "backups",
        "notes.txt",
    ]
    assert again.warnings == [] and again.figures["kept_at_root"] == ["backups", "notes.txt"]
