"""A real conflict loses nothing: the target wins and is not changed, the whole legacy tree is
saved once into the record dir, one warning says where and how to merge; and the record dir,
which belongs to the user, cannot steer root elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

from entrypoint.boot import migration
from entrypoint.common.plans import StopFlag
from tests.boot.migration.helpers import (
    GID,
    RECORD_DIR,
    SETTING,
    UID,
    asides,
    events,
    gateway_of,
    manifest,
    owners,
    plan_for,
    populate,
    record_of,
    staging_of,
    write_earlier_journal,
)


def conflicting(scratch: Path) -> tuple[Path, Path, Path]:
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    target = gateway_of(volume)
    populate(source)
    (target / "credentials").mkdir(parents=True)
    (target / "credentials" / "oauth.json").write_text("the gateway's newer token")  # differs
    (target / "cron").write_text("a file where the legacy tree has a directory")  # differs in kind
    (target / "exec-approvals.json").write_bytes((source / "exec-approvals.json").read_bytes())  # alike
    return source, volume, target


def test_a_real_conflict_keeps_the_target_and_saves_the_whole_legacy_tree_once(scratch: Path) -> None:
    source, volume, target = conflicting(scratch)
    target_before, source_before = manifest(target), manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert (result.figures["outcome"], result.figures["strategy"]) == ("conflict", "save")
    [saved] = (volume / RECORD_DIR / "legacy").iterdir()
    assert saved.name.startswith(".clawdbot-") and saved.name.endswith("Z")
    assert result.figures["saved"] == str(saved) and result.figures["conflicting_paths"] == 2
    assert manifest(target) == target_before  # the target wins, untouched (not even renamed config)
    assert manifest(saved) == source_before  # the whole tree, byte for byte, modes and times
    assert owners(saved) == {(UID, GID)}
    assert manifest(source) == source_before and asides(source) == []  # left in place
    [warning] = result.warnings
    assert warning["event"] == "migration_conflict"
    assert warning["samples"] == ["credentials/oauth.json", "cron"]
    for text in (str(source), str(target), str(saved), "credentials/oauth.json", f"{SETTING}=merge-missing"):
        assert text in warning["message"], text
    record = record_of(volume)
    assert (record["result"], record["saved"], record["conflicts"]) == ("conflict", str(saved), 2)

    again = migration.run(plan_for([source], volume), StopFlag())

    assert (again.figures["outcome"], again.warnings) == ("already-migrated", [])
    assert (again.figures["result"], again.figures["saved"]) == ("conflict", str(saved))
    assert len(os.listdir(volume / RECORD_DIR / "legacy")) == 1  # not copied again


def test_after_a_conflict_merge_missing_adds_what_the_target_lacks_its_versions_winning(
    scratch: Path,
) -> None:
    source, volume, target = conflicting(scratch)
    target_before, source_before = manifest(target), manifest(source)
    migration.run(plan_for([source], volume), StopFlag())

    merged = migration.run(plan_for([source], volume, mode="merge-missing"), StopFlag())

    assert (merged.figures["outcome"], merged.figures["strategy"], merged.warnings) == (
        "migrated",
        "merge-missing",
        [],
    )
    after = manifest(target)
    for rel, entry in target_before.items():
        assert after[rel] == entry or entry[0] == "dir", rel  # a directory merged into: a new mtime
    assert after["credentials/whatsapp/creds.json"] == source_before["credentials/whatsapp/creds.json"]
    assert after["moltbot.json"] == source_before["clawdbot.json"]
    assert record_of(volume)["result"] == "migrated"


def test_a_journal_naming_paths_this_plan_does_not_migrate_is_not_followed(scratch: Path) -> None:
    """The record dir is the user's after the boot: a journal planted there naming another
    directory (here one holding a root-only secret) must not make root copy it into the volume."""
    volume, secret = scratch / "state", scratch / "root-only"
    secret.mkdir(mode=0o700)
    (secret / "shadow").write_text("root:$6$secret")
    write_earlier_journal(secret, volume, ["shadow"])

    result = migration.run(plan_for([scratch / "home" / ".clawdbot"], volume), StopFlag())

    assert events(result) == ["migration_staging_foreign"]
    assert manifest(gateway_of(volume)) == {} and not staging_of(volume).exists()
    assert sorted(os.listdir(volume)) == [RECORD_DIR, "gateway"]
    assert (secret / "shadow").read_text() == "root:$6$secret"
