"""`backup [--output DIR] [--keep N] [--every SECONDS]`: an archive of the state made by the
application's own CLI (`backup create --verify`: verified, its databases captured with SQLite's
online backup, so that the application may run meanwhile), a copy of the generated secret beside
it, then the newest N of its archives kept.

Where it differs: it writes, into its backups directory and nothing else, as a one-off process or
a scheduled job (a Kubernetes CronJob's pod, compose.backup.yml's service), as the target user, on
the volumes of the running application, often as its container's PID 1 (it then reaps what the CLI
leaves). It takes no state lock (the running application's init holds it). It refuses, and says
why, when the installed release makes no archives of its own, when the state belongs to another
release (a start of another release's CLI runs that release's bootstrap on the live state), and
while a rollback or a restore of the state is unfinished.

Retention counts the application's archives only (their names end as the profile says), newest
first; no other file of the directory is ever touched, and a failed backup prunes nothing.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from typing import Any

from ..common import cli, log, releases, rundir, swapjournal
from ..common.exits import Exit
from ..common.fsops import describe
from ..common.plans import BackupPlan, UpgradePlan

logger = log.get("backup")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
USAGE = "backup [--output DIR] [--keep N] [--every SECONDS, or with m, h or d: 6h, 1d]"


class Refused(Exception):
    """A backup this run will not make: the exit code, the event, and why (one line)."""

    def __init__(self, code: int, event: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.event = event


@dataclass(frozen=True)
class Options:
    directory: str
    keep: int
    every: float | None  # seconds between two backups; None: one, then the exit


def options(plan: BackupPlan, args: list[str]) -> Options:
    """The command line, over the plan's defaults. Raises Refused (exit 64) for anything else."""
    given = dict(zip(args[::2], args[1::2], strict=False))
    if len(args) % 2 or not set(given) <= {"--output", "--keep", "--every"}:
        raise Refused(Exit.USAGE, "backup_usage", f"usage: {USAGE}")
    keep, every = given.get("--keep", str(plan.keep)), given.get("--every")
    if not keep.isdigit() or int(keep) < 1:
        raise Refused(
            Exit.USAGE, "backup_usage", f"--keep {keep}: a whole number of at least 1; usage: {USAGE}"
        )
    seconds = None if every is None else _seconds(every)
    if seconds == 0:
        raise Refused(Exit.USAGE, "backup_usage", f"--every {every}: more than 0 seconds; usage: {USAGE}")
    return Options(os.path.abspath(given.get("--output", plan.directory)), int(keep), seconds)


def _seconds(said: str) -> float:
    number, unit = (said[:-1], said[-1]) if said[-1:] in _UNITS else (said, "s")
    return float(number) * _UNITS[unit] if number.isdigit() else 0.0


def main(plan: BackupPlan, upgrade: UpgradePlan, args: list[str]) -> int:
    try:
        chosen = options(plan, args)
    except Refused as refused:
        return _said(refused)
    code = once(plan, upgrade, chosen)
    while chosen.every is not None:  # a scheduled job: a failure waits for the next time
        time.sleep(chosen.every)
        code = once(plan, upgrade, chosen)
    return code


def once(plan: BackupPlan, upgrade: UpgradePlan, chosen: Options) -> int:
    """One archive, then the retention; the exit code."""
    try:
        _check(plan, upgrade, chosen.directory)
        started = time.monotonic()
        archive, answer = _create(plan, chosen.directory)
    except Refused as refused:
        return _said(refused)
    try:
        carried = _carry_secret(plan.secret_path, archive)
        removed = prune(
            chosen.directory, plan.archive_suffix, chosen.keep, os.path.basename(plan.secret_path)
        )
        size = os.stat(archive).st_size
    except OSError as error:
        return _said(
            Refused(Exit.FAILED, "backup_failed", f"{archive} was made, but then: {describe(error)}")
        )
    log.event(
        logger,
        "info",
        "backup_created",
        f"{archive}: {size} bytes, verified by {_label(upgrade)}; kept the newest {chosen.keep}, "
        f"removed {len(removed)}",
        archive=archive,
        bytes=size,
        seconds=round(time.monotonic() - started, 1),
        release=_label(upgrade),
        assets=[asset.get("kind") for asset in answer.get("assets") or [] if isinstance(asset, dict)],
        secret_copied=carried,
        removed=removed,
    )
    return Exit.OK


