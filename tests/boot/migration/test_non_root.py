"""Started without root (`docker run --user`, Kubernetes runAsNonRoot): the init migrates what its
user can read, by copy, changing no owner; what it cannot read is one warning that names the
directory and the fix, nothing half-copied stays, and the phase ends normally.

The driver runs as the target user (setpriv: real and effective ids, no groups, no capabilities)
in a scratch directory every user can traverse (pytest's own is root's, 0700).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot.migration.helpers import (
    GID,
    RECORD_DIR,
    UID,
    asides,
    chown_tree,
    gateway_of,
    manifest,
    owners,
    plan_for,
    populate,
    run_driver,
    staging_of,
)

AS_USER = ("setpriv", f"--reuid={UID}", f"--regid={GID}", "--clear-groups", "--")


@pytest.fixture
def shared() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="migration-non-root-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def layout(shared: Path, legacy_owner: tuple[int, int]) -> tuple[Path, Path]:
    """The user's home (its own, as in the image) with a legacy dir, and a volume prepared for it."""
    home, volume = shared / "home", shared / "state"
    source = home / ".clawdbot"
    populate(source)
    chown_tree(source, *legacy_owner)
    source.chmod(0o700)
    for directory in (home, volume):
        directory.mkdir(exist_ok=True)
        os.chown(directory, UID, GID)
    return source, volume


def test_a_legacy_dir_the_user_can_read_is_copied_and_everything_is_the_users_own(shared: Path) -> None:
    source, volume = layout(shared, (UID, GID))
    before = manifest(source)

    ran = run_driver(plan_for([source], volume, owner=None), prefix=AS_USER)

    assert ran.returncode == 0 and ran.result is not None, ran.stderr
    assert (ran.result["status"], ran.result["warnings"]) == ("ok", [])
    # A copy even on one filesystem: a rename would keep whatever owners the tree had.
    assert ran.result["figures"]["strategy"] == "copy"
    expected = dict(before)
    expected["moltbot.json"] = expected.pop("clawdbot.json")
    assert manifest(gateway_of(volume)) == expected
    assert owners(volume) == {(UID, GID)}
    [aside] = asides(source)
    assert manifest(aside) == before


def test_a_legacy_dir_only_its_host_owner_can_read_is_one_warning_with_the_fix(shared: Path) -> None:
    source, volume = layout(shared, (1001, 1001))

    ran = run_driver(plan_for([source], volume, owner=None), prefix=AS_USER)

    assert ran.returncode == 0 and ran.result is not None, ran.stderr
    assert ran.result["figures"]["outcome"] == "blocked"
    [warning] = ran.result["warnings"]
    assert warning["event"] == "migration_source_unreadable"
    for text in (str(source), f"uid {UID}", "readable by that uid on the host", "once as root"):
        assert text in warning["message"], text
    assert manifest(gateway_of(volume)) == {}
    assert ran.result["holds"] is None  # documented: started as the user, this is the user's choice


def test_an_unreadable_directory_deep_inside_leaves_nothing_half_copied(shared: Path) -> None:
    source, volume = layout(shared, (UID, GID))
    chown_tree(source / "agents" / "work", 1001, 1001)
    (source / "agents" / "work").chmod(0o700)
    before = manifest(source)

    ran = run_driver(plan_for([source], volume, owner=None), prefix=AS_USER)

    assert ran.returncode == 0 and ran.result is not None, ran.stderr
    [warning] = ran.result["warnings"]
    assert (warning["event"], warning["errno"]) == ("migration_source_unreadable", "EACCES")
    assert warning["path"].startswith(str(source / "agents" / "work"))
    assert "once as root" in warning["message"]
    assert manifest(gateway_of(volume)) == {} and not staging_of(volume).exists()
    assert os.listdir(volume / RECORD_DIR) == []
    assert manifest(source) == before and asides(source) == []
