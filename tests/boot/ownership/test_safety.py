"""Attacks planted in a real tree: the phase must never change anything outside the volume.

Each test runs once per engine (the `engine` fixture, through `run_phase` and `run_isolated`): as
the init chooses, in the calling thread alone, in threads, in worker processes.
"""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import GID, MOUNT_NS, UID, make_files, owner, owners_below


def test_symlink_to_an_outside_file_is_reowned_itself_and_its_target_is_not(vol, outside, run_phase):
    os.symlink(outside / "secret", vol / "link")

    result = run_phase(vol)

    assert owner(vol / "link") == (UID, GID)
    assert owner(outside / "secret") == (0, 0)
    assert os.stat(outside / "secret").st_mode & 0o777 == 0o600
    assert result.status == "ok"


def test_symlink_to_an_outside_directory_is_not_walked(vol, outside, run_phase):
    os.symlink(outside, vol / "dirlink")
    os.symlink(outside / "subdir", vol / "nested-link")

    run_phase(vol)

    assert owners_below(outside) == {".": (0, 0), "secret": (0, 0), "subdir": (0, 0), "subdir/file": (0, 0)}
    assert owner(vol / "dirlink") == (UID, GID)


def test_root_that_is_a_symlink_is_not_followed_and_is_reported(area, outside, run_phase, warnings_of):
    os.symlink(outside, area / "planted")

    result = run_phase(area / "planted")

    assert owners_below(outside)["."] == (0, 0)
    assert owners_below(outside)["subdir/file"] == (0, 0)
    assert owner(area / "planted") == (0, 0)
    assert result.figures["skipped"]["symlink_root"] == 1
    assert warnings_of(result, "ownership_root_symlink")[0]["path"] == str(area / "planted")


def test_hard_link_to_an_outside_file_is_left_alone_and_reported(vol, outside, run_phase, warnings_of):
    os.link(outside / "secret", vol / "hardlink")

    result = run_phase(vol)

    assert owner(outside / "secret") == (0, 0)
    assert result.figures["skipped"]["hardlink"] == 1
    [warning] = warnings_of(result, "ownership_hardlink")
    assert warning["samples"] == [str(vol / "hardlink")]


def test_hard_linked_file_already_owned_by_the_target_is_not_reported(vol, run_phase):
    (vol / "a").write_text("x")
    os.chown(vol / "a", UID, GID)
    os.link(vol / "a", vol / "b")

    result = run_phase(vol)

    assert result.figures["skipped"]["hardlink"] == 0
    assert result.status == "ok"


# Runs in its own process: a thread of the test would share the GIL with the walk and only ever
# swap between the walk's system calls, never in the window between its lstat and its open.
_SWAPPER = """
import os, sys
outside, victims = sys.argv[1], sys.argv[2:]
print("swapping", flush=True)
while True:
    for victim in victims:
        os.rename(victim, victim + ".real")
        os.symlink(outside, victim)
    for victim in victims:
        os.unlink(victim)
        os.rename(victim + ".real", victim)
"""


def test_directory_swapped_for_a_symlink_during_the_walk_never_leads_outside(vol, outside, run_phase):
    make_files(outside / "deep", 50)
    victims = []
    for index in range(8):
        victim = vol / f"v{index}" / "victim"
        make_files(victim, 100)
        victims.append(str(victim))
    make_files(vol / "bulk", 1000)
    before = owners_below(outside)

    # The walk meets a swapped directory in a few rounds of every hundred (seen as `replaced` or
    # `vanished`); what every round must show is that nothing outside changed.
    for _ in range(60):
        swapper = subprocess.Popen(
            [sys.executable, "-c", _SWAPPER, str(outside), *victims], stdout=subprocess.PIPE, text=True
        )
        try:
            assert swapper.stdout is not None
            swapper.stdout.readline()  # it runs: the walk below races with it from its first call
            result = run_phase(vol)
        finally:
            swapper.kill()
            swapper.wait()
        assert result.status in ("ok", "warned")
        assert result.figures["errors"] == 0
        assert owners_below(outside) == before
        # Put the victims back and everything to root, so that each round changes owners again.
        for victim in victims:
            if os.path.islink(victim):
                os.unlink(victim)
            if os.path.exists(victim + ".real"):
                os.rename(victim + ".real", victim)
        for path in [vol, *vol.rglob("*")]:
            os.chown(path, 0, 0, follow_symlinks=False)


def test_nested_mount_point_is_reported_and_not_entered(vol, run_isolated, no_stray_mounts):
    mount = vol / "data" / "mnt"
    mount.mkdir(parents=True)
    make_files(vol / "data", 3)

    out = run_isolated(
        [vol],
        wrapper=MOUNT_NS,
        setup=[
            ["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(mount)],
            ["touch", f"{mount}/inside"],
        ],
        probe=[mount, mount / "inside"],
    )

    result = out["result"]
    assert out["owners"] == {str(mount): [0, 0], str(mount / "inside"): [0, 0]}
    assert result["figures"]["skipped"]["mount_point"] == 1
    [warning] = [w for w in result["warnings"] if w["event"] == "ownership_mount_point"]
    assert warning["samples"] == [str(mount)]
    # Outside the namespace the tmpfs is gone and the directory under it was never touched either.
    assert owner(mount) == (0, 0)
    assert owner(vol / "data" / "f00000") == (UID, GID)


def test_nested_mount_point_that_is_itself_a_root_is_walked_and_not_reported(
    vol, run_isolated, no_stray_mounts
):
    mount = vol / "mnt"
    mount.mkdir()

    out = run_isolated(
        [vol, mount],
        wrapper=MOUNT_NS,
        setup=[["mount", "-t", "tmpfs", "tmpfs", str(mount)], ["touch", f"{mount}/inside"]],
        probe=[mount, mount / "inside"],
    )

    assert out["owners"] == {str(mount): [UID, GID], str(mount / "inside"): [UID, GID]}
    assert out["result"]["figures"]["skipped"]["mount_point"] == 0
    assert out["result"]["status"] == "ok"


def test_bind_mounted_file_inside_the_tree_is_not_reowned(vol, outside, run_isolated, no_stray_mounts):
    target = vol / "resolv.conf"
    target.write_text("")

    out = run_isolated(
        [vol],
        wrapper=MOUNT_NS,
        setup=[["mount", "--bind", str(outside / "secret"), str(target)]],
        probe=[target],
    )

    assert out["owners"] == {str(target): [0, 0]}
    assert owner(outside / "secret") == (0, 0)
    assert out["result"]["figures"]["skipped"]["mount_point"] == 1


def test_bind_mount_from_the_same_filesystem_is_not_entered(vol, outside, run_isolated, no_stray_mounts):
    # Same filesystem, same device number: only the mount table tells this one apart.
    bound = vol / "bound"
    bound.mkdir()

    out = run_isolated(
        [vol],
        wrapper=MOUNT_NS,
        setup=[["mount", "--bind", str(outside), str(bound)]],
        probe=[bound, bound / "secret"],
    )

    assert out["owners"] == {str(bound): [0, 0], str(bound / "secret"): [0, 0]}
    assert owners_below(outside) == {".": (0, 0), "secret": (0, 0), "subdir": (0, 0), "subdir/file": (0, 0)}
    assert out["result"]["figures"]["skipped"]["mount_point"] == 1