def _label(upgrade: UpgradePlan) -> str:
    return upgrade.release.label if upgrade.release else f"the installed {upgrade.program}"


def _check(plan: BackupPlan, upgrade: UpgradePlan, directory: str) -> None:
    """Refused, with what to do, unless this image may archive this state into `directory` now."""
    if not plan.supported:
        raise Refused(
            Exit.UNAVAILABLE,
            "backup_refused",
            f"{_label(upgrade)} makes no archives of its own ({plan.since} and later do): "
            "back it up with an image of one of those, or copy the stopped volume",
        )
    if os.path.lexists(os.path.join(upgrade.record_dir, swapjournal.FILE)):
        raise Refused(
            Exit.FAILED,
            "backup_refused",
            f"a rollback or restore of this state is unfinished ({swapjournal.FILE} in "
            f"{upgrade.record_dir}): the next boot, rollback or restore finishes it; back up after that",
        )
    history = releases.read(upgrade.record_dir)
    current = history.current.release if history and history.current else None
    if current is not None and upgrade.release is not None and not current.same(upgrade.release):
        raise Refused(
            Exit.UNAVAILABLE,
            "backup_refused",
            f"this image runs {upgrade.release.label}, but the state is {current.label}'s (the release "
            f"that runs on it): a start of another release's CLI runs its own bootstrap on the live state; "
            f"run the backup with the image of {current.label}",
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        why = "it does not exist" if not os.path.isdir(directory) else "it is not writable"
        raise Refused(
            Exit.CANT_CREATE,
            "backup_refused",
            f"cannot write into {directory} as uid {os.geteuid()} ({why}): mount the backups volume there, "
            f"writable by uid {os.geteuid()}, or name another directory with --output",
        )


def _create(plan: BackupPlan, directory: str) -> tuple[str, dict[str, Any]]:
    """The archive the release made and verified, and what it answered. Raises Refused."""
    argv = [directory if arg == "OUTPUT" else arg for arg in plan.argv["create"]]
    try:
        ran = cli.run(argv, plan.timeout_s, plan.env, cwd=directory)
    finally:
        cli.reap_orphans()
    answer = cli.answer_of(ran.stdout) or {}
    archive = answer.get("archivePath")
    if ran.code != 0 or answer.get("verified") is not True or not isinstance(archive, str):
        raise Refused(Exit.FAILED, "backup_failed", f"no backup was made: {cli.refusal(ran)}")
    return archive, answer


def _carry_secret(secret_path: str, archive: str) -> bool:
    """The generated secret copied beside the archive (0600): the application's archive holds its
    state, not the init's records, and a state restored on a fresh volume keeps its clients'
    secret only so. None to copy (it comes from the environment): False."""
    try:
        fd = os.open(secret_path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False
    with os.fdopen(fd, "rb") as handle:
        secret = handle.read()
    rundir.replace_file(f"{archive}.{os.path.basename(secret_path)}", secret, mode=0o600)
    return True


def archives(directory: str, suffix: str) -> list[os.DirEntry[str]]:
    """The application's archives in `directory` (files whose names end in `suffix`), newest first."""
    with os.scandir(directory) as entries:
        found = [
            entry for entry in entries if entry.name.endswith(suffix) and entry.is_file(follow_symlinks=False)
        ]
    return sorted(
        found, key=lambda entry: (entry.stat(follow_symlinks=False).st_mtime, entry.name), reverse=True
    )


def prune(directory: str, suffix: str, keep: int, secret_name: str) -> list[str]:
    """All but the newest `keep` archives of the application in `directory` removed, each with
    the secret beside it; the names removed. Nothing else is looked at."""
    removed = []
    for entry in archives(directory, suffix)[keep:]:
        os.unlink(entry.path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{entry.path}.{secret_name}")
        removed.append(entry.name)
    return removed


def _said(refused: Refused) -> int:
    log.event(logger, "error", refused.event, str(refused))
    return refused.code
