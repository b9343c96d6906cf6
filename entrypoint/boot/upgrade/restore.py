"""The operator's restore: an archive of the application's own checked by the installed release
(its `verify`), extracted by it into the swap's staging directory (its `restore --target`, never in
place), and the archive's state dir put in place of the live one as a rollback puts a checkpoint
(`swap.py`: the journal, the renames, a kill at any instant finished by the next restore, rollback
or boot), the live one set aside under `before-restore/<UTC time>/`, never deleted. The generated
secret that `backup` copied beside the archive goes back with it; the history says the state is
the archive's release's, so that its image boots on it as on its own.

Where it differs: an operator's one-off process (`<init> restore ARCHIVE`: a `docker compose run`, a
Kubernetes Job), as the target user, with no application on the state (it holds the state lock, as
a rollback does), often its container's PID 1 (it reaps what the CLI leaves). The release's CLI,
which only reads the archive here, is pointed at a scratch state dir and HOME: its start runs its
own bootstrap on whatever it is pointed at.

Before anything live is touched: the release has archives of its own, the archive is there and
readable, the release's own check accepts it, and the state volume has room for all it holds
uncompressed. Each refusal is one line and an exit code, and leaves nothing behind. What the
archive holds besides the state dir (its manifest, its workspace) is kept under
`restored/<UTC time>/` and named in the output: the workspace volume is not written (the work in it
stays).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
from dataclasses import dataclass
from typing import Any

from ...common import checkpoints, cli, log, swapjournal
from ...common.exits import Exit
from ...common.fsops import DIR_FLAGS, describe, syncfs
from ...common.plans import BackupPlan, UpgradePlan
from ...common.releases import Release
from ...common.swapjournal import Swap
from .. import room
from . import swap

SCRATCH = "restore-scratch"
EXTRACTED = "archive"  # in the staging directory: what the release's restore wrote
_BLOCK = 4096  # what an entry takes on disk at the least, and the unit its data is counted in
_NO_ROOM_TO_WRITE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM})
logger = log.get("restore")


class RestoreRefused(Exception):
    """A restore refused before it changed anything: the exit code, and why (one line)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Restored:
    swap: Swap
    answer: dict[str, Any]  # what the release's restore said (empty: a swap a kill had interrupted)
    held: tuple[tuple[str, str], ...] = ()  # what else the archive holds: (its kind, where it is now)


def restore(upgrade: UpgradePlan, plan: BackupPlan, archive: str) -> Restored:
    """Restore `archive` (a path, or a name in the backups directory), or finish a swap a kill
    interrupted. The caller holds the state lock. Raises RestoreRefused, swapjournal.Unreadable,
    OSError (once the journal is written, the next restore or boot finishes what it began)."""
    resumed = swap.resume(upgrade.record_dir)
    if resumed is not None:
        log.event(logger, "warning", f"{resumed.kind}_finished", swap.finished(resumed).splitlines()[0])
        return Restored(resumed, {})
    if not plan.supported:
        raise RestoreRefused(
            Exit.UNAVAILABLE,
            f"{_label(upgrade.release, upgrade.program)} makes no archives of its own and cannot check or "
            f"extract one ({plan.since} and later can): restore with an image of one of those, then run "
            "yours",
        )
    path = _readable(archive if os.sep in archive else os.path.join(plan.directory, archive))
    staging = swapjournal.staging(upgrade.record_dir)
    try:
        answer = _extract(upgrade, plan, path, staging)
        assets = _assets(staging, answer)
        state = _state_dir(staging, assets, plan.state_asset)
        trees = _staged(upgrade, plan, path, staging, state)
    except OSError as error:  # no room to stage, a volume gone read-only: said as a refusal
        shutil.rmtree(staging, ignore_errors=True)
        code = Exit.CANT_CREATE if error.errno in _NO_ROOM_TO_WRITE else Exit.FAILED
        where = f"{error.filename}: " if error.filename else ""
        raise RestoreRefused(
            code, f"the restore stopped ({where}{describe(error)}): nothing was changed"
        ) from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing live was touched: nothing is left either
        raise
    made_by = _made_by(upgrade.release, answer.get("runtimeVersion"))
    aside = swap.aside_dir(upgrade.record_dir, checkpoints.BEFORE_RESTORE)
    kept = os.path.join(upgrade.record_dir, checkpoints.RESTORED, os.path.basename(aside))
    swapped = Swap("restore", path, made_by, trees, aside, kept)
    swap.swap_in(upgrade.record_dir, swapped)
    log.event(
        logger,
        "info",
        "restored",
        f"restored {path}, {_label(made_by, 'release unknown')}'s; the live state was set aside in {aside}",
        archive=path,
        release=made_by.label if made_by else None,
        aside=aside,
        kept=kept,
        secret=len(trees) > 1,
    )
    held = [
        (str(asset.get("kind")), os.path.join(kept, EXTRACTED, str(asset.get("archivePath"))))
        for asset in assets
        if asset.get("kind") != plan.state_asset
    ]
    return Restored(swapped, answer, tuple(held))


