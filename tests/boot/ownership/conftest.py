"""Fixtures for the `ownership` phase tests: real trees on the real disk, run as root.

`vol` is the volume to repair, `outside` a sibling directory the walk must never touch; both are
created root-owned. Phases that need a mount or fewer capabilities run in a child process
(`run_isolated`): in a private mount namespace (`unshare -m`), which the kernel tears down with
the process, so no mount can outlive a test, and/or under `setpriv` with capabilities removed.

Every test that runs the phase through `run_phase` or `run_isolated`, or takes `engine`, runs
once per engine (`engines.ENGINES`): as the init chooses, in the calling thread alone, in threads,
in worker processes. The phase's own `run` has no knob for that: each engine has its entry point.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from entrypoint.common.plans import OwnershipPlan, StopFlag, TargetUser
from entrypoint.common.report import PhaseResult

from .engines import ENGINES

REPO = Path(__file__).resolve().parents[3]
UID = GID = 4321  # a target that is neither root nor any user of the test machine
OTHER = 1234  # a third owner: neither root nor the target
TARGET = TargetUser("target", UID, GID, (GID,), "/nonexistent")

if os.geteuid() != 0:  # the phase only ever runs as root; there is nothing to test without it
    pytest.exit("tests/ownership must run as root", returncode=4)

# Runs the phase in a fresh interpreter: setup commands first (inside whatever namespace the
# wrapper made), then the phase with the engine named, then reports the result and the owners of
# the probed paths.
_RUNNER = """
import json, os, subprocess, sys
from dataclasses import asdict
args = json.loads(sys.argv[1])
sys.path.insert(0, args["repo"])
from entrypoint.common.plans import OwnershipPlan, StopFlag, TargetUser
from tests.boot.ownership.engines import ENGINES
for command in args["setup"]:
    subprocess.run(command, check=True)
plan = OwnershipPlan("auto", tuple(args["roots"]), args["uid"], args["gid"])
user = TargetUser("target", args["uid"], args["gid"], (args["gid"],), "/nonexistent")
result = ENGINES[args["engine"]](plan, user, StopFlag())
owners = {}
for path in args["probe"]:
    entry = os.stat(path, follow_symlinks=False)
    owners[path] = [entry.st_uid, entry.st_gid]
