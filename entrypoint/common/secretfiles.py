"""Secrets from files (`NAME_FILE=PATH`, the official images' `file_env`): each file read once.

Who uses it: the programs that start the program, the container's start and the program's CLI tool,
right after their settings, as whoever started them: as root that is before the drop, so that a
secret file only root may read (0400, root's, as compose's `secrets:` and `podman --secret` mount
them) works. The settings name the files (`settings.SecretFile`), this module reads them; a file
that cannot be read is a `ConfigError` naming the variable and the path, never the content.
"""

from __future__ import annotations

import os
import stat

from .reading import ConfigError
from .settings import SecretFile

# A secret is short; a larger file is a mistake (/dev/zero, a log), and one environment string
# holds 128 KiB at most.
MAX_BYTES = 64 * 1024
_ACCEPTED = f"a readable regular file of UTF-8 text, not empty, at most {MAX_BYTES} bytes"


def read(secrets: tuple[SecretFile, ...]) -> dict[str, str]:
    """Each file's content, trailing newlines removed: {NAME: value}."""
    return {secret.name: _value(secret, _contents(secret)) for secret in secrets}


def _refused(secret: SecretFile, why: str) -> ConfigError:
    return ConfigError(secret.variable, secret.path, f"{_ACCEPTED} ({why})")


def _contents(secret: SecretFile) -> bytes:
    try:
        # Links are followed (a Kubernetes Secret's files are links into its `..data` directory);
        # O_NONBLOCK: a FIFO at the path must not hang the boot (it is no regular file: refused).
        fd = os.open(secret.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise _refused(secret, "it is not a regular file")
            return handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise _refused(secret, error.strerror or type(error).__name__) from None


def _value(secret: SecretFile, data: bytes) -> str:
    if len(data) > MAX_BYTES:
        raise _refused(secret, "it is larger")
    try:
        value = data.decode("utf-8").rstrip("\r\n")  # `echo secret > file` and editors add them
    except UnicodeDecodeError:
        raise _refused(secret, "it is not UTF-8 text") from None
    if not value:
        raise _refused(secret, "it is empty")
    if "\0" in value:
        raise _refused(secret, "it holds a NUL byte, which no environment variable can")
    return value
