"""What `docker inspect` says of the image scripts/build-image makes: what runs (`CMD ["gateway"]`
after the init's ENTRYPOINT) and where it comes from (the OCI labels: the commit it was built from,
when, and the base image it was built on); and that `docker compose build` makes the same image.

Run by pytest, as root, after scripts/ci-docker-setup; the session's image is built once.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path

import pytest

from tests.e2e import builds
from tests.e2e.harness import OPENCLAW, REPO, Engine, docker

pytestmark = pytest.mark.e2e


def test_the_image_says_what_runs_and_where_it_comes_from(engine: Engine) -> None:
    inspected = json.loads(docker("image", "inspect", engine.image, check=True).stdout)[0]["Config"]
    assert (inspected["Entrypoint"], inspected["Cmd"]) == (["/usr/local/bin/moltbot-init"], ["gateway"])
    labels = inspected["Labels"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # a clone; the suite run from an export has no commit to compare with
        assert labels["org.opencontainers.image.revision"].removesuffix("-dirty") == head.stdout.strip()
    created = datetime.datetime.fromisoformat(labels["org.opencontainers.image.created"])
    assert datetime.timedelta(0) <= datetime.datetime.now(datetime.UTC) - created < datetime.timedelta(days=1)
    assert labels["org.opencontainers.image.base.name"]  # the stand-in base, or the registry's
    assert "org.opencontainers.image.source" in labels and "org.opencontainers.image.base.digest" in labels


def test_compose_builds_the_same_layers_with_the_compile_cache_baked(engine: Engine, tmp_path: Path) -> None:
    """`docker compose build` of the shipped compose.yml (nothing added but the local base images)
    gives scripts/build-image's image layer for layer, the gateway's compile cache baked in both: the
    bake needs neither a build argument nor `--network none` (it keeps the gateway offline itself)."""
    tag = f"{engine.image.partition(':')[0]}-compose:e2e"
    failure = builds.build_compose(tag, OPENCLAW, tmp_path / "build-compose.log")
    assert failure is None, failure
    try:
        assert _layers(tag) == _layers(engine.image)
        cached = docker(
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "find",
            tag,
            "/var/cache/moltbot/node-compile-cache",
            "-type",
            "f",
            check=True,
        ).stdout.split()
        assert len(cached) > 1000  # one file per module the gateway loads (~5,900 for 2026.9.6)
    finally:
        docker("image", "rm", tag)


def _layers(image: str) -> list[str]:
    return json.loads(docker("image", "inspect", image, check=True).stdout)[0]["RootFS"]["Layers"]