def _made_by(installed: Release | None, version: object) -> Release | None:
    """The release that made the archive (its manifest names the version; the package is the
    installed one's, the only one that reads such archives); the installed one itself, with its
    build's commit, when it is that release."""
    if installed is None or not isinstance(version, str):
        return None
    made = Release(installed.package, version)
    return installed if installed.same(made) else made


def _label(release: Release | None, otherwise: str) -> str:
    return release.label if release else otherwise


def _readable(path: str) -> str:
    """The archive's absolute path, once it is known to be a file this user can read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise RestoreRefused(
            Exit.NO_INPUT, f"no archive at {path}: give its path, in a volume this container mounts"
        ) from None
    except OSError as error:
        raise RestoreRefused(
            Exit.NO_INPUT,
            f"cannot read {path} as uid {os.geteuid()}: {describe(error)}; make it readable by that user",
        ) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RestoreRefused(Exit.NO_INPUT, f"{path} is not a file: give the path of an archive")
    finally:
        os.close(fd)
    return os.path.abspath(path)


def _extract(upgrade: UpgradePlan, plan: BackupPlan, path: str, staging: str) -> dict[str, Any]:
    """The release's check of the archive, room for it, then its extraction into the staging
    directory; what its restore answered."""
    scratch = os.path.join(upgrade.record_dir, SCRATCH)
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        env = cli.in_scratch(plan.env, plan.state_dir_env, scratch)
        said = f"{_label(upgrade.release, upgrade.program)}'s own `backup"
        _ask(plan, "verify", path, env, scratch, Exit.DATA_ERROR, f"{said} verify` refuses the archive")
        _room(upgrade.record_dir, path)
        target = os.path.join(swap.fresh_staging(upgrade.record_dir), EXTRACTED)
        return _ask(plan, "restore", path, env, scratch, Exit.FAILED, f"{said} restore` failed", target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _ask(
    plan: BackupPlan,
    command: str,
    path: str,
    env: dict[str, str],
    scratch: str,
    code: int,
    refusal: str,
    target: str = "",
) -> dict[str, Any]:
    argv = [path if arg == "ARCHIVE" else target if arg == "TARGET" else arg for arg in plan.argv[command]]
    try:
        ran = cli.run(argv, plan.timeout_s, env, cwd=scratch)
    finally:
        cli.reap_orphans()
    answer = cli.answer_of(ran.stdout) or {}
    if ran.code != 0 or answer.get("ok") is not True:
        raise RestoreRefused(code, f"{refusal}: {cli.refusal(ran)}; nothing was changed")
    return answer


def _room(record_dir: str, path: str) -> None:
    """Refused when the state volume cannot hold what the archive holds, uncompressed."""
    import tarfile  # only a restore reads an archive's headers
    import zlib

    needed = 0
    try:
        with tarfile.open(path, "r|gz") as archive:
            for member in archive:
                needed += _BLOCK + -(-member.size // _BLOCK) * _BLOCK
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise RestoreRefused(Exit.DATA_ERROR, f"{path} cannot be read as a .tar.gz: {error}") from None
    fd = os.open(record_dir, DIR_FLAGS)
    try:
        measured = room.Room(needed, room.free(fd))
    finally:
        os.close(fd)
    if not measured.enough:
        free = measured.free or 0
        raise RestoreRefused(
            Exit.CANT_CREATE,
            f"restoring {path} needs {room.size(needed)} ({needed} bytes) in {record_dir}, which has "
            f"{room.size(free)} ({free} bytes) free: nothing was changed. Make room on the state volume "
            f"(old checkpoints, states set aside under {checkpoints.ROLLED_BACK}/ and "
            f"{checkpoints.BEFORE_RESTORE}/), then run it again",
        )


def _assets(staging: str, answer: dict[str, Any]) -> list[dict[str, Any]]:
    """What the extracted archive's manifest says it holds."""
    root = answer.get("archiveRoot")
    manifest = os.path.join(staging, EXTRACTED, str(root), "manifest.json")
    try:
        with open(manifest, encoding="utf-8") as handle:
            assets = json.load(handle).get("assets")
    except (OSError, ValueError, AttributeError) as error:
        raise RestoreRefused(
            Exit.DATA_ERROR, f"the extracted archive has no manifest to read: {error}"
        ) from None
    return [asset for asset in assets if isinstance(asset, dict)] if isinstance(assets, list) else []