print(json.dumps({"result": asdict(result), "owners": owners}))
"""


def plan_for(*roots: Path | str, interval: float = 2.0) -> OwnershipPlan:
    return OwnershipPlan("auto", tuple(str(root) for root in roots), UID, GID, progress_interval_s=interval)


def owner(path: Path | str) -> tuple[int, int]:
    entry = os.stat(path, follow_symlinks=False)
    return entry.st_uid, entry.st_gid


def owners_below(root: Path) -> dict[str, tuple[int, int]]:
    """(uid, gid) of the root and of every entry below it, links themselves (never followed)."""
    found = {".": owner(root)}
    for directory, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(directory, name)
            found[str(path.relative_to(root))] = owner(path)
    return found


def no_child_left() -> bool:
    """No process forked by the phase is left, running or unreaped."""
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def assert_stopped_midway(root: Path, entries: int, result: PhaseResult, fds_before: int) -> None:
    """What a stop leaves of a walk of `root` (`entries` entries, all root-owned before): reported
    interrupted part way, every entry either old-owned or new-owned and each change counted, the
    root untouched (post-order: it would be last), every directory descriptor closed, no failure."""
    assert result.figures["interrupted"] is True
    assert 0 < result.figures["changed"] < entries
    found = owners_below(root)
    assert set(found.values()) <= {(0, 0), (UID, GID)}
    # Every change is counted, a worker process's too: its tally comes back whole after a halt.
    assert sum(1 for pair in found.values() if pair == (UID, GID)) == result.figures["changed"]
    assert owner(root) == (0, 0)
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert not [w for w in result.warnings if w["event"] == "ownership_failed"]


def make_files(directory: Path, count: int, *, uid: int = 0, gid: int = 0) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = directory / f"f{index:05d}"
        path.write_bytes(b"x")
        os.chown(path, uid, gid)
        paths.append(path)
    return paths


def make_tree(root: Path, dirs: int, files_per_dir: int) -> int:
    """A tree of `dirs` directories two levels deep, each with files; returns the entry count."""
    count = 1
    root.mkdir(parents=True, exist_ok=True)
    for index in range(dirs):
        directory = root / f"d{index % 16:02d}" / f"sub{index:05d}"
        if not directory.parent.exists():
            count += 1
        make_files(directory, files_per_dir)
        count += 1 + files_per_dir
    return count


@pytest.fixture
def area() -> Iterator[Path]:
    """A scratch directory on the real disk that the target user can reach (pytest's own tmp_path
    sits under a 0700 directory, which would make every root unwritable for the target)."""
    path = Path(tempfile.mkdtemp(prefix="ownership-test-", dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def vol(area: Path) -> Path:
    path = area / "vol"
    path.mkdir()
    return path


@pytest.fixture
def outside(area: Path) -> Path:
    """Root-owned files outside the volume, including a 0600 secret."""
    path = area / "outside"
    path.mkdir()
    (path / "secret").write_text("s3cret")
    os.chmod(path / "secret", 0o600)
    (path / "subdir").mkdir()
    (path / "subdir" / "file").write_text("x")
    return path


@pytest.fixture(params=list(ENGINES))
def engine(request: pytest.FixtureRequest) -> str:
    """The name of the engine this run of the test walks with: each test that takes it (directly
    or through `run_phase`, `run_isolated`) runs once per engine, as dumb-init's tests run once
    per mode. `@pytest.mark.parametrize("engine", [...], indirect=True)` picks some of them."""
    return request.param


@pytest.fixture
def run_phase(engine: str) -> Callable[..., PhaseResult]:
    """Run the phase on `roots` in this process, with the engine of this run of the test."""

    def call(*roots: Path | str, interval: float = 2.0, stop: StopFlag | None = None) -> PhaseResult:
        return ENGINES[engine](plan_for(*roots, interval=interval), TARGET, stop or StopFlag())

    return call


@pytest.fixture
def run_isolated(engine: str) -> Callable[..., dict[str, Any]]:
    """Run the phase in a child process; `wrapper` prefixes its command line (unshare, setpriv)."""

    def call(
        roots: list[Path | str],
        *,
        wrapper: list[str],
        setup: list[list[str]] | None = None,
        probe: list[Path | str] | None = None,
    ) -> dict[str, Any]:
        args = {
            "repo": str(REPO),
            "roots": [str(root) for root in roots],
            "uid": UID,
            "gid": GID,
            "setup": setup or [],
            "probe": [str(path) for path in probe or []],
            "engine": engine,
        }
        completed = subprocess.run(
            [*wrapper, sys.executable, "-c", _RUNNER, json.dumps(args)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stderr
        return json.loads(completed.stdout.splitlines()[-1])

    return call


@pytest.fixture
def warnings_of() -> Callable[[PhaseResult, str], list[dict[str, Any]]]:
    def call(result: PhaseResult, event: str) -> list[dict[str, Any]]:
        return [warning for warning in asdict(result)["warnings"] if warning["event"] == event]

    return call


MOUNT_NS = ["unshare", "--mount", "--propagation", "private"]


@pytest.fixture
def no_stray_mounts(area: Path) -> Iterator[None]:
    """The namespaced mounts die with their process: none is left in this namespace's table."""
    yield
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        assert str(area) not in mounts.read()


@pytest.fixture(scope="module")
def big_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """About 30k root-owned entries: a walk long enough to be watched and interrupted."""
    root = tmp_path_factory.mktemp("big") / "vol"
    return root, make_tree(root, dirs=300, files_per_dir=100)


@pytest.fixture
def fresh_big_tree(big_tree: tuple[Path, int]) -> tuple[Path, int]:
    subprocess.run(["chown", "-R", "0:0", str(big_tree[0])], check=True)
    return big_tree


class _Events(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.first_progress = threading.Event()
        # A stop flag to set at the first progress line, from the phase's own thread: a SIGTERM
        # without a signalling thread, which would keep the phase from forking workers.
        self.stop_at_first_progress: StopFlag | None = None
        self.stopped_at = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        if getattr(record, "event", None) == "progress" and not self.first_progress.is_set():
            self.first_progress.set()
            if self.stop_at_first_progress is not None:
                self.stopped_at = time.monotonic()
                self.stop_at_first_progress.set(15)


@pytest.fixture
def events() -> Iterator[_Events]:
    handler = _Events()
    logger = logging.getLogger("init.ownership")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
