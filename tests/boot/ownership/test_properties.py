"""Random trees with random owners: afterwards everything inside is the target's, except hard
links to a file outside that were not the target's already, and nothing outside has changed,
whatever the links point at, and whichever engine walks (the test runs once per engine)."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from entrypoint.common.plans import OwnershipPlan, StopFlag, TargetUser

from .conftest import GID, OTHER, UID, owners_below
from .engines import ENGINES

OWNERS = st.sampled_from([(0, 0), (UID, GID), (OTHER, OTHER), (UID, 0), (0, GID)])
MODES = st.sampled_from([0o600, 0o644, 0o640, 0o755, 0o700, 0o444])
LEAF = st.one_of(
    st.tuples(st.just("file"), OWNERS, MODES),
    st.tuples(st.just("link-out-file"), OWNERS),
    st.tuples(st.just("link-out-dir"), OWNERS),
    st.tuples(st.just("link-dangling"), OWNERS),
    st.tuples(st.just("hardlink-out"), OWNERS),
    st.tuples(st.just("fifo"), OWNERS),
)
TREE = st.recursive(
    st.lists(LEAF, max_size=4),
    lambda children: st.lists(
        st.one_of(LEAF, st.tuples(st.just("dir"), OWNERS, st.sampled_from([0o755, 0o700, 0o1777]), children)),
        max_size=5,
    ),
    max_leaves=40,
)


def _build(directory: Path, spec: list[Any], outside: Path, counter: list[int]) -> None:
    for item in spec:
        counter[0] += 1
        path = directory / f"e{counter[0]}"
        kind, (uid, gid) = item[0], item[1]
        if kind == "file":
            path.write_text("x")
            path.chmod(item[2])
        elif kind == "dir":
            path.mkdir()
            _build(path, item[3], outside, counter)
            path.chmod(item[2])
        elif kind == "link-out-file":
            os.symlink(outside / "secret", path)
        elif kind == "link-out-dir":
            os.symlink(outside, path)
        elif kind == "link-dangling":
            os.symlink(outside / "missing", path)
        elif kind == "hardlink-out":
            os.link(outside / "linked", path)
        elif kind == "fifo":
            os.mkfifo(path)
        os.chown(path, uid, gid, follow_symlinks=False)


def _modes(root: Path) -> dict[str, int]:
    modes = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory, name)
            modes[str(path.relative_to(root))] = os.stat(path, follow_symlinks=False).st_mode
    return modes


# The `engine` fixture is only the name of an engine, the same for every example of a run: nothing
# in it would need a reset between examples.
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(spec=TREE, root_owner=OWNERS)
def test_random_tree_ends_target_owned_except_outside_hard_links_and_outside_is_untouched(
    engine: str, spec: list[Any], root_owner: tuple[int, int]
) -> None:
    base = Path(tempfile.mkdtemp(prefix="ownership-prop-", dir="/var/tmp"))
    try:
        outside = base / "outside"
        (outside / "dir").mkdir(parents=True)
        (outside / "secret").write_text("s")
        (outside / "linked").write_text("l")
        os.chown(outside / "linked", OTHER, OTHER)
        vol = base / "vol"
        vol.mkdir()
        _build(vol, spec, outside, [0])
        os.chown(vol, *root_owner)
        outside_before = owners_below(outside)
        vol_before = owners_below(vol)
        modes_before = _modes(vol)
        # Hard links to the outside file that are not the target's yet: left exactly as they are.
        kept = {
            name
            for name, mode in modes_before.items()
            if stat.S_ISREG(mode) and os.stat(vol / name).st_nlink > 1 and vol_before[name] != (UID, GID)
        }
        plan = OwnershipPlan("auto", (str(vol),), UID, GID)
        user = TargetUser("target", UID, GID, (GID,), "/")

        result = ENGINES[engine](plan, user, StopFlag())

        after = owners_below(vol)
        assert after == {name: vol_before[name] if name in kept else (UID, GID) for name in vol_before}
        assert owners_below(outside) == outside_before
        assert _modes(vol) == modes_before
        assert result.figures["seen"] == len(after)
        assert result.figures["skipped"]["hardlink"] == len(kept)
        assert result.figures["errors"] == 0
    finally:
        shutil.rmtree(base)
