"""Fixtures of the PID-1 tests: the init supervising a stand-in gateway, its lines read live."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.conftest import InitRunner
from tests.supervised import STANDINS, Supervised


@pytest.fixture
def supervised(init: InitRunner) -> Iterator[Callable[..., Supervised]]:
    """Start the init (as PID 1) supervising a stand-in gateway; always cleaned up."""
    started: list[Supervised] = []

    def start(gateway: str, args: tuple[str, ...] = (), **env: str) -> Supervised:
        # The stand-ins live in the world-readable sources copy.
        command = gateway.replace(STANDINS, str(init.sources / STANDINS))
        merged = {
            "MOLTBOT_STOP_TIMEOUT": "3",
            "MOLTBOT_LOG_LEVEL": "info",
            **env,
        }
        instance = Supervised(init, command, merged, args)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.kill()
