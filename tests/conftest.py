"""Shared fixtures: run the init for real, as PID 1 of a fresh PID namespace, and read its lines.

The init drops privileges, and the processes it starts afterwards (supervisord, the crash guard,
stand-in gateways) are Python too: they must be able to read the interpreter and the code as the
target user. A Python under /root (pyenv, mode 0700) cannot be, so the tests run the init with
INIT_PYTHON (default: the venv that scripts/test and .ci/run make in /opt) on a world-readable copy
of the sources.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV_PYTHON = "/opt/moltbot-init-venv/bin/python"
TEST_USER = "mbtest"
# The startup report's phases, in order, of a boot started as root (the image's normal start).
ROOT_BOOT_PHASES = ("config", "prepare", "ownership", "migration", "privileges", "upgrade", "credentials")
TEST_GROUP_EXTRA = "mbextra"


def pytest_configure(config: pytest.Config) -> None:
    """Start every init these tests run with the signal dispositions a terminal gives: a suite run
    under `nohup` or as a shell's background job ignores SIGHUP, SIGINT and SIGQUIT, and an ignored
    signal passes to each process started (the init keeps them ignored for its child, on purpose)."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGHUP, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)


def init_python() -> str:
    explicit = os.environ.get("INIT_PYTHON")
    if explicit:
        return explicit
    return DEFAULT_VENV_PYTHON if os.path.exists(DEFAULT_VENV_PYTHON) else sys.executable


def world_readable_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="session")
def init_sources() -> Iterator[Path]:
    """A copy of the packages (and the stand-in gateways) that any user can read."""
    root = world_readable_dir("init-src-")
    for package in ("entrypoint", "moltbot", "tests/standins"):
        if (REPO / package).exists():
            shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    for path in root.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def test_user() -> pwd.struct_passwd:
    """A real unprivileged user with one supplementary group, created once (root is needed)."""
    if os.geteuid() != 0:
        pytest.skip("creating a test user needs root")
    try:
        grp.getgrnam(TEST_GROUP_EXTRA)
    except KeyError:
        subprocess.run(["groupadd", "--system", TEST_GROUP_EXTRA], check=True)
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--create-home", "-G", TEST_GROUP_EXTRA, TEST_USER],
            check=True,
        )
        return pwd.getpwnam(TEST_USER)


@pytest.fixture
def box() -> Iterator[Path]:
    """A scratch directory every user can traverse (pytest's own tmp_path is 0700 for root)."""
    path = world_readable_dir("init-box-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class InitResult:
    returncode: int
    stdout: str
    stderr: str
    lines: list[dict] = field(default_factory=list)

    def events(self, name: str) -> list[dict]:
        return [line for line in self.lines if line.get("event") == name]


def parse_lines(stderr: str) -> list[dict]:
    """Every line the init writes must be one JSON object: fail loudly on anything else."""
    parsed = []
    for raw in stderr.splitlines():
        if raw.strip():
            try:
                parsed.append(json.loads(raw))
            except ValueError:
                raise AssertionError(f"not a JSON line: {raw!r}") from None
    return parsed


def namespace_init_pid(unshare_pid: int, timeout: float = 10) -> int:
    """The init's pid as seen from here: the child that `unshare --fork` made."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            children = Path(f"/proc/{unshare_pid}/task/{unshare_pid}/children").read_text().split()
        except FileNotFoundError:
            children = []
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise AssertionError("the init never started")


def kill_namespace(process: subprocess.Popen[str]) -> None:
    """SIGKILL the namespace's PID 1 (the kernel then kills everything in it), then `unshare`.

    `unshare --kill-child` is not enough: the kernel clears a parent-death signal when the child
    changes its uid, which the init does when it drops privileges."""
    try:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    except OSError:
        children = []
    for child in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(child), signal.SIGKILL)
    process.kill()
    process.communicate()


@dataclass
class InitRunner:
    python: str
    sources: Path
    box: Path

    def env(self, **overrides: str) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            "PYTHONPATH": str(self.sources),
            "PYTHONDONTWRITEBYTECODE": "1",
            "MOLTBOT_STATE_DIR": str(self.box / "state"),
            "MOLTBOT_WORKSPACE_DIR": str(self.box / "workspace"),
            "MOLTBOT_RUN_DIR": str(self.box / "run"),
            "MOLTBOT_LEGACY_DIRS": str(self.box / "legacy"),
            "MOLTBOT_USER": "root",
        }
        env.update(overrides)
        return env

    def command(self, *args: str, pid1: bool = True) -> list[str]:
        init = [self.python, "-m", "entrypoint", *args]
        # --kill-child: if the test kills unshare, the namespace's PID 1 (and so all) goes too.
        return ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", *init] if pid1 else init

    def popen(self, *args: str, pid1: bool = True, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args, pid1=pid1),
            env=self.env(**env),
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            # The program's own output may be any bytes: kept as they are (a test that checks bytes
            # gets them back with .encode("utf-8", "surrogateescape")).
            text=True,
            errors="surrogateescape",
        )

    def tool(
        self, *args: str, under: Sequence[str] = (), pid1: bool = False, timeout: float = 60, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """The init as a tool or a one-off command whose output the test reads as it is (`run`
        parses a boot's lines); `under` goes in front of it: setpriv, a shell that ignores signals,
        a namespace of the test's own."""
        return subprocess.run(
            [*under, *self.command(*args, pid1=pid1)],
            env=self.env(**env),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def run(self, *args: str, pid1: bool = True, timeout: float = 60, **env: str) -> InitResult:
        process = self.popen(*args, pid1=pid1, **env)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_namespace(process)
            raise
        return InitResult(process.returncode, stdout, stderr, parse_lines(stderr))


@pytest.fixture
def init(init_sources: Path, box: Path) -> InitRunner:
    return InitRunner(init_python(), init_sources, box)
