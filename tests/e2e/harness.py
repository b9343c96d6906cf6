"""The Docker harness shared by the end-to-end tests (`tests/e2e`) and the container benchmark
(`bench/container`): the engine, compose stacks of the real image, their logs, and the host's view
of their processes.

Every stack runs `compose.yml` + `compose.test.yml` (an internal network, and a resolv.conf at
127.0.0.1 that fails every lookup at once: nothing leaves the machine) plus override files written
for it (JSON, which YAML parsers read as YAML). Each stack is its own compose project, with its own
volumes and its own container name (compose.yml's `moltbot` is overridden), so that stacks never
collide, whoever runs them. The gateway is reached at the container's address on the internal
network (ports are not published there), never through a proxy. Only the standard library is used.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SERVICE = "moltbot-gateway"
PORT = 18789
STATE_DIR = "/var/lib/moltbot"  # the state volume
GATEWAY_DIR = f"{STATE_DIR}/gateway"  # the gateway's state dir in it
HOME_DIR = f"{STATE_DIR}/home"  # the gateway's HOME in it
WORKSPACE_DIR = "/home/node/clawd"
RUN_DIR = "/run/moltbot"
TOKEN_FILE = f"{STATE_DIR}/.moltbot-init/gateway-token"
PROJECT_PREFIX = "mbe2e"
# compose.test.yml's resolv.conf: every lookup fails at once (Docker's DNS on an internal network
# takes ~10 s to fail one), for containers started without compose too.
TEST_RESOLV_CONF = REPO / "docker" / "test-resolv.conf"
NODE_UID = NODE_GID = 1000
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# The gateway needs 8-20 s to its first answer here; a loaded 2-core machine doubles that.
HEALTHY_TIMEOUT_S = float(os.environ.get("MOLTBOT_E2E_HEALTHY_TIMEOUT", "120"))
_FRACTION = re.compile(r"\.(\d+)")


# -- the engine ------------------------------------------------------------------------------------


def run(argv: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs
    )


def compose_command() -> list[str] | None:
    """`docker compose` (v2) when the CLI has it, else Debian's `docker-compose` (1.29)."""
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        if run(["docker", "compose", "version"], timeout=30).returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def engine_problem() -> str | None:
    """Why Docker cannot run here, or None."""
    if shutil.which("docker") is None:
        return "no docker CLI on PATH"
    try:
        info = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if info.returncode != 0:
        return f"the Docker engine does not answer: {info.stderr.strip()[-300:]}"
    if compose_command() is None:
        return "neither `docker compose` nor `docker-compose` is installed"
    return None


@dataclass(frozen=True)
class Engine:
    compose: tuple[str, ...]
    image: str


@dataclass(frozen=True)
class Gateway:
    """A gateway from npm and the Node it needs: each one is its own image of ours."""

    package: str
    node_version: str | None = None  # None: build-bases' default (Node 24)

    @property
    def name(self) -> str:
        return self.package.replace("@", "-")


# The gateways every end-to-end test of the upgrade path runs against.
OPENCLAW = Gateway("openclaw@2026.9.6")
GATEWAYS = (
    OPENCLAW,
    Gateway("openclaw@2026.1.29", "22.23.5"),
    Gateway("clawdbot@2026.1.24-3", "22.23.5"),
)


def build_image(tag: str, log_path: Path, gateway: Gateway = OPENCLAW) -> str | None:
    """`scripts/build-image` (incremental: bases and layers are reused); None, or why it failed.

    The host's CA bundle lets npm and pip inside the build trust a TLS proxy, as on CI machines."""
    argv = [str(REPO / "scripts" / "build-image"), "--tag", tag]
    if os.path.exists(HOST_CA_BUNDLE):
        argv.insert(1, "--host-ca")
    env = {**os.environ, "GATEWAY_PACKAGE": gateway.package}
    if gateway.node_version:
        env["NODE_VERSION"] = gateway.node_version
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as out:
        built = subprocess.run(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            timeout=3600,
            cwd=REPO,
            env=env,
        )
    if built.returncode == 0:
        return None
    tail = "".join(log_path.read_text(encoding="utf-8", errors="replace").splitlines(True)[-40:])
    return f"{' '.join(argv)} failed ({built.returncode}); see {log_path}:\n{tail}"


def docker(*args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
    completed = run(["docker", *args], timeout=timeout)
    if check and completed.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args)} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}"
        )
    return completed


def throwaway(image: str, script: str, *mounts: str, user: str = "0:0") -> str:
    """Run `sh -c script` once in a container of the image (no network), e.g. to seed a volume."""
    argv = ["run", "--rm", "--network", "none", "--user", user, "--entrypoint", "sh"]
    for mount in mounts:
        argv += ["-v", mount]
    return docker(*argv, image, "-c", script, check=True).stdout


