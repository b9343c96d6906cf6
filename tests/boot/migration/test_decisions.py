"""Which source, whether to migrate at all, and what every boot does: records, conflicts, links."""

from __future__ import annotations

import os
from pathlib import Path

from entrypoint.boot import migration
from entrypoint.common.plans import StopFlag
from tests.boot.migration.helpers import (
    GID,
    SETTING,
    UID,
    asides,
    events,
    manifest,
    plan_for,
    populate,
    record_of,
)


def test_second_run_is_a_no_op_because_of_the_record(scratch: Path) -> None:
    source, target = scratch / "home" / ".clawdbot", scratch / "state"
    populate(source)
    plan = plan_for([source], target)
    first = migration.run(plan, StopFlag())
    after_first = manifest(target)
    record = record_of(target)

    second = migration.run(plan, StopFlag())

    assert first.figures["outcome"] == "migrated"
    assert second.figures["outcome"] == "already-migrated"
    assert second.status == "ok"
    assert manifest(target) == after_first
    assert record_of(target) == record
    assert {key: second.figures[key] for key in ("source", "strategy", "entries", "bytes")} == {
        key: record[key] for key in ("source", "strategy", "entries", "bytes")
    }


def test_target_holding_data_without_record_is_a_conflict_naming_both_paths_and_the_setting(
    scratch: Path,
) -> None:
    source, target = scratch / "home" / ".clawdbot", scratch / "state"
    populate(source)
    (target / "agents").mkdir(parents=True)
    (target / "moltbot.json").write_text('{"mine": true}')
    target_before, source_before = manifest(target), manifest(source)

    result = migration.run(plan_for([source], target), StopFlag())

    assert result.status == "warned"
    assert result.figures["outcome"] == "conflict"
    assert result.figures["conflicts"] == 1
    [warning] = result.warnings
    assert warning["event"] == "migration_conflict"
    for text in (str(source), str(target), f"{SETTING}=merge-missing"):
        assert text in warning["message"]
    assert manifest(target) == target_before
    assert manifest(source) == source_before
    assert record_of(target) is None  # the next boot reports it again


def test_merge_missing_copies_only_absent_entries_and_never_overwrites_one(scratch: Path) -> None:
    source, target = scratch / "home" / ".clawdbot", scratch / "state"
    populate(source)
    (target / "credentials").mkdir(parents=True)
    (target / "credentials" / "oauth.json").write_text("the target's own token")
    (target / "cron").write_text("a file where the source has a directory")
    target_before, source_before = manifest(target), manifest(source)

    result = migration.run(plan_for([source], target, mode="merge-missing"), StopFlag())

    assert result.status == "ok", result.warnings
    assert result.figures["strategy"] == "merge-missing"
    assert result.figures["kept_existing"] == 2
    after = manifest(target)
    assert after["credentials/oauth.json"] == target_before["credentials/oauth.json"]
    assert after["cron"] == target_before["cron"]
    assert after["credentials/whatsapp/creds.json"] == source_before["credentials/whatsapp/creds.json"]
    missing = {
        rel: entry
        for rel, entry in source_before.items()
        if rel not in target_before and not rel.startswith("cron/") and rel != "clawdbot.json"
    }
    assert {rel: after[rel] for rel in missing} == missing
    assert after["moltbot.json"] == source_before["clawdbot.json"]  # then renamed to the preferred name
    assert record_of(target)["kept_existing"] == 2
    assert migration.run(plan_for([source], target, mode="merge-missing"), StopFlag()).figures["outcome"] == (
        "already-migrated"
    )


def test_later_sources_holding_data_are_reported_as_conflicts_and_left_alone(scratch: Path) -> None:
    first, later, target = scratch / "home" / ".clawdbot", scratch / "home" / ".moltbot", scratch / "state"
    populate(first, seed=1)
    populate(later, seed=2)
    later_before = manifest(later)
    empty = scratch / "home" / ".moldbot"
    empty.mkdir()

    result = migration.run(plan_for([empty, first, later], target), StopFlag())

    assert result.figures["source"] == str(first)
    assert result.figures["conflicts"] == 1
    [warning] = result.warnings
    assert warning["event"] == "migration_source_conflict"
    assert str(later) in warning["message"] and str(first) in warning["message"]
    assert manifest(later) == later_before
    assert os.readlink(empty) == str(target)  # an empty legacy dir becomes a link too
    # Reported again at every boot, as long as it holds data.
    assert events(migration.run(plan_for([empty, first, later], target), StopFlag())) == [
        "migration_source_conflict"
    ]


