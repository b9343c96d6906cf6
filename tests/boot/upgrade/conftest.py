"""Fixtures of the upgrade tests: every one runs as root in the private mount namespace
(tests/boot/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def in_private_mount_namespace(private_mount_namespace: None) -> None:
    """The gate's checkpoints are taken on real mounts (tmpfs volumes too small, bind mounts)."""
