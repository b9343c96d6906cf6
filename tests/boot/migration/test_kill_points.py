"""Crash safety at every instant: a boot SIGKILLed just before any one of its filesystem calls, for
every call it makes, converges on the next boot to the state an uninterrupted boot reaches.

Four volumes, each a whole boot's worth of steps: a bind-mounted legacy dir (EBUSY) merged into a
target holding the seed's leftovers, with the relocation of the volume's root, the config rename,
the home's links and hard links across items; a legacy dir renamed in one step; a legacy dir
saved aside because the target differs; and a staging an earlier version of the init left in the
volume's root. For each N: kill at N, check that nothing half-made is visible and the source is
intact, boot again killed at a second, seeded point (a kill during the resumption), check again,
then boot to the end and compare with the uninterrupted boot.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from entrypoint.common.plans import MigrationPlan
from tests.boot.migration.helpers import (
    BASE_TIME_NS,
    GATEWAY_DIR,
    HOME_DIR,
    RECORD_DIR,
    Mounts,
    gateway_of,
    plan_for,
    record_of,
    staging_of,
    write_earlier_journal,
)
from tests.boot.migration.killing import boot, shape

SEED = 20261128
RECORD_FIELDS = ("source", "strategy", "entries", "bytes", "result")


def legacy_tree(root: Path) -> None:
    """A small state dir with one of everything a boot has to get right."""
    files = {
        "clawdbot.json": (b'{"gateway": {"port": 18789}}\n', 0o600),
        "credentials/oauth.json": (b"token" * 20, 0o600),
        "credentials/whatsapp/creds.json": (b"creds" * 50, 0o600),
        "identity/device.json": (b'{"deviceId": "abc"}\n', 0o600),
        "media/photo.jpg": (random.Random(1).randbytes(50_000), 0o644),
        **{
            f"agents/main/sessions/s{n}.jsonl": (random.Random(n).randbytes(300 * n), 0o644) for n in range(4)
        },
    }
    for number, (rel, (data, mode)) in enumerate(files.items()):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(mode)
        os.utime(path, ns=(BASE_TIME_NS + number, BASE_TIME_NS + number))
    os.link(root / "identity" / "device.json", root / "exec-approvals.json")  # two items, one inode
    os.link(root / "media" / "photo.jpg", root / "media" / "photo-link.jpg")  # one item
    os.setxattr(root / "media" / "photo.jpg", "user.origin", b"camera")
    (root / "agents" / "current").symlink_to("main")
    (root / "sandboxes").mkdir(mode=0o700)


@dataclass
class Volume:
    plan: MigrationPlan
    volume: Path
    source: Path
    reset: Callable[[], None]


def copy_into(snapshot: Path, place: Path) -> None:
    """`place` made exactly `snapshot` again (owners, modes, times, links, attributes)."""
    for name in os.listdir(place):
        path = place / name
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    subprocess.run(["cp", "-a", f"{snapshot}/.", str(place)], check=True)


def ebusy_merge(scratch: Path, mounts: Mounts) -> Volume:
    host = scratch / "host-clawdbot"
    legacy_tree(host)
    source = scratch / "home" / ".clawdbot"
    source.mkdir(parents=True)
    mounts.bind(host, source)
    initial, volume = scratch / "initial", mounts.tmpfs(scratch / "volume")
    for leftover in ("cron", "canvas", "logs"):  # the seed's failed start, root's
        (initial / leftover).mkdir(parents=True)
    (initial / "gateway-2026-01-01.log").write_text("EACCES\n")
    (initial / HOME_DIR).mkdir(mode=0o700)
    (initial / HOME_DIR / ".openclaw").symlink_to(volume)  # an earlier generation's link: ours
    links = (
        (str(volume / HOME_DIR / ".clawdbot"), str(gateway_of(volume))),
        (str(volume / HOME_DIR / ".openclaw"), None),
    )
    plan = plan_for([source], volume, home_links=links)
    return Volume(plan, volume, source, lambda: copy_into(initial, volume))


def renamed(scratch: Path, mounts: Mounts) -> Volume:
    filesystem = mounts.tmpfs(scratch / "fs")
    initial, source, volume = scratch / "initial", filesystem / "home" / ".clawdbot", filesystem / "volume"
    legacy_tree(initial)
    source.parent.mkdir()
    volume.mkdir()

    def reset() -> None:
        copy_into(scratch / "empty", volume)
        shutil.rmtree(source, ignore_errors=True)
        subprocess.run(["cp", "-a", str(initial), str(source)], check=True)

    (scratch / "empty").mkdir()
    return Volume(plan_for([source], volume), volume, source, reset)


def saved(scratch: Path, mounts: Mounts) -> Volume:
    source, initial, volume = (
        scratch / "home" / ".clawdbot",
        scratch / "initial",
        mounts.tmpfs(scratch / "volume"),
    )
    legacy_tree(source)
    (initial / GATEWAY_DIR / "credentials").mkdir(parents=True)
    (initial / GATEWAY_DIR / "credentials" / "oauth.json").write_text("the gateway's newer token")
    return Volume(plan_for([source], volume), volume, source, lambda: copy_into(initial, volume))


def earlier_version(scratch: Path, mounts: Mounts) -> Volume:
    """The previous layout: state at the volume's root, and a copy that version's boot was killed
    in (journal format 1, its target the root): one item staged whole, the next one half."""
    initial_source, source = scratch / "initial-source", scratch / "home" / ".clawdbot"
    initial, volume = scratch / "initial", mounts.tmpfs(scratch / "volume")
    legacy_tree(initial_source)
    names = sorted(os.listdir(initial_source))
    items = initial / RECORD_DIR / "migration-staging" / "items"
    items.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(initial_source / names[0]), str(items / "0")], check=True)
    (items / "1.part").write_bytes(b"half")
    (initial / "logs").mkdir()  # the old gateway's, at the root

    def reset() -> None:
        copy_into(initial, volume)
        shutil.rmtree(source, ignore_errors=True)
        for aside in source.parent.glob(".clawdbot.migrated-*"):
            shutil.rmtree(aside)
        subprocess.run(["cp", "-a", str(initial_source), str(source)], check=True)
        write_earlier_journal(source, volume, names)

    source.parent.mkdir(parents=True)
    return Volume(plan_for([source], volume), volume, source, reset)


@dataclass
class Reference:
    gateway: dict[str, Any]
    root: list[str]
    home: dict[str, Any]
    record: dict[str, Any]
    saved: dict[str, Any] | None
    source: dict[str, Any]


def reference_of(vol: Volume) -> tuple[Reference, int]:
    vol.reset()
    source = shape(vol.source)
    done = boot(vol.plan)
    assert not done.killed and done.result is not None
    events = [warning["event"] for warning in done.result["warnings"]]
    assert events in ([], ["migration_conflict"]), done.result["warnings"]
    return state_of(vol, source), done.calls


def state_of(vol: Volume, source: dict[str, Any]) -> Reference:
    record = record_of(vol.volume) or {}
    saved_copies = list((vol.volume / RECORD_DIR / "legacy").glob("*"))
    assert len(saved_copies) <= 1
    return Reference(
        gateway=shape(gateway_of(vol.volume)),
        root=sorted(os.listdir(vol.volume)),
        home=shape(vol.volume / HOME_DIR) if (vol.volume / HOME_DIR).exists() else {},
        record={key: record.get(key) for key in RECORD_FIELDS},
        saved=shape(saved_copies[0]) if saved_copies else None,
        source=source,
    )


def check_after_kill(vol: Volume, reference: Reference) -> None:
    """Nothing half-made visible: each entry of the target (or, from an earlier version's staging,
    of the root) is one the finished boot has, whole; the legacy dir intact, in place or aside."""
    gateway = shape(gateway_of(vol.volume)) if gateway_of(vol.volume).is_dir() else {}
    at_root = {
        rel: entry
        for rel, entry in shape(vol.volume).items()
        if rel.split("/")[0] not in (GATEWAY_DIR, HOME_DIR, RECORD_DIR)
    }
    for rel, entry in [*gateway.items(), *at_root.items()]:
        wanted = reference.gateway.get("moltbot.json" if rel == "clawdbot.json" else rel)
        assert entry == wanted or (entry[0] == "d" and wanted and wanted[0] == "d"), f"half-made: {rel}"
    for rel, entry in shape(vol.volume / HOME_DIR).items() if (vol.volume / HOME_DIR).exists() else ():
        assert entry[0] == "link" and entry[2] in (str(gateway_of(vol.volume)), str(vol.volume)), rel
    asides = list(vol.source.parent.glob(vol.source.name + ".migrated-*"))
    in_place = vol.source.is_dir() and not vol.source.is_symlink()
    intact = [shape(path) == reference.source for path in ([vol.source] if in_place else []) + asides]
    assert intact in ([True], []), "the legacy dir is not intact"
    assert intact or reference.record["strategy"] == "rename"  # only a rename moves it whole


def check_converged(vol: Volume, reference: Reference) -> None:
    final = boot(vol.plan)
    assert not final.killed and final.result is not None
    assert final.result["figures"]["outcome"] in ("migrated", "already-migrated", "conflict")
    assert [w["event"] for w in final.result["warnings"]] in ([], ["migration_conflict"])
    assert state_of(vol, reference.source) == reference
    assert not staging_of(vol.volume).exists()


@pytest.mark.parametrize("make", [ebusy_merge, renamed, saved, earlier_version])
def test_a_boot_killed_before_any_one_of_its_calls_converges_on_the_next_boot(
    scratch: Path, mounts: Mounts, make: Callable[[Path, Mounts], Volume]
) -> None:
    vol = make(scratch, mounts)
    reference, calls = reference_of(vol)
    assert calls > 50, calls  # a whole boot: relocation, rename or copy, commit, record, settle
    rng = random.Random(f"{SEED}-{make.__name__}")
    for first in range(1, calls + 1):
        vol.reset()
        assert boot(vol.plan, kill_at=first).killed
        check_after_kill(vol, reference)
        second = rng.randint(1, calls)
        if boot(vol.plan, kill_at=second).killed:
            check_after_kill(vol, reference)
        check_converged(vol, reference)
