"""The boot ledger: how each recent boot of the container ended, kept in the state volume.

One small JSON file, `{"version": 1, "boots": [{"started": <epoch s>, "outcome": ...}, ...]}`, newest
last, at most `KEEP` entries. The init appends an entry at each boot (`begin_boot`) and records how
it ended (`mark`): `ready` (the program ran), `refused` (the crash guard refused a crash loop),
`init_failed` (the init itself could not boot) or `stopped` (an ordinary stop). The last write wins,
so a boot that was refused and then re-armed by an operator ends `ready`.

`hold_reason` is asked before `begin_boot`: when the last `burst` boots all started within the
window and each ended `refused` or `init_failed`, the next boot starts in hold instead of joining
the orchestrator's restart loop. A boot that never recorded an outcome (killed, OOM) breaks the
streak: holding is only for failures that are known.

The ledger is an aid, never a reason to fail: a missing, corrupt or unwritable file is reported
once as a warning and treated as empty. Writes are atomic (`rundir.replace_file`) and serialised
between processes (the init and the crash guard) by an advisory lock on a sidecar file.

Who uses it: the init as PID 1, after the privilege drop (`begin_boot`, `hold_reason`, `mark`),
and the crash guard inside supervisord (`mark`), both as the target user; `status` reads it.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import os
from collections.abc import Iterator
from typing import Any

from . import log, rundir


class Outcome(enum.StrEnum):
    READY = "ready"  # the program ran
    REFUSED = "refused"  # the crash guard refused a crash loop
    INIT_FAILED = "init_failed"  # the init itself could not boot
    STOPPED = "stopped"  # an ordinary stop


FAILED_OUTCOMES = frozenset({Outcome.REFUSED, Outcome.INIT_FAILED})
KEEP = 50
VERSION = 1

_logger = log.get("ledger")
# (event, ledger path): each fault of a ledger is said once per process, however often it recurs.
_warned: set[tuple[str, str]] = set()


def _warn_once(event: str, message: str, *, path: str, **fields: Any) -> None:
    if (event, path) in _warned:
        return
    _warned.add((event, path))
    log.event(_logger, "warning", event, message, path=path, **fields)


def _load(path: str) -> list[dict[str, Any]]:
    """The recorded boots, oldest first; [] (with one warning) when the file cannot be used."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as error:
        _warn_once(
            "boot_ledger_unreadable",
            "the boot ledger cannot be read; it is treated as empty",
            path=path,
            error=str(error),
        )
        return []
    boots = data.get("boots") if isinstance(data, dict) else None
    if not isinstance(boots, list):
        _warn_once(
            "boot_ledger_unreadable", "the boot ledger is malformed; it is treated as empty", path=path
        )
        return []
    return [boot for boot in boots if isinstance(boot, dict) and _number(boot.get("started")) is not None]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _store(path: str, boots: list[dict[str, Any]]) -> bool:
    try:
        rundir.replace_file(path, rundir.json_bytes({"version": VERSION, "boots": boots[-KEEP:]}), mode=0o600)
    except OSError as error:
        _warn_once(
            "boot_ledger_unwritable",
            "the boot ledger cannot be written; repeated failed boots will not be detected",
            path=path,
            error=str(error),
        )
        return False
    return True


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """Serialise read-modify-write between the init and the crash guard (best effort)."""
    handle = None
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        handle = open(f"{path}.lock", "a")  # noqa: SIM115 - held for the duration of the block
        fcntl.flock(handle, fcntl.LOCK_EX)
    except OSError:
        pass  # an unwritable directory: the write below reports it
    try:
        yield
    finally:
        if handle is not None:
            handle.close()


def boots(path: str) -> list[dict[str, Any]]:
    """The recorded boots, oldest first (for `status` and tests)."""
    return _load(path)


def begin_boot(path: str, now: float) -> None:
    """Append an entry for the boot starting now (keeps the last `KEEP`)."""
    with _locked(path):
        recorded = _load(path)
        recorded.append({"started": round(now, 3), "outcome": None})
        _store(path, recorded)


def mark(path: str, outcome: Outcome | str, now: float | None = None) -> None:
    """Record how the current (last) boot ended; the last write wins. An unknown outcome is a
    ValueError, before anything is written."""
    outcome = Outcome(outcome)
    with _locked(path):
        recorded = _load(path)
        if not recorded:
            _warn_once("boot_ledger_no_boot", "no boot recorded in the ledger; outcome not kept", path=path)
            return
        if recorded[-1].get("outcome") == outcome:
            return
        recorded[-1]["outcome"] = outcome.value
        if now is not None:
            recorded[-1]["ended"] = round(now, 3)
        _store(path, recorded)


def failed_streak(recorded: list[dict[str, Any]], burst: int, window_s: float, now: float) -> bool:
    """Pure rule: the last `burst` boots all started within `window_s` of `now` and all failed."""
    if burst < 1 or len(recorded) < burst:
        return False
    last = recorded[-burst:]
    return all(
        boot.get("outcome") in FAILED_OUTCOMES and 0 <= now - float(boot["started"]) <= window_s
        for boot in last
    )


def _previous(recorded: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """The boots before the current one: an unfinished last entry begun at `now` is this boot."""
    if recorded and recorded[-1].get("outcome") is None and abs(float(recorded[-1]["started"]) - now) < 1.0:
        return recorded[:-1]
    return recorded


def hold_reason(path: str, burst: int, window_s: float, now: float) -> str | None:
    """Why this boot should hold the program, or None.

    Asked before or after `begin_boot(path, now)` with the same `now`: the entry of the boot
    being decided is never counted against it.
    """
    recorded = _previous(_load(path), now)
    if not failed_streak(recorded, burst, window_s, now):
        return None
    last = recorded[-burst:]
    outcomes = sorted({str(boot["outcome"]) for boot in last})
    span = now - float(last[0]["started"])
    return (
        f"the last {burst} boots within {span:.0f}s all ended in {' or '.join(outcomes)} "
        f"(crash-loop window {window_s:g}s)"
    )
