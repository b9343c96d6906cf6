"""Fixtures of the boot's tests that make real mounts (the migration's, the upgrade's): root, and
a private mount namespace.

The first such test moves the whole pytest process into a private mount namespace (every mount
private, so nothing propagates back): the tmpfs and bind mounts the tests make, and the drivers
they start, are invisible to the host, and they vanish with the process even if a test dies
half-way. Tests that run later in the same session stay in that namespace, which only hides mounts
made by others after that point.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.boot.migration.helpers import Mounts, enter_private_mount_namespace


@pytest.fixture(scope="session")
def private_mount_namespace() -> None:
    if os.geteuid() != 0:
        pytest.skip("these tests need root (mounts, chown, capabilities)")
    enter_private_mount_namespace()


@pytest.fixture
def mounts(private_mount_namespace: None) -> Iterator[Mounts]:
    made = Mounts()
    yield made
    made.undo()