def _state_dir(staging: str, assets: list[dict[str, Any]], kind: str) -> str:
    """Where the archive's state dir lies in the staging directory (relative to it)."""
    found = [str(asset.get("archivePath")) for asset in assets if asset.get("kind") == kind]
    where = os.path.normpath(os.path.join(EXTRACTED, found[0])) if len(found) == 1 else ""
    inside = where.startswith(EXTRACTED + os.sep) and not os.path.isabs(found[0])
    extracted = os.path.join(staging, where)
    if not inside or os.path.islink(extracted) or not os.path.isdir(extracted):
        raise RestoreRefused(
            Exit.DATA_ERROR,
            f"the archive holds no one state directory to put in place ({len(found)} named in its manifest; "
            "an archive of the config alone?): nothing was changed",
        )
    return where


def _staged(
    upgrade: UpgradePlan, plan: BackupPlan, path: str, staging: str, state: str
) -> tuple[tuple[str, str], ...]:
    """The swap's trees, staged and on disk: the state dir (with the live one's mode: the release
    extracts it 0755, and it holds credentials), and the secret kept beside the archive, if any."""
    live = upgrade.trees[0][1]
    mode = stat.S_IMODE(os.stat(live).st_mode) if os.path.isdir(live) else 0o700
    os.chmod(os.path.join(staging, state), mode)
    trees = [(state, live)]
    name = os.path.basename(plan.secret_path)
    if os.path.isfile(f"{path}.{name}"):
        shutil.copyfile(f"{path}.{name}", os.path.join(staging, name), follow_symlinks=False)
        os.chmod(os.path.join(staging, name), 0o600)
        trees.append((name, plan.secret_path))
    staging_fd = os.open(staging, DIR_FLAGS)
    try:
        syncfs(staging_fd)  # all of it on disk before any live tree moves
    finally:
        os.close(staging_fd)
    return tuple(trees)


def next_steps(done: Restored, workspace: str | None) -> str:
    """What the operator reads once the restore is done: what the state is now, where the rest
    went, what no archive holds, what to run."""
    if not done.answer:
        return swap.finished(done.swap)
    made = done.answer.get("createdAt", "at an unknown time")
    lines = [
        f"restored {done.swap.source} (made {made} by {_label(done.swap.release, 'an unknown release')}): "
        "the state dir is the archive's.",
        f"The state it replaced is set aside (never deleted) in {done.swap.aside}.",
    ]
    secret = next((live for staged, live in done.swap.trees[1:]), None)
    lines.append(
        f"The generated secret came back with it: {secret}."
        if secret
        else "The secret is this volume's own: no copy of one lay beside the archive."
    )
    for kind, where in done.held:
        into = f" (yours is {workspace}, unchanged)" if kind == "workspace" and workspace else ""
        lines.append(
            f"Not put back, the archive's {kind}{into}: {where}. Copy what you need, then delete it."
        )
    said = [text for text in done.answer.get("warnings") or [] if isinstance(text, str)]
    lines.append(
        "What no archive holds: plugins' node_modules (update or reinstall the plugins); channels with "
        "ratchet state (WhatsApp) may need relinking."
        + ("".join(f"\n  {cli.last_line(text)}" for text in said) if said else "")
    )
    lines.append(swap.next_run(done.swap.release))
    return "\n".join(lines)
