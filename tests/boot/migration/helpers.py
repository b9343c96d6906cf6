"""What the migration tests share: a realistic legacy state, manifests, real mounts, the driver.

Everything runs as root against the real kernel: EBUSY comes from a real bind mount, EXDEV from a
real tmpfs, ENOSPC from a small tmpfs, EROFS from a read-only remount, EACCES from a process that
lacks CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH. The mounts live in a private mount namespace that
the test session enters once (see conftest.py): the host's mount table never sees them.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from entrypoint.common.plans import MigrationMode, MigrationPlan, StopFlag
from moltbot.profile import STATE_ENTRIES

REPO = Path(__file__).resolve().parents[3]
DRIVER = Path(__file__).with_name("driver.py")
RECORD_DIR = ".moltbot-init"
GATEWAY_DIR = "gateway"
HOME_DIR = "home"
KEPT_AT_ROOT = (GATEWAY_DIR, HOME_DIR, RECORD_DIR, "lost+found")
SETTING = "MOLTBOT_MIGRATE"
CONFIG_NAMES = ("moltbot.json", "openclaw.json", "clawdbot.json")
UID, GID = 4321, 4322
# Past, distinct, sub-second times: a copy that drops the nanoseconds or takes "now" shows up.
BASE_TIME_NS = 1_700_000_000_123_456_789

CLONE_NEWNS = 0x00020000


def enter_private_mount_namespace() -> None:
    """unshare(CLONE_NEWNS), then make every mount private so nothing propagates to the host."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), "unshare(CLONE_NEWNS)")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)


def plan_for(
    sources: list[Path] | tuple[Path, ...],
    volume: Path,
    mode: MigrationMode = "auto",
    config_names: tuple[str, ...] = CONFIG_NAMES,
    owner: tuple[int, int] | None = (UID, GID),
    home_links: tuple[tuple[str, str | None], ...] = (),
) -> MigrationPlan:
    """The image's layout of a state volume at `volume`: the target is its `gateway/`."""
    return MigrationPlan(
        mode,
        tuple(str(source) for source in sources),
        target=str(volume / GATEWAY_DIR),
        volume=str(volume),
        record_dir=str(volume / RECORD_DIR),
        kept_at_root=KEPT_AT_ROOT,
        state_entries=STATE_ENTRIES,
        owner=owner,
        config_names=config_names,
        home_links=home_links,
        mode_setting=SETTING,
    )


def gateway_of(volume: Path) -> Path:
    return volume / GATEWAY_DIR


def plan_to_json(plan: MigrationPlan) -> str:
    return json.dumps(plan.__dict__)


def plan_from_json(text: str) -> MigrationPlan:
    fields = json.loads(text)
    for name in ("sources", "kept_at_root", "state_entries", "config_names"):
        fields[name] = tuple(fields[name])
    fields["owner"] = tuple(fields["owner"]) if fields["owner"] is not None else None
    fields["mode"] = MigrationMode(fields["mode"])
    fields["home_links"] = tuple((path, target) for path, target in fields["home_links"])
    return MigrationPlan(**fields)


class StopAt(StopFlag):
    """Set from its n-th look on, as a SIGTERM handler would set it mid-copy (the phase looks once
    before it starts, then the copier once before each entry)."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.looks = 0

    def is_set(self) -> bool:
        self.looks += 1
        if self.looks == self.at:
            self.set(signal.SIGTERM)
        return super().is_set()


def chown_tree(root: Path, uid: int, gid: int) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, uid, gid, follow_symlinks=False)


# -- mounts ---------------------------------------------------------------------------------------


class Mounts:
    """Mounts made by one test, undone in reverse order when it ends."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def _mount(self, *args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True)

    def tmpfs(self, point: Path, size: str = "64m") -> Path:
        point.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(point))
        self.points.append(point)
        return point

    def ramfs(self, point: Path) -> Path:
        """A filesystem that takes no extended attribute at all (EOPNOTSUPP)."""
        point.mkdir(parents=True, exist_ok=True)
        self._mount("-t", "ramfs", "-o", "mode=0755", "ramfs", str(point))
        self.points.append(point)
        return point

    def bind(self, source: Path, point: Path, read_only: bool = False) -> Path:
        self._mount("--bind", str(source), str(point))
        self.points.append(point)
        if read_only:
            self._mount("-o", "remount,ro,bind", str(point))
        return point

    def undo(self) -> None:
        for point in reversed(self.points):
            subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)
        self.points.clear()


