"""Images built the ways a user builds them, without a registry: the shipped compose.yml's build,
on build-bases' local stand-ins for the base images.

Who uses it: the end-to-end tests (as root, after scripts/ci-docker-setup, beside the session's
image from scripts/build-image) and `bench/container`, which compares the images it builds.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from tests.e2e.harness import REPO, Gateway, compose_command

# The shipped compose.yml as it is, but for the image's name and the local base images (the
# Dockerfile's defaults come from a registry): no other build argument, no `--network none`.
COMPOSE_OVERRIDE = """\
services:
  moltbot-gateway:
    image: {tag}
    build:
      args:
        BUILDER_IMAGE: {builder}
        BASE_IMAGE: {base}
"""


def base_images(gateway: Gateway) -> dict[str, str]:
    """build-bases' local stand-ins, {"BUILDER_IMAGE": ..., "BASE_IMAGE": ...} (built if missing)."""
    env = {**os.environ, **({"NODE_VERSION": gateway.node_version} if gateway.node_version else {})}
    bases = subprocess.run(
        [str(REPO / "scripts" / "build-bases")], capture_output=True, text=True, env=env, timeout=3600
    )
    found = dict(line.split("=", 1) for line in bases.stdout.splitlines() if "=" in line)
    if bases.returncode != 0 or not {"BUILDER_IMAGE", "BASE_IMAGE"} <= found.keys():
        raise RuntimeError(f"scripts/build-bases failed ({bases.returncode}):\n{bases.stderr[-2000:]}")
    return found


def logged(argv: list[str], log_path: Path, cwd: Path | None = None) -> bool:
    """Run a build with its output in `log_path`; whether it succeeded."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the engine here has no BuildKit (docker.io 20.10)
    quiet = subprocess.DEVNULL
    with open(log_path, "w", encoding="utf-8") as out:
        built = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=quiet, env=env, cwd=cwd, timeout=3600
        )
    return built.returncode == 0


def build_compose(tag: str, gateway: Gateway, log_path: Path) -> str | None:
    """Our image as `docker compose build` makes it from the shipped compose.yml; None, or why not."""
    compose = compose_command()
    if compose is None:
        return "neither `docker compose` nor `docker-compose` is installed"
    bases = base_images(gateway)
    text = COMPOSE_OVERRIDE.format(tag=tag, builder=bases["BUILDER_IMAGE"], base=bases["BASE_IMAGE"])
    with tempfile.NamedTemporaryFile("w", suffix=".yml", prefix="mbbench-compose-") as override:
        override.write(text)
        override.flush()
        project = re.sub(r"[^a-z0-9_-]", "-", tag.rpartition(":")[0] or tag)  # not the users' `moltbot`
        argv = [*compose, "--project-name", project, "-f", "compose.yml", "-f", override.name, "build"]
        built = logged(argv, log_path, cwd=REPO)
    return None if built else f"{' '.join(argv)} failed; see {log_path}"
