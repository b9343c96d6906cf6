"""End-to-end fixtures: the real image, the real gateway, a real Docker engine, through compose.

Every scenario runs the stack from `compose.yml` + `compose.test.yml` (an internal network, and a
resolv.conf at 127.0.0.1 that fails every lookup at once: nothing leaves the machine), plus override
files a test writes for itself (JSON, which YAML parsers read as YAML). Each stack gets its own
compose project and its own volume names; `container_name: moltbot` is fixed by compose.yml, so the
scenarios run one after the other and every stack is torn down (`down -v`) by its finalizer.

The gateway is reached at the container's address on the internal network (ports are not published
there), never through a proxy.

Without a usable engine (no docker CLI, no daemon, no compose) the tests are skipped, unless
MOLTBOT_E2E=required (CI), where they fail instead. Each scenario's `docker logs` is saved under
MOLTBOT_E2E_LOGS (default /tmp/moltbot-e2e-logs) for the post-mortem.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import http.client
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("MOLTBOT_IMAGE", "moltbot:local")
CONTAINER = "moltbot"  # fixed by compose.yml
SERVICE = "moltbot-gateway"
PORT = 18789
STATE_DIR = "/var/lib/moltbot"
WORKSPACE_DIR = "/home/node/clawd"
TOKEN_FILE = f"{STATE_DIR}/.moltbot-init/gateway-token"
PROJECT_PREFIX = "mbe2e"
NODE_UID = NODE_GID = 1000
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LOG_DIR = Path(os.environ.get("MOLTBOT_E2E_LOGS", "/tmp/moltbot-e2e-logs"))
# The gateway needs 8-20 s to its first answer here; a loaded 2-core machine doubles that.
HEALTHY_TIMEOUT_S = float(os.environ.get("MOLTBOT_E2E_HEALTHY_TIMEOUT", "120"))


# -- the engine ------------------------------------------------------------------------------------


def _run(argv: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs
    )


def _compose_command() -> list[str] | None:
    """`docker compose` (v2) when the CLI has it, else Debian's `docker-compose` (1.29)."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        if _run(["docker", "compose", "version"], timeout=30).returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _engine_problem() -> str | None:
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        info = _run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        return f"the Docker engine does not answer: {info.stderr.strip()[-300:]}"
    if _compose_command() is None:
        return "neither `docker compose` nor `docker-compose` is installed"
    return None


@dataclass(frozen=True)
class Engine:
    compose: tuple[str, ...]
    image: str


@pytest.fixture(scope="session")
def engine() -> Engine:
    """A Docker engine with compose, and the image built (once per session, incrementally)."""
    problem = _engine_problem()
    if problem is not None:
        if os.environ.get("MOLTBOT_E2E") == "required":
            pytest.fail(f"MOLTBOT_E2E=required but Docker cannot run: {problem}", pytrace=False)
        pytest.skip(f"Docker cannot run: {problem}")
    compose = _compose_command()
    assert compose is not None
    # Idempotent: base images are reused and the layer cache makes an unchanged rebuild take seconds.
    # The host's CA bundle lets npm and pip inside the build trust a TLS proxy, as on CI machines.
    argv = [str(REPO / "scripts" / "build-image"), "--tag", IMAGE]
    if os.path.exists(HOST_CA_BUNDLE):
        argv.insert(1, "--host-ca")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    build_log = LOG_DIR / "build-image.log"
    with open(build_log, "w", encoding="utf-8") as out:
        built = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=3600, cwd=REPO
        )
    if built.returncode != 0:
        tail = "".join(build_log.read_text(encoding="utf-8", errors="replace").splitlines(True)[-40:])
        pytest.fail(f"{' '.join(argv)} failed ({built.returncode}); see {build_log}:\n{tail}", pytrace=False)
    return Engine(tuple(compose), IMAGE)


def docker(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    completed = _run(["docker", *args], timeout=timeout)
    if check and completed.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}"
        )
    return completed