# -- a legacy state dir ---------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int, time_ns: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, ns=(time_ns, time_ns))


def populate(root: Path, seed: int = 1, scale: int = 1) -> None:
    """A state dir as the gateway leaves it: config, 0600 secrets, sessions, sqlite, media,
    a Chromium profile with its dangling SingletonLock link, empty dirs, a relative link, a FIFO.
    `scale` multiplies the sessions and the size of the binary files."""
    rng = random.Random(seed)
    tick = iter(range(BASE_TIME_NS, BASE_TIME_NS + 10**15, 1_000_003_007))
    root.mkdir(parents=True, exist_ok=True)
    _write(root / "clawdbot.json", b'{"gateway": {"port": 18789}}\n', 0o600, next(tick))
    _write(root / "exec-approvals.json", b"[]\n", 0o600, next(tick))
    _write(root / "credentials" / "oauth.json", rng.randbytes(300), 0o600, next(tick))
    _write(root / "credentials" / "whatsapp" / "creds.json", rng.randbytes(2000), 0o600, next(tick))
    _write(root / "identity" / "device.json", b'{"deviceId": "abc"}\n', 0o600, next(tick))
    _write(root / "cron" / "jobs.json", b'{"jobs": []}\n', 0o644, next(tick))
    for agent in ("main", "work"):
        agent_dir = root / "agents" / agent
        _write(agent_dir / "agent" / "auth-profiles.json", rng.randbytes(500), 0o600, next(tick))
        for number in range(20 * scale):
            size = rng.choice((0, 10, 700, 4096, 20_000))
            _write(agent_dir / "sessions" / f"s{number:04d}.jsonl", rng.randbytes(size), 0o644, next(tick))
    _write(root / "memory" / "main.sqlite", rng.randbytes(300_000 * scale), 0o644, next(tick))
    _write(root / "memory" / "main.sqlite-wal", rng.randbytes(4096), 0o640, next(tick))
    for number in range(3):
        _write(root / "media" / f"photo{number}.jpg", rng.randbytes(400_000 * scale), 0o644, next(tick))
    profile = root / "browser" / "default" / "user-data"
    _write(profile / "Default" / "Preferences", rng.randbytes(3000), 0o600, next(tick))
    (profile / "SingletonLock").symlink_to("old-hostname-4242")  # dangling, must stay dangling
    (root / "agents" / "current").symlink_to("main")  # relative, inside the tree
    (root / "logs").mkdir()
    (root / "sandboxes").mkdir(mode=0o700)
    os.mkfifo(root / "browser" / "default" / "fifo", 0o600)
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        os.utime(path, ns=(next(tick), next(tick)), follow_symlinks=False)


def fill(root: Path, total_bytes: int, seed: int = 7) -> None:
    """Plain data for the space and kill tests: many small files and a few large ones."""
    rng = random.Random(seed)
    written = 0
    number = 0
    while written < total_bytes:
        size = rng.choice((100, 2000, 16_000)) if number % 20 else 1_000_000
        directory = root / f"d{number % 8}" / f"e{number % 3}"
        _write(directory / f"f{number:05d}.bin", rng.randbytes(size), 0o644, BASE_TIME_NS + number)
        written += size
        number += 1


# -- manifests ------------------------------------------------------------------------------------

Entry = tuple[Any, ...]
_HASHES: dict[tuple[int, int, int, int, int], str] = {}


