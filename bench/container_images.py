"""The images `bench/container` compares, built the ways a user builds them, without a registry.

Who runs it: `bench/container`, as root, before its rounds (and again with --no-build only for an
image that is missing). Each build uses build-bases' local stand-ins for the base images, as every
build on this machine must; nothing is pulled and, once our image exists, nothing reaches npm:
upstream's way takes its gateway from our image.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from tests.e2e.harness import REPO, Gateway, compose_command

# Upstream's way, from the same gateway package: a node base, the gateway's /app as our image's npm
# install laid it out (the same bytes: copied from our image, so that the bench never needs npm and
# both sides run exactly the same code), `USER node`, the gateway as the command. A named volume on
# ~/.openclaw (its state, as upstream's compose mounts it) gets node's ownership from the image, so
# that a fresh volume is writable. /tmp starts empty, as in the official node images (build-bases'
# own npm left a root-owned node-compile-cache there, which would keep the gateway from its cache).
UPSTREAM_DOCKERFILE = """\
FROM {base}
COPY --from={ours} /app/ /app/
RUN mkdir -p /home/node/.openclaw && chown node:node /home/node/.openclaw \\
 && rm -rf /tmp/* /tmp/.[!.]*
ENV NODE_ENV=production
USER node
WORKDIR /home/node
CMD ["node", "/app/node_modules/{name}/openclaw.mjs", "gateway", "--allow-unconfigured", "--bind", "lan"]
"""

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


def build_upstream(tag: str, ours: str, gateway: Gateway, log_path: Path) -> str | None:
    """Upstream's way with the gateway of our image `ours`, offline; None, or why it failed."""
    name = gateway.package.rpartition("@")[0]
    base = base_images(gateway)["BASE_IMAGE"]
    with tempfile.TemporaryDirectory(prefix="mbbench-upstream-") as context:
        Path(context, "Dockerfile").write_text(UPSTREAM_DOCKERFILE.format(base=base, ours=ours, name=name))
        built = logged(["docker", "build", "--network", "none", "-t", tag, context], log_path)
    return None if built else f"docker build of {tag} failed; see {log_path}"


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
