# moltbot: the gateway under moltbot-init, a frozen Python init that runs as PID 1.
#
# Written for the legacy builder too (Debian's docker.io 20.10 has no BuildKit):
# no RUN --mount, no heredocs, no # syntax= line.
#
# Build (with access to a registry):
#     docker build -t moltbot:local .
# Without one: scripts/build-image, which makes local stand-ins for both base
# images from Debian and npm packages (scripts/build-bases) and passes them as
#     --build-arg BUILDER_IMAGE=moltbot-local/python-builder:bookworm
#     --build-arg BASE_IMAGE=moltbot-local/node:24-bookworm-slim
#
# Extra CA certificates (a corporate TLS proxy, or a registry proxy): put them as
# PEM files named *.crt into docker/ca-certificates/ before building (the
# directory is gitignored but for its .gitkeep; `scripts/build-image --host-ca`
# copies this host's bundle there). Both stages add them to the system bundle
# with update-ca-certificates, and point pip (PIP_CERT, REQUESTS_CA_BUNDLE,
# SSL_CERT_FILE) and node/npm (NODE_EXTRA_CA_CERTS) at that bundle; the gateway
# keeps NODE_EXTRA_CA_CERTS at run time, so its own HTTPS calls trust them too.
#
# Build arguments:
#     BUILDER_IMAGE      Debian bookworm with python3 (3.11), venv, pip, binutils
#     BASE_IMAGE         Debian bookworm with node >= 24.16, npm, a node user 1000:1000
#     GATEWAY_PACKAGE    the gateway from npm, pinned: openclaw@2026.9.6 (Node >= 24.16);
#                        openclaw@2026.1.29 and clawdbot@2026.1.24-3 run on Node 22
#     PYINSTALLER_VERSION  the freezer's version
#     BASE_DIGEST, SOURCE, REVISION, CREATED   OCI labels (see the end of this file)

ARG BUILDER_IMAGE=python:3.11-bookworm
ARG BASE_IMAGE=node:24-bookworm-slim

# ---------------------------------------------------------------------------
# Stage 1: freeze moltbot-init (PyInstaller, onedir) into /opt/moltbot-init.
# ---------------------------------------------------------------------------
FROM ${BUILDER_IMAGE} AS builder
ARG PYINSTALLER_VERSION=6.22.3

COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN rm -f /usr/local/share/ca-certificates/.git* \
 && update-ca-certificates
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A venv: Debian's own python3 refuses system-wide pip installs (PEP 668), and
# the official python image doesn't mind either way.
RUN python3 -m venv /opt/build-venv

