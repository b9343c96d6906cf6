"""Like `cp -a`, but owned by the user: whatever the host owner, modes, times, hard links, extended
attributes and ACLs are kept where the target's filesystem takes them; what it refuses is said
once. Every copy here crosses a real mount (a bind mount: EBUSY; a tmpfs volume: EXDEV)."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from entrypoint.boot import migration
from entrypoint.common.plans import StopFlag
from tests.boot.migration.helpers import (
    GID,
    UID,
    Mounts,
    StopAt,
    chown_tree,
    events,
    gateway_of,
    manifest,
    owners,
    plan_for,
    populate,
)

# POSIX ACL entries, as the kernel stores them in system.posix_acl_*: tag, permissions, id.
USER_OBJ, USER, GROUP_OBJ, MASK, OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
NO_ID = 0xFFFFFFFF


def acl(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(
        struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in entries
    )


def expected_after_config_rename(before: dict) -> dict:
    after = dict(before)
    after["moltbot.json"] = after.pop("clawdbot.json")
    return after


@pytest.mark.parametrize(
    ("host_owner", "read_only"),
    [((501, 20), False), ((1001, 1001), True), ((99, 100), False)],
    ids=["macos-501", "second-linux-user-1001-ro", "nas-99-100"],
)
def test_a_legacy_dir_of_any_host_owner_readable_only_by_it_migrates_owned_by_the_user(
    scratch: Path, mounts: Mounts, host_owner: tuple[int, int], read_only: bool
) -> None:
    host, volume = scratch / "host" / ".clawdbot", mounts.tmpfs(scratch / "state")
    populate(host)
    chown_tree(host, *host_owner)
    host.chmod(0o700)
    source = scratch / "home" / ".clawdbot"
    source.mkdir(parents=True)
    mounts.bind(host, source, read_only=read_only)  # compose.yml's `~/.clawdbot:/home/node/.clawdbot[:ro]`
    before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert (result.status, result.figures["strategy"]) == ("ok", "copy"), result.warnings
    target = gateway_of(volume)
    assert manifest(target) == expected_after_config_rename(before)  # modes (0600 stays) and times
    assert owners(target) == {(UID, GID)}
    assert manifest(source) == before and owners(host) == {host_owner}  # the host's, untouched


def test_hard_links_stay_hard_links_within_an_item_and_across_items(scratch: Path, mounts: Mounts) -> None:
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    populate(source)
    os.link(source / "media" / "photo0.jpg", source / "media" / "photo0-edited.jpg")
    os.link(source / "identity" / "device.json", source / "device-backup.json")
    # Another name outside the tree, but the legacy dir's owner's file: its content is theirs.
    os.link(source / "exec-approvals.json", scratch / "approvals-backup.json")

    result = migration.run(plan_for([source], volume), StopFlag())

    assert (result.status, result.figures["hard_links_kept"]) == ("ok", 2), result.warnings
    target = gateway_of(volume)
    for first, second in (
        ("media/photo0.jpg", "media/photo0-edited.jpg"),
        ("identity/device.json", "device-backup.json"),
    ):
        assert os.stat(target / first).st_ino == os.stat(target / second).st_ino, first
        assert os.stat(target / first).st_nlink == 2
    assert os.stat(target / "exec-approvals.json").st_nlink == 1  # copied: its other name stays out


def test_hard_links_stay_links_when_a_stopped_copy_is_resumed_by_the_next_boot(
    scratch: Path, mounts: Mounts
) -> None:
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    (source / "a-first").mkdir(parents=True)
    (source / "a-first" / "notes.json").write_text("{}")
    (source / "z-last").mkdir()
    os.link(source / "a-first" / "notes.json", source / "z-last" / "notes.json")
    # Looks: 1 before the migration, 2 and 3 for a-first and its file, 4 for the next item.
    stopped = migration.run(plan_for([source], volume), StopAt(4))
    assert stopped.figures["outcome"] == "interrupted"

    resumed = migration.run(plan_for([source], volume), StopFlag())

    assert (resumed.figures["outcome"], resumed.figures["hard_links_kept"]) == ("migrated", 1)
    target = gateway_of(volume)
    assert (
        os.stat(target / "a-first" / "notes.json").st_ino == os.stat(target / "z-last" / "notes.json").st_ino
    )


def test_extended_attributes_and_acls_are_kept_a_file_capability_never(scratch: Path, mounts: Mounts) -> None:
    source, volume = scratch / "home" / ".clawdbot", mounts.tmpfs(scratch / "state")
    populate(source)
    secret, shared = source / "credentials" / "oauth.json", source / "credentials"
    os.setxattr(secret, "user.origin", b"whatsapp")
    os.setxattr(secret, "trusted.overlay.test", b"1")
    access = acl(
        (USER_OBJ, 6, NO_ID), (USER, 4, 1234), (GROUP_OBJ, 0, NO_ID), (MASK, 4, NO_ID), (OTHER, 0, NO_ID)
    )
    os.setxattr(secret, "system.posix_acl_access", access)
    default = acl(
        (USER_OBJ, 7, NO_ID), (USER, 5, 1234), (GROUP_OBJ, 0, NO_ID), (MASK, 5, NO_ID), (OTHER, 0, NO_ID)
    )
    os.setxattr(shared, "system.posix_acl_default", default)
    tool = source / "media" / "photo1.jpg"
    os.setxattr(tool, "security.capability", struct.pack("<IIIII", 0x02000000, 1 << 10, 0, 0, 0))
    before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert (result.status, result.warnings) == ("ok", [])
    target = gateway_of(volume)
    assert manifest(target) == expected_after_config_rename(before)  # the mode's group bits: the mask
    copied = target / "credentials" / "oauth.json"
    assert os.getxattr(copied, "user.origin") == b"whatsapp"
    assert os.getxattr(copied, "trusted.overlay.test") == b"1"
    assert os.getxattr(copied, "system.posix_acl_access") == access
    assert os.getxattr(target / "credentials", "system.posix_acl_default") == default
    assert "security.capability" not in os.listxattr(target / "media" / "photo1.jpg")


def test_attributes_the_target_refuses_are_counted_in_one_warning_and_the_files_still_copied(
    scratch: Path, mounts: Mounts
) -> None:
    source, volume = scratch / "home" / ".clawdbot", mounts.ramfs(scratch / "state")
    populate(source)
    for rel in ("credentials/oauth.json", "identity/device.json", "media/photo0.jpg"):
        os.setxattr(source / rel, "user.origin", b"host")
    before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert events(result) == ["migration_xattrs_not_kept"]
    [warning] = result.warnings
    assert warning["count"] == 3
    assert warning["samples"][0] == "credentials/oauth.json (user.origin)"
    assert result.figures["outcome"] == "migrated"
    assert manifest(gateway_of(volume)) == expected_after_config_rename(before)


@pytest.mark.parametrize("source_fs", ["same-as-scratch", "tmpfs"])
def test_a_sparse_file_stays_sparse_and_whole(scratch: Path, mounts: Mounts, source_fs: str) -> None:
    """A 256 MiB file with a few kilobytes of data (a database, a VM image, a preallocated log) takes
    its few kilobytes in a 16 MiB volume too, as `cp -a` keeps it, with every byte where it was."""
    home = mounts.tmpfs(scratch / "home", size="64m") if source_fs == "tmpfs" else scratch / "home"
    source, volume = home / ".clawdbot", mounts.tmpfs(scratch / "state", size="16m")
    source.mkdir(parents=True)
    sparse = source / "memory" / "big.sqlite"
    sparse.parent.mkdir()
    with open(sparse, "wb") as handle:
        for offset in (0, 100 << 20, (256 << 20) - 4096):
            handle.seek(offset)
            handle.write(os.urandom(4096))
        handle.truncate(256 << 20)
    (source / "dense.bin").write_bytes(os.urandom(1 << 20))
    before = manifest(source)

    result = migration.run(plan_for([source], volume), StopFlag())

    assert result.figures["outcome"] == "migrated", result.warnings
    copied = gateway_of(volume) / "memory" / "big.sqlite"
    assert copied.stat().st_size == 256 << 20
    assert copied.stat().st_blocks * 512 <= 1 << 20  # three 4 KiB extents, not 256 MiB
    assert manifest(gateway_of(volume)) == before  # every byte, mode and time