# -- times and lines -------------------------------------------------------------------------------


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
        """The init's own line (a JSON object with `event` and `logger`), or None."""
        if not self.text.startswith("{"):
            return None
        try:
            value = json.loads(self.text)
        except ValueError:
            return None
        return value if isinstance(value, dict) and "event" in value and "logger" in value else None


def container_logs(container: str) -> list[LogLine]:
    """`docker logs -t`, both streams, in the order Docker received the lines."""
    completed = docker("logs", "--timestamps", container, check=True, timeout=60)
    lines = []
    for stream, text in (("stdout", completed.stdout), ("stderr", completed.stderr)):
        for raw in text.splitlines():
            stamp, _, rest = raw.partition(" ")
            with contextlib.suppress(ValueError):
                lines.append(LogLine(parse_time(stamp), stream, rest))
    lines.sort(key=lambda line: line.at)
    return lines


def write_legacy_state(root: Path, config: str, *, photo_kib: int, cron: bool = False) -> None:
    """A legacy state dir as a clawdbot user brings it, into the existing `root`: its config
    (`clawdbot.json`) and credentials at 0600, a photo, notes, a relative link, and, with `cron`,
    the job list that the gateway moves into its own store at start."""
    (root / "credentials").mkdir(mode=0o700)
    (root / "media" / "inbound").mkdir(parents=True)
    (root / "clawdbot.json").write_text(config)
    (root / "credentials" / "e2e.json").write_text('{"provider": "e2e", "refresh": "not-a-secret"}\n')
    (root / "media" / "inbound" / "photo.bin").write_bytes(bytes(range(256)) * 4 * photo_kib)
    (root / "NOTES.md").write_text("kept from the clawdbot days\n")
    (root / "latest-photo").symlink_to("media/inbound/photo.bin")
    if cron:
        (root / "cron").mkdir()
        (root / "cron" / "jobs.json").write_text('{"version":1,"jobs":[]}\n')
    for secret in ("clawdbot.json", "credentials/e2e.json"):
        (root / secret).chmod(0o600)


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


# -- the host's view of a container's processes ----------------------------------------------------


def namespace_pids(container: str) -> dict[int, int]:
    """Every process of `container` this host runs: {its pid in the container: its pid here}.

    Empty for a remote engine, or without access to the host's /proc."""
    init = int(docker("inspect", "--format", "{{.State.Pid}}", container, check=True).stdout.strip() or 0)
    try:
        namespace = os.readlink(f"/proc/{init}/ns/pid")
    except OSError:
        return {}
    found = {}
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
        found[int(nspid[-1])] = int(entry)
    return found


def host_pid(container: str, ns_pid: int) -> int | None:
    """The host's pid of the process `ns_pid` of `container`, when this host runs it."""
    return namespace_pids(container).get(ns_pid)


