"""What the phase changes, and what it leaves exactly as it was, whichever engine walks."""

from __future__ import annotations

import os
import socket
import stat
import threading
from pathlib import Path

from entrypoint.boot.ownership import threads
from entrypoint.common.plans import OwnershipPlan, StopFlag

from .conftest import GID, OTHER, TARGET, UID, make_files, owner, owners_below, plan_for
from .engines import ENGINES


def test_every_entry_of_a_root_owned_tree_ends_up_target_owned(vol, run_phase):
    make_files(vol / "agents" / "main" / "sessions", 20)
    make_files(vol / "cron", 2, uid=OTHER, gid=OTHER)
    os.symlink("sessions/f00000", vol / "agents" / "main" / "latest")

    result = run_phase(vol)

    assert set(owners_below(vol).values()) == {(UID, GID)}
    assert result.figures["seen"] == len(owners_below(vol))
    assert result.figures["changed"] == len(owners_below(vol))
    assert result.status == "ok"


def test_only_entries_with_a_different_owner_are_changed(vol, run_phase):
    right = make_files(vol / "right", 10, uid=UID, gid=GID)
    os.chown(vol / "right", UID, GID)
    wrong_group = make_files(vol / "wrong-group", 3, uid=UID, gid=0)
    make_files(vol / "wrong", 5)
    ctimes = {path: os.stat(path).st_ctime_ns for path in [*right, vol / "right"]}

    result = run_phase(vol)

    # chown(2) always stamps ctime, even to the same owner: unchanged ctime means not touched.
    assert {path: os.stat(path).st_ctime_ns for path in ctimes} == ctimes
    assert all(owner(path) == (UID, GID) for path in wrong_group)
    # vol, wrong-group/, wrong/ and their 3 + 5 files.
    assert result.figures["changed"] == 3 + 3 + 5


def test_modes_are_kept_and_0600_secrets_stay_0600(vol, run_phase):
    modes = {"secret.json": 0o600, "shared": 0o640, "tool": 0o755, "sticky-dir": 0o1777, "private": 0o700}
    for name, mode in modes.items():
        path = vol / name
        if name.endswith("dir") or name == "private":
            path.mkdir()
        else:
            path.write_text("x")
        path.chmod(mode)

    run_phase(vol)

    assert {name: stat.S_IMODE(os.stat(vol / name).st_mode) for name in modes} == modes
    assert owner(vol / "secret.json") == (UID, GID)


def test_set_id_bits_are_dropped_by_the_kernel_as_chown_requires_and_counted(vol, run_phase):
    # The kernel clears S_ISUID (and S_ISGID with group-execute) when a file's owner changes; the
    # phase keeps that rule rather than mint set-ID programs owned by the target user.
    for name, mode in {"setuid": 0o4755, "setgid": 0o2755, "setgid-no-exec": 0o2644}.items():
        (vol / name).write_text("x")
        (vol / name).chmod(mode)
    (vol / "setgid-dir").mkdir()
    (vol / "setgid-dir").chmod(0o2775)

    result = run_phase(vol)

    modes = {
        name: stat.S_IMODE(os.stat(vol / name).st_mode) for name in ("setuid", "setgid", "setgid-no-exec")
    }
    assert modes == {"setuid": 0o755, "setgid": 0o755, "setgid-no-exec": 0o2644}
    assert stat.S_IMODE(os.stat(vol / "setgid-dir").st_mode) == 0o2775  # directories keep it
    assert result.figures["setid_cleared"] == 2


def test_fifo_socket_and_device_node_are_reowned_without_being_opened(vol, run_phase):
    os.mkfifo(vol / "fifo")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(vol / "socket"))
    os.mknod(vol / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    results = []

    # An open of the FIFO would block for ever (no writer): run the phase where a hang shows.
    walker = threading.Thread(target=lambda: results.append(run_phase(vol)), daemon=True)
    walker.start()
    walker.join(timeout=60)
    server.close()

    assert not walker.is_alive(), "the phase blocked: it opened the FIFO"
    assert {name: owner(vol / name) for name in ("fifo", "socket", "null")} == {
        "fifo": (UID, GID),
        "socket": (UID, GID),
        "null": (UID, GID),
    }
    assert stat.S_ISCHR(os.stat(vol / "null", follow_symlinks=False).st_mode)
    assert results[0].status == "ok"


def test_root_that_is_a_file_is_reowned_itself(area, run_phase):
    path = area / "token"
    path.write_text("t")
    path.chmod(0o600)

    result = run_phase(path)

    assert owner(path) == (UID, GID)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert result.figures["changed"] == 1


def test_every_root_is_repaired_and_counted(area, run_phase):
    roots = [area / "state", area / "workspace", area / "run"]
    for root in roots:
        make_files(root, 4)

    result = run_phase(*roots)

    assert all(set(owners_below(root).values()) == {(UID, GID)} for root in roots)
    assert result.figures["roots"] == [str(root) for root in roots]
    assert result.figures["seen"] == 3 * 5


def test_missing_root_is_a_warning_and_the_other_roots_are_still_repaired(area, vol, run_phase, warnings_of):
    make_files(vol, 2)

    result = run_phase(area / "does-not-exist", vol)

    assert set(owners_below(vol).values()) == {(UID, GID)}
    assert result.status == "warned"
    assert result.figures["skipped"]["missing_root"] == 1
    assert warnings_of(result, "ownership_root_missing")[0]["path"] == str(area / "does-not-exist")


def test_mode_off_skips_the_phase_and_changes_nothing(vol, engine):
    make_files(vol, 2)

    result = ENGINES[engine](OwnershipPlan("off", (str(vol),), UID, GID), TARGET, StopFlag())

    assert result.status == "skipped"
    assert set(owners_below(vol).values()) == {(0, 0)}


def _wide_and_deep(vol: Path) -> None:
    for index in range(60):
        make_files(vol / f"w{index}", 20)
    deep = vol
    for level in range(40):
        deep = deep / f"l{level}"
        make_files(deep, 2)


def test_a_wide_and_deep_tree_is_repaired_completely(vol, run_phase):
    _wide_and_deep(vol)

    result = run_phase(vol)

    assert set(owners_below(vol).values()) == {(UID, GID)}
    assert result.figures["changed"] == result.figures["seen"] == len(owners_below(vol))


def test_threaded_walk_repairs_a_wide_and_deep_tree_completely_with_the_threads_asked_for(vol):
    _wide_and_deep(vol)

    result = threads.walk(plan_for(vol), TARGET, StopFlag(), workers=4)

    assert set(owners_below(vol).values()) == {(UID, GID)}
    assert result.figures["workers"] == 4
    assert result.figures["processes"] == 0
    assert result.figures["changed"] == result.figures["seen"] == len(owners_below(vol))
