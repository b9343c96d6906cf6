"""Faults are warnings with counts and samples, never exceptions, and leave the tree consistent."""

from __future__ import annotations

import os
import subprocess
import sys

from .conftest import GID, MOUNT_NS, OTHER, UID, make_files, make_tree, owner, owners_below

# --cap-drop ALL, as Docker does it: no capability survives the exec of the child.
NO_CAPABILITIES = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
# Root that may chown but not bypass file permissions (no DAC_OVERRIDE, DAC_READ_SEARCH).
NO_DAC = [
    "setpriv",
    "--bounding-set=-dac_override,-dac_read_search",
    "--inh-caps=-dac_override,-dac_read_search",
]


def _errors(result: dict, name: str) -> list[dict]:
    return [w for w in result["warnings"] if w["event"] == "ownership_error" and w["errno"] == name]


def test_without_cap_chown_every_entry_fails_with_one_summarised_eperm_warning(vol, run_isolated):
    entries = make_tree(vol, dirs=20, files_per_dir=10)

    out = run_isolated([vol], wrapper=NO_CAPABILITIES)

    result = out["result"]
    assert set(owners_below(vol).values()) == {(0, 0)}
    assert result["status"] == "warned"
    assert result["figures"]["errors"] == entries
    assert result["figures"]["changed"] == 0
    [warning] = _errors(result, "EPERM")
    assert warning["count"] == entries
    assert len(warning["samples"]) == 5
    assert "CAP_CHOWN" in warning["message"]
    assert len(result["warnings"]) <= 3  # EPERM, and the root found unwritable: no flood


def test_read_only_volume_gives_an_erofs_warning_and_changes_nothing(vol, run_isolated, no_stray_mounts):
    make_files(vol / "data", 5)

    out = run_isolated(
        [vol],
        wrapper=MOUNT_NS,
        setup=[["mount", "--bind", str(vol), str(vol)], ["mount", "-o", "remount,bind,ro", str(vol)]],
    )

    result = out["result"]
    assert set(owners_below(vol).values()) == {(0, 0)}
    [warning] = _errors(result, "EROFS")
    assert warning["count"] == 7  # vol, data/, 5 files
    assert "read-only" in warning["message"]
    assert result["figures"]["unwritable"] == [str(vol)]


def test_unreadable_directory_gives_an_eacces_warning_and_the_rest_is_repaired(vol, run_isolated):
    make_files(vol / "open", 3)
    make_files(vol / "closed", 3, uid=OTHER, gid=OTHER)
    os.chown(vol / "closed", OTHER, OTHER)
    (vol / "closed").chmod(0o700)

    out = run_isolated([vol], wrapper=NO_DAC)

    result = out["result"]
    [warning] = _errors(result, "EACCES")
    assert warning["samples"] == [str(vol / "closed")]
    assert owner(vol / "open" / "f00000") == (UID, GID)
    assert owner(vol / "closed" / "f00000") == (OTHER, OTHER)
    # Its own entry is still re-owned: chown needs no permission on the directory's contents.
    assert owner(vol / "closed") == (UID, GID)


_DELETER = """
import os, sys
directory = sys.argv[1]
print("deleting", flush=True)
for name in sorted(os.listdir(directory), reverse=True):
    os.unlink(os.path.join(directory, name))
"""


def test_entries_removed_during_the_walk_are_counted_as_vanished_not_raised(vol, run_phase):
    vanished = 0
    for _ in range(20):
        victims = make_files(vol / "churn", 3000)
        deleter = subprocess.Popen(
            [sys.executable, "-c", _DELETER, str(vol / "churn")], stdout=subprocess.PIPE, text=True
        )
        assert deleter.stdout is not None
        deleter.stdout.readline()
        result = run_phase(vol)
        deleter.wait()

        assert result.status in ("ok", "warned")
        assert result.figures["errors"] == 0
        assert set(owners_below(vol).values()) == {(UID, GID)}
        skipped = result.figures["skipped"]["vanished"]
        assert result.figures["seen"] + skipped <= len(victims) + 2
        vanished += skipped
        if vanished:
            break
    assert vanished, "the deleter never raced with the walk in 20 rounds"
