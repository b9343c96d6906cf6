# Local stand-in for python:3.11-bookworm as the Dockerfile's BUILDER_IMAGE,
# built by scripts/build-bases from a debootstrapped Debian root.
# Debian bookworm's python3 is 3.11, like the project's.
ARG BASE=moltbot-local/debian:bookworm-minbase
FROM ${BASE}
# python3-venv: the builder installs the project into a venv (Debian's python
#   refuses system-wide pip installs, PEP 668).
# libpython3.11: PyInstaller bundles the shared libpython; Debian's python3
#   binary is linked statically and doesn't pull it in.
# binutils: strip/objcopy for PyInstaller --strip.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        python3 python3-venv python3-pip libpython3.11 binutils ca-certificates \
 && rm -rf /var/lib/apt/lists/*
ENV LANG=C.UTF-8
CMD ["python3"]
