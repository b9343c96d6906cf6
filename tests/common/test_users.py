"""User specs resolve as gosu resolves them, against the real passwd and group databases."""

from __future__ import annotations

import grp
import pwd

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.common import users


def test_name_takes_uid_gid_home_and_supplementary_groups_from_the_databases() -> None:
    entry = pwd.getpwnam("nobody")
    user = users.resolve("nobody")
    assert (user.name, user.uid, user.gid, user.home) == ("nobody", entry.pw_uid, entry.pw_gid, entry.pw_dir)
    assert entry.pw_gid in user.groups


def test_numeric_uid_of_a_known_user_gets_that_users_name_and_group() -> None:
    user = users.resolve("0")
    assert (user.name, user.uid, user.gid) == ("root", 0, 0)


def test_unknown_numeric_uid_gets_group_0_and_home_slash() -> None:
    user = users.resolve("4242")
    assert (user.name, user.uid, user.gid, user.groups, user.home) == ("4242", 4242, 0, (0,), "/")


def test_explicit_group_replaces_supplementary_groups() -> None:
    nogroup = grp.getgrnam("nogroup").gr_gid
    user = users.resolve("root:nogroup")
    assert (user.uid, user.gid, user.groups) == (0, nogroup, (nogroup,))


def test_overrides_replace_uid_and_gid() -> None:
    user = users.resolve("nobody", uid_override=1234, gid_override=5678)
    assert (user.uid, user.gid, user.groups) == (1234, 5678, (5678,))


# Fullwidth digits: str.isdigit() is True for them, but they are no uid.
FULLWIDTH_42 = "\uff14\uff12"


@pytest.mark.parametrize(
    "spec", ["bogus", "0day", "0:bogus", "", ":", "root:", ":0", "1e3", "-1", FULLWIDTH_42]
)
def test_specs_gosu_rejects_are_rejected(spec: str) -> None:
    with pytest.raises(users.UserSpecError):
        users.resolve(spec)


@given(st.integers(min_value=0, max_value=users.MAX_ID), st.integers(min_value=0, max_value=users.MAX_ID))
def test_any_numeric_pair_resolves_to_itself(uid: int, gid: int) -> None:
    user = users.resolve(f"{uid}:{gid}")
    assert (user.uid, user.gid) == (uid, gid)


def test_ids_past_the_kernels_range_are_not_ids() -> None:
    assert users.parse_id(str(2**32 - 1)) is None
    assert users.parse_id(str(2**32 - 2)) == 2**32 - 2