def _sha256(path: Path, seen: os.stat_result) -> str:
    # Keyed by inode and change time: a file renamed into place is not hashed again.
    key = (seen.st_dev, seen.st_ino, seen.st_size, seen.st_mtime_ns, seen.st_ctime_ns)
    if key not in _HASHES:
        _HASHES[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return _HASHES[key]


def entry_of(path: Path) -> Entry:
    """(type, mode, size, mtime_ns, sha256, link target): what a byte-for-byte copy keeps.
    A directory's size is the filesystem's business (4096 on ext4, entry count on tmpfs)."""
    seen = os.lstat(path)
    kind = stat.S_IFMT(seen.st_mode)
    if stat.S_ISREG(seen.st_mode):
        return ("file", stat.S_IMODE(seen.st_mode), seen.st_size, seen.st_mtime_ns, _sha256(path, seen), None)
    if stat.S_ISLNK(seen.st_mode):
        return ("link", None, None, seen.st_mtime_ns, None, os.readlink(path))
    if stat.S_ISDIR(seen.st_mode):
        return ("dir", stat.S_IMODE(seen.st_mode), None, seen.st_mtime_ns, None, None)
    return (stat.filemode(kind)[0], stat.S_IMODE(seen.st_mode), None, seen.st_mtime_ns, None, None)


def manifest(root: Path, exclude: tuple[str, ...] = ()) -> dict[str, Entry]:
    """Every entry under `root` (not `root` itself), by relative path; top-level `exclude` skipped."""
    result: dict[str, Entry] = {}
    for directory, dirnames, filenames in os.walk(root):
        base = Path(directory)
        rel_base = base.relative_to(root)
        if rel_base == Path("."):
            dirnames[:] = [name for name in dirnames if name not in exclude]
            filenames = [name for name in filenames if name not in exclude]
        for name in dirnames + filenames:
            rel = str(rel_base / name) if rel_base != Path(".") else name
            result[rel] = entry_of(base / name)
    return result


def owners(root: Path, exclude: tuple[str, ...] = ()) -> set[tuple[int, int]]:
    found = set()
    for directory, dirnames, filenames in os.walk(root):
        if Path(directory) == root:
            dirnames[:] = [name for name in dirnames if name not in exclude]
        for name in dirnames + filenames:
            seen = os.lstat(os.path.join(directory, name))
            found.add((seen.st_uid, seen.st_gid))
    return found


def record_of(volume: Path) -> dict[str, Any] | None:
    path = volume / RECORD_DIR / "migration.json"
    return json.loads(path.read_text()) if path.exists() else None


def staging_of(volume: Path) -> Path:
    return volume / RECORD_DIR / "migration-staging"


def write_earlier_journal(source: Path, volume: Path, moves: list[str]) -> dict[str, Any]:
    """A staging's journal as the previous version of the init wrote it (format 1, literal JSON,
    not this version's writer): a copy of `source` killed while staging, its target the volume's
    root. Written into the staging; returned."""
    opened = os.stat(source)
    journal = {
        "version": 1,
        "state": "staging",
        "strategy": "copy",
        "source": str(source),
        "source_id": [opened.st_dev, opened.st_ino],
        "source_mount": False,
        "aside": f"{source}.migrated-20260101T000000Z",
        "target": str(volume),
        "started": "2026-01-01T00:00:00.000Z",
        "moves": [[f"items/{index}", name] for index, name in enumerate(moves)],
    }
    staging_of(volume).mkdir(parents=True, exist_ok=True)
    (staging_of(volume) / "journal.json").write_text(json.dumps(journal, indent=2) + "\n")
    return journal


def asides(source: Path) -> list[Path]:
    return sorted(source.parent.glob(source.name + ".migrated-*"))


def events(result: Any) -> list[str]:
    return [warning["event"] for warning in result.warnings]


# -- the driver -----------------------------------------------------------------------------------


@dataclass
class DriverResult:
    returncode: int
    result: dict[str, Any] | None
    stderr: str


def driver_command(plan: MigrationPlan, prefix: tuple[str, ...] = ()) -> list[str]:
    return [*prefix, sys.executable, str(DRIVER), plan_to_json(plan)]


def driver_env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}


def run_driver(plan: MigrationPlan, prefix: tuple[str, ...] = ()) -> DriverResult:
    """The migration in a process of its own (under `prefix`, e.g. setpriv dropping capabilities)."""
    completed = subprocess.run(
        driver_command(plan, prefix), env=driver_env(), capture_output=True, text=True, timeout=120
    )
    lines = completed.stdout.splitlines()
    result = json.loads(lines[-1]) if len(lines) > 1 else None
    return DriverResult(completed.returncode, result, completed.stderr)