def throwaway(engine: Engine, script: str, *mounts: str, user: str = "0:0") -> str:
    """Run `sh -c script` once in a container of the image (no network), e.g. to seed a volume."""
    argv = ["run", "--rm", "--network", "none", "--user", user, "--entrypoint", "sh"]
    for mount in mounts:
        argv += ["-v", mount]
    return docker(*argv, engine.image, "-c", script, check=True).stdout


# -- times and lines -------------------------------------------------------------------------------

_FRACTION = re.compile(r"\.(\d+)")


def parse_time(text: str) -> float:
    """An RFC 3339 time as Docker or the init writes it (any number of fraction digits) -> epoch."""
    text = text.strip().replace("Z", "+00:00")
    text = _FRACTION.sub(lambda match: "." + (match.group(1) + "000000")[:6], text, count=1)
    return dt.datetime.fromisoformat(text).timestamp()


@dataclass(frozen=True)
class LogLine:
    at: float  # when Docker received it
    stream: str  # stdout or stderr
    text: str

    def json(self) -> dict[str, Any] | None:
        if not self.text.startswith("{"):
            return None
        try:
            value = json.loads(self.text)
        except ValueError:
            return None
        return value if isinstance(value, dict) and "event" in value and "logger" in value else None


def manifest(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything about a host tree that must not change: type, mode, owner, size, content, mtime."""
    entries: dict[str, tuple[Any, ...]] = {}
    for path in [root, *sorted(root.rglob("*"))]:
        info = path.lstat()
        relative = str(path.relative_to(root))
        kind = stat.S_IFMT(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            content: str | None = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            content = None
        entries[relative] = (
            kind,
            stat.S_IMODE(info.st_mode),
            info.st_uid,
            info.st_gid,
            info.st_size if not stat.S_ISDIR(info.st_mode) else None,
            info.st_mtime_ns if not stat.S_ISDIR(info.st_mode) else None,
            content,
            info.st_ino,
        )
    return entries


# -- the stack -------------------------------------------------------------------------------------


@dataclass
class Stack:
    """One compose project: compose.yml + compose.test.yml + this test's overrides."""

    engine: Engine
    project: str
    workdir: Path
    overrides: list[Path] = field(default_factory=list)

    @property
    def data_volume(self) -> str:
        return f"{self.project}_data"

    @property
    def workspace_volume(self) -> str:
        return f"{self.project}_workspace"

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    # -- compose ---------------------------------------------------------------------------------
    def override(self, service: dict[str, Any]) -> Path:
        """Add an override file for the gateway's service (written as JSON, valid YAML)."""
        path = self.workdir / f"override-{len(self.overrides)}.yml"
        path.write_text(json.dumps({"services": {SERVICE: service}}, indent=2) + "\n", encoding="utf-8")
        self.overrides.append(path)
        return path

    def compose(
        self, *args: str, timeout: float = 180, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        files = [REPO / "compose.yml", REPO / "compose.test.yml", *self.overrides]
        argv = [*self.engine.compose, "--project-name", self.project]
        for path in files:
            argv += ["--file", str(path)]
        env = {
            **os.environ,
            "MOLTBOT_DATA_VOLUME": self.data_volume,
            "MOLTBOT_WORKSPACE_VOLUME": self.workspace_volume,
        }
        completed = _run([*argv, *args], timeout=timeout, cwd=REPO, env=env)
        if check and completed.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv[:1])} {' '.join(args)} exited {completed.returncode}:\n"
                f"{completed.stdout}\n{completed.stderr}"
            )
        return completed

    def up(self) -> float:
        """`up -d` (never a build: the session built the image); returns when it was asked."""
        asked = time.time()
        self.compose("up", "-d", "--no-build")
        return asked

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "15", check=False)
        # Volumes seeded before `up` were not created by compose, which may leave them.
        docker("volume", "rm", "-f", self.data_volume, self.workspace_volume)

    # -- the container ---------------------------------------------------------------------------
    def inspect(self) -> dict[str, Any]:
        completed = docker("inspect", CONTAINER, check=True)
        return json.loads(completed.stdout)[0]

    def state(self) -> dict[str, Any]:
        return self.inspect()["State"]

    def health(self) -> dict[str, Any]:
        return self.state().get("Health") or {}

    def ip(self) -> str:
        networks = self.inspect()["NetworkSettings"]["Networks"]
        address = networks[self.network]["IPAddress"]
        assert address, f"no address on {self.network}: {networks}"
        return address

    def exec(
        self, *args: str, user: str | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        argv = ["exec", *(["--user", user] if user else []), CONTAINER, *args]
        return docker(*argv, timeout=timeout)

    def logs(self) -> list[LogLine]:
        """`docker logs -t`, both streams, in the order Docker received the lines."""
        completed = docker("logs", "--timestamps", CONTAINER, check=True, timeout=60)
        lines = []
        for stream, text in (("stdout", completed.stdout), ("stderr", completed.stderr)):
            for raw in text.splitlines():
                stamp, _, rest = raw.partition(" ")
                with contextlib.suppress(ValueError):
                    lines.append(LogLine(parse_time(stamp), stream, rest))
        lines.sort(key=lambda line: line.at)
        return lines

    def lines(self) -> list[dict[str, Any]]:
        """The init's own lines (JSON objects with `event` and `logger`), in order."""
        return [value for line in self.logs() if (value := line.json()) is not None]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def save_logs(self, name: str) -> Path:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        path = LOG_DIR / f"{name}.log"
        completed = docker("logs", "--timestamps", CONTAINER, timeout=60)
        health = ""
        with contextlib.suppress(Exception):
            health = json.dumps(self.health(), indent=2)
        path.write_text(
            completed.stdout + completed.stderr + "\n--- health ---\n" + health + "\n", encoding="utf-8"
        )
        return path

    def diagnostics(self) -> str:
        try:
            tail = self.logs()[-40:]
            health = self.health()
        except Exception as error:  # the container may be gone
            return f"(no diagnostics: {error})"
        probes = [
            f"  {probe.get('Start', '')[:23]} exit {probe.get('ExitCode')}: {probe.get('Output', '').strip()}"
            for probe in health.get("Log", [])
        ]
        return (
            f"health: {health.get('Status')}\n"
            + "\n".join(probes)
            + "\nlast lines:\n"
            + "\n".join(f"  {line.stream}: {line.text[:400]}" for line in tail)
        )

    # -- waiting ---------------------------------------------------------------------------------
    def wait_for(self, what: str, condition: Callable[[], Any], timeout: float, interval: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{self.diagnostics()}")
            time.sleep(interval)

    def wait_healthy(self, since: float | None = None, timeout: float = HEALTHY_TIMEOUT_S) -> float:
        """Wait until Docker says healthy (and, with `since`, a probe started after `since` passed).

        Returns when the deciding probe ended (epoch)."""

        def healthy() -> float | None:
            health = self.health()
            if health.get("Status") != "healthy":
                return None
            passed = [
                parse_time(probe["End"])
                for probe in health.get("Log", [])
                if probe.get("ExitCode") == 0 and (since is None or parse_time(probe["Start"]) > since)
            ]
            return min(passed) if passed else None

        return self.wait_for("the container to be healthy", healthy, timeout)

    def wait_event(self, name: str, count: int = 1, timeout: float = 60) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]] | None:
            found = self.events(name)
            return found if len(found) >= count else None

        return self.wait_for(f"{count} `{name}` line(s)", enough, timeout)

    # -- the gateway -----------------------------------------------------------------------------
    def http_get(self, path: str, timeout: float = 5) -> tuple[int, str]:
        """GET at the container's internal address, directly (http.client never uses a proxy)."""
        connection = http.client.HTTPConnection(self.ip(), PORT, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            connection.close()

    def volume_files(self, *options: str) -> list[str]:
        """`find` in both volumes (inside the container, -xdev) with extra tests, e.g. `-uid 0`."""
        completed = self.exec("find", STATE_DIR, WORKSPACE_DIR, "-xdev", *options, "-printf", "%U:%G %m %p\n")
        assert completed.returncode == 0, completed.stderr
        return completed.stdout.splitlines()


class ExitWatch:
    """Notes when a process of a container exits, seen from the host's /proc (a local engine).

    A process that exited is a zombie (state Z) until its parent reaps it, then gone: the first of
    the two is its exit, whatever its parent's reaping adds. Polled every 2 ms in a thread."""

    def __init__(self, host_pid: int) -> None:
        self.host_pid = host_pid
        self.exited_at: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _state(self) -> str:
        try:
            with open(f"/proc/{self.host_pid}/stat", encoding="ascii", errors="replace") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return "gone"

    def _watch(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self._state() in ("Z", "X", "gone"):
                self.exited_at = time.time()
                return
            time.sleep(0.002)

    def wait(self, timeout: float = 30) -> float | None:
        self._thread.join(timeout)
        return self.exited_at


def host_pid(ns_pid: int) -> int | None:
    """The host's pid of the process `ns_pid` of the `moltbot` container, when this host runs it."""
    init = int(docker("inspect", "--format", "{{.State.Pid}}", CONTAINER, check=True).stdout.strip() or 0)
    try:
        namespace = os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return None  # a remote engine, or no access to its /proc
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != namespace:
                continue
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as handle:
                nspid = next(line for line in handle if line.startswith("NSpid:")).split()
        except (OSError, StopIteration):
            continue
        if int(nspid[-1]) == ns_pid:
            return int(entry)
    return None


def supervisord_log() -> list[tuple[float, str]]:
    """supervisord's own log from the run dir (also from a stopped container): (UTC epoch, text)."""
    completed = subprocess.run(
        ["docker", "cp", f"{CONTAINER}:/run/moltbot/supervisord.log", "-"],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    if completed.returncode != 0:
        return []
    with tarfile.open(fileobj=io.BytesIO(completed.stdout)) as archive:
        member = archive.next()
        handle = archive.extractfile(member) if member else None
        text = handle.read().decode("utf-8", "replace") if handle else ""
    entries = []
    for line in text.splitlines():
        match = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) (.*)", line)
        if match:
            moment = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
            entries.append((moment.timestamp() + int(match.group(2)) / 1000, match.group(3)))
    return entries


def _container_project() -> str | None:
    """The compose project of an existing `moltbot` container ('' for a container not from compose)."""
    completed = docker(
        "inspect", "--format", '{{index .Config.Labels "com.docker.compose.project"}}', CONTAINER
    )
    if completed.returncode != 0:
        return None
    return completed.stdout.strip()


def _free_the_name() -> None:
    """A `moltbot` container left by an interrupted e2e run is removed; anyone else's never is."""
    project = _container_project()
    if project is None:
        return
    if not project.startswith(PROJECT_PREFIX):
        reason = (
            f"a container named {CONTAINER!r} exists (compose project {project or 'none'!r}): the e2e "
            "tests need that name (compose.yml fixes it) and never remove a container they did not make"
        )
        if os.environ.get("MOLTBOT_E2E") == "required":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    docker("rm", "--force", "--volumes", CONTAINER, timeout=60)
    docker("network", "rm", f"{project}_default")
    docker("volume", "rm", "-f", f"{project}_data", f"{project}_workspace")


@pytest.fixture
def stack(engine: Engine, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    _free_the_name()
    project = f"{PROJECT_PREFIX}{uuid.uuid4().hex[:10]}"
    created = Stack(engine, project, tmp_path)
    # compose.yml names moltbot:local; the scenarios run the image this session built.
    created.override({"image": engine.image})
    try:
        yield created
    finally:
        with contextlib.suppress(Exception):
            if _container_project() == project:
                created.save_logs(request.node.name)
        created.down()


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A world-readable scratch dir under /tmp, for bind mounts (pytest's tmp_path is 0700)."""
    path = Path(f"/tmp/{PROJECT_PREFIX}-host-{uuid.uuid4().hex[:10]}")
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
