"""Fixtures of the upgrade tests: root, and real mounts in a private mount namespace (as the
migration tests have them: see tests/boot/migration/conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.boot.migration.helpers import Mounts, enter_private_mount_namespace


@pytest.fixture(scope="session", autouse=True)
def private_mount_namespace() -> None:
    if os.geteuid() != 0:
        pytest.skip("the upgrade tests need root (mounts)")
    enter_private_mount_namespace()


@pytest.fixture
def mounts() -> Iterator[Mounts]:
    made = Mounts()
    yield made
    made.undo()
