"""Upstream's way of running the gateway, as `bench/container` builds it to compare with ours.

Who runs it: `bench/container`, as root, before its rounds (with --no-build only when the image is
missing), once our image exists: upstream's way takes its gateway from it, so that nothing reaches
npm or a registry (the base is build-bases' local stand-in, as for every build on this machine).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.e2e.builds import base_images, logged
from tests.e2e.harness import Gateway

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


def build_upstream(tag: str, ours: str, gateway: Gateway, log_path: Path) -> str | None:
    """Upstream's way with the gateway of our image `ours`, offline; None, or why it failed."""
    name = gateway.package.rpartition("@")[0]
    base = base_images(gateway)["BASE_IMAGE"]
    with tempfile.TemporaryDirectory(prefix="mbbench-upstream-") as context:
        Path(context, "Dockerfile").write_text(UPSTREAM_DOCKERFILE.format(base=base, ours=ours, name=name))
        built = logged(["docker", "build", "--network", "none", "-t", tag, context], log_path)
    return None if built else f"docker build of {tag} failed; see {log_path}"
