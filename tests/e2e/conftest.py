"""End-to-end fixtures: the real image, the real gateway, a real Docker engine, through compose.

The harness (`tests/e2e/harness.py`, shared with `bench/container`) makes each stack its own compose
project with its own volumes and container name; every stack is torn down (`down -v`) by its
finalizer. The image is built once per session (incrementally).

Without a usable engine (no docker CLI, no daemon, no compose) the tests are skipped, unless
MOLTBOT_E2E=required (CI), where they fail instead. Each scenario's `docker logs` is saved under
MOLTBOT_E2E_LOGS (default /tmp/moltbot-e2e-logs) for the post-mortem.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import podman_harness
from tests.e2e.harness import (
    GATEWAYS,
    OPENCLAW,
    PROJECT_PREFIX,
    Engine,
    Gateway,
    Stack,
    build_image,
    compose_command,
    docker,
    engine_problem,
)

IMAGE = os.environ.get("MOLTBOT_IMAGE", "moltbot:local")
LOG_DIR = Path(os.environ.get("MOLTBOT_E2E_LOGS", "/tmp/moltbot-e2e-logs"))


def _unavailable(reason: str) -> None:
    if os.environ.get("MOLTBOT_E2E") == "required":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def docker_compose() -> tuple[str, ...]:
    """A Docker engine that answers, and its compose command."""
    problem = engine_problem()
    if problem is not None:
        _unavailable(f"Docker cannot run: {problem}")
    compose = compose_command()
    assert compose is not None
    return tuple(compose)


def _built(compose: tuple[str, ...], tag: str, gateway: Gateway) -> Engine:
    failure = build_image(tag, LOG_DIR / f"build-image-{gateway.name}.log", gateway)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    return Engine(compose, tag)


@pytest.fixture(scope="session")
def engine(docker_compose: tuple[str, ...]) -> Engine:
    """The image with the default gateway (openclaw 2026.9.6), built once per session (incrementally)."""
    return _built(docker_compose, IMAGE, OPENCLAW)


@pytest.fixture(scope="session", params=GATEWAYS, ids=lambda gateway: gateway.name)
def each_gateway(request: pytest.FixtureRequest, docker_compose: tuple[str, ...], engine: Engine) -> Engine:
    """The image of each gateway of the upgrade path, each built once per session."""
    gateway: Gateway = request.param
    if gateway == OPENCLAW:
        return engine
    return _built(docker_compose, f"{IMAGE.partition(':')[0]}:{gateway.name}", gateway)


def _stack(engine: Engine, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    created = Stack(engine, tmp_path)
    try:
        yield created
    finally:
        with contextlib.suppress(Exception):
            if docker("inspect", created.container).returncode == 0:
                created.save_logs(LOG_DIR, request.node.name)
        created.down()


OLDER = tuple(gateway for gateway in GATEWAYS if gateway != OPENCLAW)


@pytest.fixture(scope="session", params=OLDER, ids=lambda gateway: gateway.name)
def older_gateway(request: pytest.FixtureRequest, docker_compose: tuple[str, ...]) -> Engine:
    """The image of each older gateway (the ones an upgrade to the default one comes from)."""
    gateway: Gateway = request.param
    return _built(docker_compose, f"{IMAGE.partition(':')[0]}:{gateway.name}", gateway)


@pytest.fixture(scope="session")
def openclaw_2026_1(docker_compose: tuple[str, ...]) -> Engine:
    """The image of openclaw 2026.1.29 (the release a downgrade goes back to)."""
    gateway = next(gateway for gateway in OLDER if gateway.package.startswith("openclaw@"))
    return _built(docker_compose, f"{IMAGE.partition(':')[0]}:{gateway.name}", gateway)


@pytest.fixture
def stack(engine: Engine, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A stack of the default image, torn down (and its logs saved) at the end."""
    yield from _stack(engine, request, tmp_path)


@pytest.fixture
def gateway_stack(each_gateway: Engine, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """The same, once with each gateway of the upgrade path."""
    yield from _stack(each_gateway, request, tmp_path)


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A world-readable scratch dir under /tmp, for bind mounts (pytest's tmp_path is 0700)."""
    path = Path(f"/tmp/{PROJECT_PREFIX}-host-{uuid.uuid4().hex[:10]}")
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_image(engine: Engine) -> str:
    """The default image in podman's storage too, copied once per session from the Docker engine
    (`podman pull docker-daemon:IMAGE`). Without podman: skipped, or failed in CI, as Docker is."""
    problem = podman_harness.problem()
    if problem is not None:
        _unavailable(f"podman cannot run: {problem} (scripts/ci-podman-setup sets it up)")
    podman_harness.copy_from_docker(engine.image)
    return engine.image
