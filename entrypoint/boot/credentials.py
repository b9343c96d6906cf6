"""Phase `credentials`: the program's secret, taken from the environment or generated once.

A zero-config first start still needs a token (the gateway refuses token auth without one): we
generate it into the state volume, 0600, so it survives restarts and upgrades, and we log where it
is, never what it is.

Where it differs: after the drop, as the target user, so that the file it generates is the user's.
"""

from __future__ import annotations

import base64
import errno
import os
from collections.abc import Mapping

from ..common.plans import SecretPlan
from ..common.report import PhaseRecorder, PhaseResult


def _read(path: str) -> str | None:
    # O_NOFOLLOW: a link planted in the volume must not make us read (and then pass on) another file.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, encoding="utf-8") as handle:
        if os.fstat(handle.fileno()).st_mode & 0o077:
            os.fchmod(handle.fileno(), 0o600)  # a secret readable by others is repaired, not trusted less
        return handle.read().strip() or None


def _generate(path: str) -> str:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    # secrets.token_urlsafe(32), spelled out: the same 32 bytes of os.urandom, base64url without
    # padding, without importing `secrets` (random, hmac, hashlib) into PID 1 for the rest of its life.
    value = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode("ascii")
    # O_EXCL: two boots racing (or a file appearing meanwhile) never overwrite a token in use.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(value + "\n")
    return value


def _from_environment(plan: SecretPlan, environ: Mapping[str, str]) -> tuple[str, str] | None:
    return next(((name, environ[name]) for name in plan.accepted if environ.get(name)), None)


def existing(plan: SecretPlan, environ: Mapping[str, str]) -> str | None:
    """The secret if there is one already (environment first, then the file); never generates."""
    given = _from_environment(plan, environ)
    if given is not None:
        return given[1]
    try:
        return _read(plan.path)
    except OSError:
        return None


def run(plan: SecretPlan, environ: Mapping[str, str]) -> tuple[PhaseResult, str | None]:
    recorder = PhaseRecorder("credentials")
    given = _from_environment(plan, environ)
    if given is not None:
        recorder.figures.update(source="environment", variable=given[0])
        return recorder.result(), given[1]
    try:
        value = _read(plan.path)
        if value is not None:
            recorder.figures.update(source="file", path=plan.path)
            return recorder.result(), value
        value = _generate(plan.path)
    except OSError as error:
        if error.errno == errno.EEXIST:  # created by a concurrent boot between our read and write
            return run(plan, environ)
        recorder.warn(
            "secret_unavailable",
            f"no secret in {', '.join(plan.accepted)} and {plan.path} is unusable: {error.strerror}",
            path=plan.path,
            errno=error.errno,
        )
        return recorder.result(), None
    # Runs after the privilege drop, so the file already belongs to the user who needs it.
    recorder.figures.update(source="generated", path=plan.path, mode="0600", show_with=f"cat {plan.path}")
    return recorder.result(), value
