"""Fixtures of the migration tests: every one runs as root in the private mount namespace
(tests/boot/conftest.py, which also has `mounts`); scratch space.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def in_private_mount_namespace(private_mount_namespace: None) -> None:
    """The migration's faults are real: EBUSY from bind mounts, EXDEV and ENOSPC from tmpfs."""


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    """A directory on the disk's filesystem (not a mount point), as the container's own layer."""
    return tmp_path
