"""What `docker inspect` says of the image scripts/build-image makes: what runs (`CMD ["gateway"]`
after the init's ENTRYPOINT) and where it comes from (the OCI labels: the commit it was built from,
when, and the base image it was built on).

Run by pytest, as root, after scripts/ci-docker-setup; the session's image is built once.
"""

from __future__ import annotations

import datetime
import json
import subprocess

import pytest

from tests.e2e.harness import REPO, Engine, docker

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