# Dependencies first, in their own layer, so that a change to the init's code
# doesn't download them again: install the project from its pyproject.toml with
# empty packages (and an empty README, which pyproject names: an edit to the
# real one must not download them again either), then remove the project
# itself and keep its dependencies.
WORKDIR /src
COPY pyproject.toml ./
RUN mkdir -p entrypoint moltbot \
 && touch README.md entrypoint/__init__.py moltbot/__init__.py \
 && /opt/build-venv/bin/pip install --quiet ".[freeze]" "pyinstaller==${PYINSTALLER_VERSION}" \
 && /opt/build-venv/bin/pip uninstall --quiet --yes moltbot-init \
 && rm -rf README.md entrypoint moltbot build ./*.egg-info

COPY entrypoint/ entrypoint/
COPY moltbot/ moltbot/
COPY scripts/build-binary scripts/pyinstaller-entry.py scripts/
COPY scripts/pyinstaller-hooks/ scripts/pyinstaller-hooks/
RUN PYTHON=/opt/build-venv/bin/python scripts/build-binary /opt/moltbot-init \
 && /opt/moltbot-init/moltbot-init --version

# ---------------------------------------------------------------------------
# Stage 2: the runtime: node, the gateway from npm (this stage, `gateway`: the
# only one that needs a network), then its compile cache and the frozen init.
# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS gateway
ARG GATEWAY_PACKAGE=openclaw@2026.9.6
ARG VERSION=0.1.0

LABEL org.opencontainers.image.title="moltbot" \
      org.opencontainers.image.description="The moltbot/openclaw gateway under moltbot-init: ownership repair, legacy state migration, privilege drop and supervision" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="${BASE_IMAGE}" \
      io.moltbot.gateway.package="${GATEWAY_PACKAGE}"

# Extra CA certificates (see the top of this file). node:*-slim images come
# without the ca-certificates package: install it then (needs apt; the local
# stand-in base already has it).
# lsof: `openclaw gateway restart` finds the running gateway with it (without it the CLI answers
# "No verified gateway process is listening", and restarts nothing).
COPY docker/ca-certificates/ /usr/local/share/ca-certificates/
RUN rm -f /usr/local/share/ca-certificates/.git* \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates lsof \
 && rm -rf /var/lib/apt/lists/* \
 && update-ca-certificates
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt \
    NODE_ENV=production \
    NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false

# The gateway, into /app. Facts this follows:
# - A plain `npm install` fails: its WhatsApp library depends on libsignal from a
#   git repository. docker/gateway/package.json pins it through "overrides" to
#   the npm package libsignal-node.
# - --ignore-scripts keeps the dependencies' install scripts out; the gateway's
#   own lifecycle scripts must still run (`npm rebuild <gateway>`), or its first
#   start tries to finish them and dies with EACCES on the root-owned /app.
# - Optional dependencies stay: without them the CLI fails to load.
# - The CLI is exposed as /app/moltbot.mjs (the path users and the init know),
#   a link to the package's bin, whatever the generation calls it (clawdbot:
#   dist/entry.js, moltbot: moltbot.mjs, openclaw: openclaw.mjs). Node runs a
#   linked main module from its real path, so the package finds its files.
# - /app/gateway.json records which package and version are installed (the
#   init reads the generation from it).
# - Anything the install or the smoke test left in /tmp (node's compile cache is
#   created there, root-owned) must go: the gateway, as node, writes there.
WORKDIR /app
COPY docker/gateway/package.json /app/package.json
RUN set -eux \
 && npm install --ignore-scripts --save-exact --no-audit --no-fund --loglevel=warn "${GATEWAY_PACKAGE}" \
 && name="$(node -p 'Object.keys(require("/app/package.json").dependencies)[0]')" \
 && npm rebuild "${name}" --loglevel=warn \
 && node -e ' \
      const fs = require("fs"); \
      const name = process.argv[1]; \
      const pkg = require("/app/node_modules/" + name + "/package.json"); \
      let bin = pkg.bin; \
      if (bin && typeof bin === "object") bin = bin[pkg.name] || Object.values(bin)[0]; \
      if (!bin) throw new Error(name + " has no bin"); \
      fs.symlinkSync("node_modules/" + name + "/" + bin.replace(/^\.\//, ""), "/app/moltbot.mjs"); \
      fs.writeFileSync("/app/gateway.json", JSON.stringify({name: pkg.name, version: pkg.version, bin}, null, 2) + "\n"); \
    ' "${name}" \
 && cat /app/gateway.json \
 && HOME=/tmp/smoke node /app/moltbot.mjs --version \
 && npm cache clean --force --loglevel=error \
 && rm -rf /root/.npm /root/.cache /tmp/* /tmp/.[!.]*

# The build's commit joins /app/gateway.json where the package records it (openclaw's
# dist/build-info.json): the init's release history names the exact build that ran on a state.
RUN node -e ' \
      const fs = require("fs"); \
      const manifest = JSON.parse(fs.readFileSync("/app/gateway.json", "utf8")); \
      const info = "/app/node_modules/" + manifest.name + "/dist/build-info.json"; \
      if (fs.existsSync(info)) manifest.commit = JSON.parse(fs.readFileSync(info, "utf8")).commit || null; \
      fs.writeFileSync("/app/gateway.json", JSON.stringify(manifest, null, 2) + "\n"); \
    ' \
 && cat /app/gateway.json

# The gateway's compile cache, baked (docker/gateway/warm-compile-cache.mjs says how and why):
# without it, a fresh container's first start spends seconds compiling the gateway's code and its
# first stop seconds writing that cache into /tmp. Baking means starting the gateway once, in every
# build (scripts/build-image, `docker compose build`, a plain `docker build`), network or not: the
# gateway's own proxy setting sends every call it makes to a proxy of the step's on loopback that
# refuses them all, and the step fails if the kernel saw a single packet leave loopback.
# WARM_COMPILE_CACHE=0 leaves it out (about a minute less of build, seconds more of first start).
FROM gateway
ARG WARM_COMPILE_CACHE=1
COPY docker/gateway/warm-compile-cache.mjs /usr/local/lib/moltbot/warm-compile-cache.mjs
RUN if [ "${WARM_COMPILE_CACHE}" = 1 ]; then node /usr/local/lib/moltbot/warm-compile-cache.mjs; \
    else echo "compile cache not baked (WARM_COMPILE_CACHE=${WARM_COMPILE_CACHE})"; fi

# The init, frozen, and the names it answers to (one multicall program):
#   moltbot-init   the entrypoint (PID 1), and `moltbot-init health` for HEALTHCHECK
#   moltbot        the gateway's CLI, run as node (`docker exec moltbot moltbot status`)
#   supervisord, supervisorctl   supervisor's own tools; supervisorctl finds
#                  /etc/supervisord.conf without -c, which points at the config
#                  the init renders into the run dir at every boot.
COPY --from=builder /opt/moltbot-init /opt/moltbot-init
RUN ln -s /opt/moltbot-init/moltbot-init /usr/local/bin/moltbot-init \
 && for name in moltbot supervisord supervisorctl; do ln -s moltbot-init "/usr/local/bin/${name}"; done \
 && ln -s /run/moltbot/supervisord.conf /etc/supervisord.conf \
 && /usr/local/bin/moltbot-init --version

# State, workspace and run dirs, owned by node at build time: a named volume
# mounted on an empty path copies this content and ownership, so a fresh volume
# is right from the start. (Volumes that already exist, bind mounts and
# root-filled volumes are repaired by the init at boot.) The state volume holds
# the gateway's state dir (gateway/, which the init keeps free of its own
# records), the gateway's HOME (home/) and the init's records (.moltbot-init/).
# The backups directory (compose.backup.yml's volume, `moltbot-init backup`) is
# node's too, and private: archives hold credentials.
RUN mkdir -p /var/lib/moltbot/gateway /var/lib/moltbot/home /home/node/clawd /run/moltbot \
        /var/backups/moltbot \
 && chown node:node /var/lib/moltbot /var/lib/moltbot/gateway /var/lib/moltbot/home \
        /home/node/clawd /run/moltbot /var/backups/moltbot \
 && chmod 0700 /var/lib/moltbot /var/lib/moltbot/gateway /var/lib/moltbot/home \
        /var/backups/moltbot \
 && chmod 0755 /home/node/clawd /run/moltbot

# No `USER node` line, on purpose: the init starts as root to repair volume
# ownership (root-created bind mounts and volumes gave EACCES) and to migrate
# legacy state from a bind-mounted ~/.clawdbot, then drops to node (uid 1000,
# supplementary groups reset) before it starts supervisord and the gateway.
# `docker run --user 1000:1000` still works: the init then skips the root steps.
WORKDIR /home/node
EXPOSE 18789
STOPSIGNAL SIGTERM
# The gateway needs ~8-20 s to its first answer (2026.9.x on 2 cores; up to
# 70 s for the 2026.1.x builds): failures during the start period don't count,
# and the first success marks the container healthy at once. Docker 20.10 has
# no --start-interval, so the interval also sets how soon after the gateway
# listens the container turns healthy: 5 s (a probe costs ~0.1 s of CPU).
HEALTHCHECK --interval=5s --timeout=5s --start-period=90s --retries=3 \
    CMD ["/usr/local/bin/moltbot-init", "health"]
ENTRYPOINT ["/usr/local/bin/moltbot-init"]
# What runs, as `docker inspect` shows it: the init supervising the gateway (`gateway`, or no
# argument at all, or options for the gateway; any other command is run once after the boot).
CMD ["gateway"]

# Where the image comes from (OCI annotations), beside the title and version of the `gateway` stage
# (labels set there would rebuild its npm layers whenever they change): the base image (its digest
# where a registry gave one; a local stand-in has none), the sources and the commit the init was
# built from, and when. scripts/build-image passes all of them; a plain `docker build` gives an
# unknown revision and, as reproducible builds do, the epoch for an unknown time. Last, after every
# RUN: a new time at every build must not cost the cache of any layer.
ARG BASE_IMAGE
ARG BASE_DIGEST=
ARG SOURCE=
ARG REVISION=unknown
ARG CREATED=1970-01-01T00:00:00Z
LABEL org.opencontainers.image.base.name="${BASE_IMAGE}" \
      org.opencontainers.image.base.digest="${BASE_DIGEST}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