def test_source_that_links_to_the_target_is_not_migrated_again(scratch: Path) -> None:
    target = scratch / "state"
    target.mkdir()
    (target / "moltbot.json").write_text("{}")
    legacy = scratch / "home" / ".clawdbot"
    legacy.parent.mkdir()
    legacy.symlink_to(target)

    result = migration.run(plan_for([legacy], target), StopFlag())

    # No record says a migration happened: the link is one an earlier boot made for a legacy
    # path that held nothing, so there was, and is, nothing to migrate.
    assert result.status == "ok"
    assert result.figures["outcome"] == "nothing-to-migrate"
    assert os.readlink(legacy) == str(target)
    assert (target / "moltbot.json").read_text() == "{}"


def test_absent_legacy_paths_become_links_to_the_target_owned_by_the_target_user(scratch: Path) -> None:
    target = scratch / "state"
    target.mkdir()
    (scratch / "home").mkdir()
    legacy = [scratch / "home" / name for name in (".clawdbot", ".moltbot", ".openclaw")]
    no_home = scratch / "nohome" / ".clawdbot"

    result = migration.run(plan_for([*legacy, no_home], target), StopFlag())

    assert result.status == "ok", result.warnings
    assert result.figures["links"] == [str(path) for path in legacy]
    for path in legacy:
        assert os.readlink(path) == str(target)
        assert (os.lstat(path).st_uid, os.lstat(path).st_gid) == (UID, GID)
    (legacy[0] / "identity").mkdir()  # a hard-coded ~/.clawdbot/identity lands in the volume
    assert (target / "identity").is_dir()
    assert not no_home.parent.exists()  # no home directory: nothing is created


def test_older_config_name_is_renamed_to_the_preferred_one_but_never_over_it(scratch: Path) -> None:
    target = scratch / "state"
    target.mkdir()
    (target / "clawdbot.json").write_text("old")

    result = migration.run(plan_for([], target), StopFlag())

    assert result.figures["config_renamed"] == "clawdbot.json -> moltbot.json"
    assert (target / "moltbot.json").read_text() == "old"
    (target / "clawdbot.json").write_text("older still")
    again = migration.run(plan_for([], target), StopFlag())
    assert "config_renamed" not in again.figures
    assert (target / "moltbot.json").read_text() == "old"
    assert (target / "clawdbot.json").read_text() == "older still"


def test_openclaw_generation_prefers_openclaw_json(scratch: Path) -> None:
    target = scratch / "state"
    target.mkdir()
    (target / "moltbot.json").write_text("{}")

    openclaw = ("openclaw.json", "moltbot.json", "clawdbot.json")
    migration.run(plan_for([], target, config_names=openclaw), StopFlag())

    assert sorted(os.listdir(target)) == ["openclaw.json"]


def test_symlink_to_elsewhere_is_never_followed(scratch: Path) -> None:
    elsewhere = scratch / "etc"
    populate(elsewhere)
    legacy, target = scratch / "home" / ".clawdbot", scratch / "state"
    legacy.parent.mkdir()
    legacy.symlink_to(elsewhere)
    before = manifest(elsewhere)

    result = migration.run(plan_for([legacy], target), StopFlag())

    assert events(result) == ["migration_source_link_ignored"]
    assert result.figures["outcome"] == "nothing-to-migrate"
    assert not target.exists()
    assert manifest(elsewhere) == before
    assert os.readlink(legacy) == str(elsewhere)


def test_mode_off_skips_the_phase(scratch: Path) -> None:
    source, target = scratch / "home" / ".clawdbot", scratch / "state"
    populate(source)
    before = manifest(source)

    result = migration.run(plan_for([source], target, mode="off"), StopFlag())

    assert result.status == "skipped"
    assert result.figures == {"reason": f"{SETTING}=off"}
    assert manifest(source) == before
    assert not target.exists()


def test_set_stop_flag_before_the_phase_migrates_nothing(scratch: Path) -> None:
    source, target = scratch / "home" / ".clawdbot", scratch / "state"
    populate(source)
    stop = StopFlag()
    stop.set(15)

    result = migration.run(plan_for([source], target), stop)

    assert result.figures["interrupted"] is True
    assert not target.exists()
    assert asides(source) == [] and source.is_dir() and not source.is_symlink()
