"""Which source, whether to migrate at all, and what every boot does: records, later sources, the
config file's name, the setting."""

from __future__ import annotations

import os
from pathlib import Path

from entrypoint.boot import migration
from entrypoint.common.plans import StopFlag
from tests.boot.migration.helpers import (
    RECORD_DIR,
    SETTING,
    asides,
    events,
    gateway_of,
    manifest,
    plan_for,
    populate,
    record_of,
)


def test_second_run_is_a_no_op_because_of_the_record(scratch: Path) -> None:
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    populate(source)
    plan = plan_for([source], volume)
    first = migration.run(plan, StopFlag())
    after_first = manifest(volume)
    record = record_of(volume)

    second = migration.run(plan, StopFlag())

    assert first.figures["outcome"] == "migrated"
    assert second.figures["outcome"] == "already-migrated"
    assert second.status == "ok"
    assert manifest(volume) == after_first
    assert record_of(volume) == record
    assert {key: second.figures[key] for key in ("source", "strategy", "entries", "bytes", "result")} == {
        key: record[key] for key in ("source", "strategy", "entries", "bytes", "result")
    }


def test_merge_missing_copies_only_absent_entries_and_never_overwrites_one(scratch: Path) -> None:
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    target = gateway_of(volume)
    populate(source)
    (target / "credentials").mkdir(parents=True)
    (target / "credentials" / "oauth.json").write_text("the target's own token")
    (target / "cron").write_text("a file where the source has a directory")
    target_before, source_before = manifest(target), manifest(source)

    result = migration.run(plan_for([source], volume, mode="merge-missing"), StopFlag())

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
    # Each path the target lacks under a directory it has is one staged entry.
    added = [rel for rel in missing if os.path.dirname(rel) in ("", *target_before)]
    assert result.figures["added"] == len(added) + 1  # clawdbot.json, since renamed
    assert after["moltbot.json"] == source_before["clawdbot.json"]  # then renamed to the preferred name
    assert record_of(volume)["kept_existing"] == 2
    again = migration.run(plan_for([source], volume, mode="merge-missing"), StopFlag())
    assert again.figures["outcome"] == "already-migrated"


def test_later_sources_holding_data_are_reported_as_conflicts_and_left_alone(scratch: Path) -> None:
    first, later, volume = scratch / "home" / ".clawdbot", scratch / "home" / ".moltbot", scratch / "state"
    populate(first, seed=1)
    populate(later, seed=2)
    later_before = manifest(later)
    empty = scratch / "home" / ".moldbot"
    empty.mkdir()

    result = migration.run(plan_for([empty, first, later], volume), StopFlag())

    assert result.figures["source"] == str(first)
    assert result.figures["conflicts"] == 1
    [warning] = result.warnings
    assert warning["event"] == "migration_source_conflict"
    assert str(later) in warning["message"] and str(first) in warning["message"]
    assert manifest(later) == later_before
    assert empty.is_dir() and not empty.is_symlink()  # no link is made at a legacy path any more
    # Reported again at every boot, as long as it holds data.
    assert events(migration.run(plan_for([empty, first, later], volume), StopFlag())) == [
        "migration_source_conflict"
    ]


def test_a_legacy_path_linked_into_the_volume_by_an_earlier_version_is_silently_ignored(
    scratch: Path,
) -> None:
    """The previous version linked every legacy path to its target, the volume's root."""
    volume = scratch / "state"
    volume.mkdir()
    (volume / "moltbot.json").write_text("{}")
    legacy = [scratch / "home" / name for name in (".clawdbot", ".moltbot")]
    legacy[0].parent.mkdir()
    legacy[0].symlink_to(volume)
    legacy[1].symlink_to(volume / "agents")  # dangling, but into the volume: ours as well

    result = migration.run(plan_for(legacy, volume), StopFlag())

    assert (result.status, result.warnings) == ("ok", [])
    assert result.figures["outcome"] == "nothing-to-migrate"
    assert [os.readlink(path) for path in legacy] == [str(volume), str(volume / "agents")]
    assert (gateway_of(volume) / "moltbot.json").read_text() == "{}"  # relocated, not migrated


def test_older_config_name_is_renamed_to_the_preferred_one_but_never_over_it(scratch: Path) -> None:
    volume = scratch / "state"
    target = gateway_of(volume)
    target.mkdir(parents=True)
    (target / "clawdbot.json").write_text("old")

    result = migration.run(plan_for([], volume), StopFlag())

    assert result.figures["config_renamed"] == "clawdbot.json -> moltbot.json"
    assert (target / "moltbot.json").read_text() == "old"
    (target / "clawdbot.json").write_text("older still")
    again = migration.run(plan_for([], volume), StopFlag())
    assert "config_renamed" not in again.figures
    assert (target / "moltbot.json").read_text() == "old"
    assert (target / "clawdbot.json").read_text() == "older still"


def test_openclaw_generation_prefers_openclaw_json(scratch: Path) -> None:
    volume = scratch / "state"
    target = gateway_of(volume)
    target.mkdir(parents=True)
    (target / "moltbot.json").write_text("{}")

    openclaw = ("openclaw.json", "moltbot.json", "clawdbot.json")
    migration.run(plan_for([], volume, config_names=openclaw), StopFlag())

    assert sorted(os.listdir(target)) == ["openclaw.json"]


def test_symlink_to_elsewhere_is_never_followed(scratch: Path) -> None:
    elsewhere = scratch / "etc"
    populate(elsewhere)
    legacy, volume = scratch / "home" / ".clawdbot", scratch / "state"
    legacy.parent.mkdir()
    legacy.symlink_to(elsewhere)
    before = manifest(elsewhere)

    result = migration.run(plan_for([legacy], volume), StopFlag())

    assert events(result) == ["migration_source_link_ignored"]
    assert result.figures["outcome"] == "nothing-to-migrate"
    assert manifest(gateway_of(volume)) == {}
    assert manifest(elsewhere) == before
    assert os.readlink(legacy) == str(elsewhere)


def test_mode_off_migrates_nothing_but_still_keeps_the_volume_layout(scratch: Path) -> None:
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    populate(source)
    before = manifest(source)
    volume.mkdir()
    (volume / "moltbot.json").write_text("{}")  # an earlier version's state, at the root

    result = migration.run(plan_for([source], volume, mode="off"), StopFlag())

    assert result.status == "skipped"
    assert result.figures == {"reason": f"{SETTING}=off", "relocated": 1}
    assert manifest(source) == before
    assert sorted(os.listdir(volume)) == [RECORD_DIR, "gateway"]
    assert manifest(gateway_of(volume)) == {"moltbot.json": manifest(volume)["gateway/moltbot.json"]}


def test_set_stop_flag_before_the_phase_migrates_nothing(scratch: Path) -> None:
    source, volume = scratch / "home" / ".clawdbot", scratch / "state"
    populate(source)
    stop = StopFlag()
    stop.set(15)

    result = migration.run(plan_for([source], volume), stop)

    assert result.figures["interrupted"] is True
    assert manifest(gateway_of(volume)) == {}
    assert record_of(volume) is None
    assert asides(source) == [] and source.is_dir() and not source.is_symlink()