def http_get(address: str, path: str, timeout: float = 5) -> tuple[int, str]:
    """GET at a container's address, directly (http.client never uses a proxy)."""
    connection = http.client.HTTPConnection(address, PORT, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        connection.close()


def answers_healthz(address: str) -> bool:
    """The gateway's liveness probe answers with its own JSON (the Control UI answers any path 200)."""
    try:
        status, body = http_get(address, "/healthz", timeout=1)
        return status == 200 and json.loads(body).get("ok") is True
    except (OSError, http.client.HTTPException, ValueError, AttributeError):
        return False


class ExitWatch:
    """Notes when a process of a container exits, seen from the host's /proc (a local engine).

    A process that exited is a zombie (state Z) until its parent reaps it, then gone: the first of
    the two is its exit, whatever its parent's reaping adds. Polled every 2 ms in a thread."""

    def __init__(self, pid_on_host: int) -> None:
        self.pid_on_host = pid_on_host
        self.exited_at: float | None = None
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _state(self) -> str:
        try:
            with open(f"/proc/{self.pid_on_host}/stat", encoding="ascii", errors="replace") as handle:
                return handle.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return "gone"

    def _watch(self) -> None:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self._state() in ("Z", "X", "gone"):
                self.exited_at = time.time()
                return
            time.sleep(0.002)

    def wait(self, timeout: float = 30) -> float | None:
        self._thread.join(timeout)
        return self.exited_at


def supervisord_log(container: str) -> list[tuple[float, str]]:
    """supervisord's own log from the run dir (also from a stopped container): (UTC epoch, text)."""
    completed = subprocess.run(
        ["docker", "cp", f"{container}:{RUN_DIR}/supervisord.log", "-"],
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
        if match:  # the container's local time is UTC
            moment = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
            entries.append((moment.timestamp() + int(match.group(2)) / 1000, match.group(3)))
    return entries


def wait_until(
    what: str,
    condition: Callable[[], Any],
    timeout: float,
    interval: float = 0.5,
    explain: Callable[[], str] = lambda: "",
) -> Any:
    """Poll `condition` until it gives something true, and return that; AssertionError after
    `timeout` seconds, with what `explain` says."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}\n{explain()}")
        time.sleep(interval)


# -- the stack -------------------------------------------------------------------------------------


@dataclass
class Stack:
    """One compose project: compose.yml + compose.test.yml + its overrides; its own container name."""

    engine: Engine
    workdir: Path
    project: str = field(default_factory=lambda: f"{PROJECT_PREFIX}{uuid.uuid4().hex[:10]}")
    overrides: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        # compose.yml names moltbot:local and the container `moltbot`; a stack runs the image it
        # was given, under a name of its own.
        self.override({"image": self.engine.image, "container_name": self.project})

    @property
    def container(self) -> str:
        return self.project

    @property
    def data_volume(self) -> str:
        return f"{self.project}_data"

    @property
    def workspace_volume(self) -> str:
        return f"{self.project}_workspace"

    @property
    def backups_volume(self) -> str:
        return f"{self.project}_backups"

    @property
    def network(self) -> str:
        return f"{self.project}_default"

    # -- compose ---------------------------------------------------------------------------------
    def override(self, service: dict[str, Any]) -> Path:
        """Add an override file for the gateway's service (written as JSON, valid YAML)."""
        path = self.workdir / f"{self.project}-override-{len(self.overrides)}.yml"
        path.write_text(json.dumps({"services": {SERVICE: service}}, indent=2) + "\n", encoding="utf-8")
        self.overrides.append(path)
        return path

    def data_volume_on_tmpfs(self, size: str) -> None:
        """The state volume a tmpfs of `size` (`40m`): a small disk, as the volume's own driver
        makes it. Its name is given again: compose 1.29 replaces a volume's whole entry."""
        tmpfs = {"type": "tmpfs", "device": "tmpfs", "o": f"size={size}"}
        volume = {"moltbot_data": {"name": self.data_volume, "driver_opts": tmpfs}}
        path = self.workdir / f"{self.project}-volume.yml"
        path.write_text(json.dumps({"volumes": volume}, indent=2) + "\n", encoding="utf-8")
        self.overrides.append(path)

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
            "MOLTBOT_BACKUPS_VOLUME": self.backups_volume,  # compose.backup.yml's
        }
        completed = run([*argv, *args], timeout=timeout, cwd=REPO, env=env)
        if check and completed.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv[:1])} {' '.join(args)} exited {completed.returncode}:\n"
                f"{completed.stdout}\n{completed.stderr}"
            )
        return completed

    def up(self, *extra: str) -> float:
        """`up -d` (never a build: the image is built once per session); returns when it was asked."""
        asked = time.time()
        self.compose("up", "-d", "--no-build", *extra)
        return asked

    def down(self) -> None:
        self.compose("down", "--volumes", "--remove-orphans", "--timeout", "15", check=False)
        # Volumes seeded before `up` were not created by compose, which may leave them.
        docker("volume", "rm", "-f", self.data_volume, self.workspace_volume, self.backups_volume)

    # -- the container ---------------------------------------------------------------------------
    def inspect(self) -> dict[str, Any]:
        return json.loads(docker("inspect", self.container, check=True).stdout)[0]

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
        argv = ["exec", *(["--user", user] if user else []), self.container, *args]
        return docker(*argv, timeout=timeout)

    def logs(self) -> list[LogLine]:
        return container_logs(self.container)

    def lines(self) -> list[dict[str, Any]]:
        """The init's own lines (JSON objects with `event` and `logger`), in order."""
        return [value for line in self.logs() if (value := line.json()) is not None]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def gateway_output(self) -> list[str]:
        """The gateway's own lines (everything that is not one of the init's JSON lines)."""
        return [line.text for line in self.logs() if line.json() is None]

    def host_pid(self, ns_pid: int) -> int | None:
        return host_pid(self.container, ns_pid)

    def supervisord_log(self) -> list[tuple[float, str]]:
        return supervisord_log(self.container)

    def save_logs(self, directory: Path, name: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{name}.log"
        completed = docker("logs", "--timestamps", self.container, timeout=60)
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
        return wait_until(what, condition, timeout, interval, self.diagnostics)

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
        """GET at the container's internal address."""
        return http_get(self.ip(), path, timeout)

    def volume_files(self, *options: str) -> list[str]:
        """`find` in both volumes (inside the container, -xdev) with extra tests, e.g. `-uid 0`."""
        completed = self.exec("find", STATE_DIR, WORKSPACE_DIR, "-xdev", *options, "-printf", "%U:%G %m %p\n")
        assert completed.returncode == 0, completed.stderr
        return completed.stdout.splitlines()
