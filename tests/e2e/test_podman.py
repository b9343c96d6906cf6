"""deploy/podman/moltbot.service, run for real: its own command lines (ExecStartPre, ExecStart,
ExecStop, ExecStopPost), specifiers expanded as systemd would for a unit of the test's own name,
with a NOTIFY_SOCKET of the test's own standing in for systemd's.

Two changes to the unit's container, and only these: `--network none` instead of publishing the
port on the host's loopback (nothing leaves the machine, and no port collides with anybody's),
and the session's image. The gateway is asked through `podman exec moltbot-init health`.

podman 4.3's conmon relays to the service manager READY=1 and WATCHDOG=1 of what the container
sends, nothing else (STATUS= and STOPPING=1 are dropped: seen here with conmon 2.1.6). So the
first test checks what a systemd host gets through that relay, READY=1 only once the gateway's
/startupz says started; the second gives the init the socket itself, which is the only way to see
its STOPPING=1 on `podman stop`, against a stand-in gateway that answers its probes at once.

Run by pytest, as root (podman runs rootful, as the unit does), after scripts/ci-docker-setup and
scripts/ci-podman-setup; the session's image is built once and copied into podman once.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e import podman_harness as pm
from tests.e2e.harness import HEALTHY_TIMEOUT_S, REPO, RUN_DIR, run

pytestmark = pytest.mark.e2e

UNIT = pm.Unit(REPO / "deploy" / "podman" / "moltbot.service")
# A gateway that has started as soon as it listens: node, which the image has.
STAND_IN = (
    'node -e \'require("http").createServer((q, s) => { const b = JSON.stringify({ok: true, status: '
    'q.url === "/startupz" ? "started" : "live"}); s.writeHead(200, {"content-type": "application/json", '
    '"content-length": b.length}); s.end(b); }).listen(18789)\''
)


@dataclass
class Receiver:
    """A unix datagram socket bound by the test, as systemd's NOTIFY_SOCKET is; what arrives, when."""

    path: Path
    received: list[tuple[float, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(str(self.path))
        # The init sends as uid 1000 once it has dropped: it must be allowed to.
        self.path.chmod(0o777)
        self.socket.settimeout(0.2)
        self._open = True
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while self._open:
            try:
                data = self.socket.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append((time.time(), data.decode("utf-8", "replace")))

    def messages(self) -> list[str]:
        return [message for _, message in self.received]

    def first(self, message: str) -> float | None:
        return next((at for at, text in self.received if text == message), None)

    def close(self) -> None:
        self._open = False
        self._thread.join(5)
        self.socket.close()


@dataclass
class Service:
    """The unit as systemd would run it under the name `NAME.service`."""

    name: str
    runtime_dir: Path
    receiver: Receiver

    @property
    def specifiers(self) -> dict[str, str]:
        return {"n": f"{self.name}.service", "N": self.name, "t": str(self.runtime_dir), "%": "%"}

    def run(self, key: str, argv: list[str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run one of the unit's commands (or `argv`, made from it), with the unit's environment."""
        env = {
            **os.environ,
            "NOTIFY_SOCKET": str(self.receiver.path),
            "PODMAN_SYSTEMD_UNIT": self.specifiers["n"],
        }
        command = argv or UNIT.command(key, self.specifiers)
        return run(command, timeout=420, env=env)

    def start_command(self, image: str, *extra: str) -> list[str]:
        """ExecStart on no network and with the session's image, `extra` options before it."""
        argv = UNIT.command("ExecStart", self.specifiers)
        at = argv.index("--publish")
        del argv[at : at + 2]
        return [*argv[:-1], "--network", "none", *extra, image]

    def volumes(self) -> tuple[str, ...]:
        return (f"{self.name}_data", f"{self.name}_workspace")


@pytest.fixture
def service(podman_image: str, tmp_path: Path) -> Iterator[Service]:
    runtime_dir = tmp_path / "run"
    runtime_dir.mkdir()
    sockets = Path(f"/tmp/{pm.unique()}")  # world-traversable, and short enough for a socket path
    sockets.mkdir(mode=0o755)
    receiver = Receiver(sockets / "notify.sock")
    made = Service(pm.unique(), runtime_dir, receiver)
    try:
        yield made
    finally:
        if pm.podman("container", "exists", made.name).returncode == 0:
            pm.save_logs(made.name, f"podman-{made.name}")
        pm.remove((made.name,), made.volumes())
        receiver.close()
        receiver.path.unlink(missing_ok=True)
        sockets.rmdir()


def test_the_unit_starts_the_gateway_and_says_ready_only_once_it_has_started(
    service: Service, podman_image: str
) -> None:
    assert service.run("ExecStartPre").returncode == 0
    started = service.run("ExecStart", service.start_command(podman_image))
    assert started.returncode == 0, started.stderr
    # What a probe said, and when it was asked, until READY=1 arrives.
    polls: list[tuple[float, bool]] = []
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while service.receiver.first("READY=1") is None and time.monotonic() < deadline:
        asked = time.time()
        polls.append((asked, pm.health(service.name, "--startup").returncode == 0))
        time.sleep(0.5)
    ready = service.receiver.first("READY=1")
    assert ready is not None, f"no READY=1 within {HEALTHY_TIMEOUT_S:g}s: {service.receiver.messages()}"
    after = pm.health(service.name, "--startup")
    assert after.returncode == 0, after.stdout

    # podman says which process systemd should watch (conmon) before anything else.
    assert service.receiver.messages()[0].startswith("MAINPID="), service.receiver.messages()
    # The wait was real, and READY=1 never came while /startupz still said starting: every probe
    # asked after READY=1 passed.
    assert any(not passed for _, passed in polls), "the gateway had started before the first probe"
    assert all(passed for asked, passed in polls if asked > ready), polls

    # The unit's container: root for the boot's first steps only, then node with nothing left.
    [report] = pm.events(service.name, "startup_report")
    phases = {phase["name"]: phase for phase in report["phases"]}
    assert phases["config"]["figures"]["started_as_root"] is True and "ownership" in phases
    assert phases["privileges"]["figures"]["dropped"] is True
    status = pm.process_status(service.name)
    assert status["Uid"].split() == ["1000"] * 4 and status["NoNewPrivs"] == "1"
    assert (int(status["CapEff"], 16), int(status["CapBnd"], 16)) == (0, pm.ROOT_STEP_BOUNDING_SET)
    assert pm.podman("exec", service.name, "touch", "/app/written").returncode != 0
    assert pm.mounts(service.name)["/var/lib/moltbot"]["Name"] == service.volumes()[0]
    filesystem = pm.podman("exec", service.name, "stat", "-f", "-c", "%T", RUN_DIR, check=True)
    assert filesystem.stdout.strip() == "tmpfs"

    asked = time.monotonic()
    stopped = service.run("ExecStop")
    assert stopped.returncode == 0, stopped.stderr
    assert time.monotonic() - asked < 60  # an idle gateway stops in seconds, not the 340 s allowed
    assert service.run("ExecStopPost").returncode == 0
    assert pm.podman("container", "exists", service.name).returncode == 1  # --rm


def test_the_init_says_stopping_when_podman_stops_it(service: Service, podman_image: str) -> None:
    directory = service.receiver.path.parent
    inside = f"/run/notify-{service.name}"
    argv = service.start_command(
        podman_image,
        "--volume",
        f"{directory}:{inside}",
        "--env",
        f"NOTIFY_SOCKET={inside}/{service.receiver.path.name}",
        "--env",
        f"MOLTBOT_GATEWAY_COMMAND={STAND_IN}",
    )
    argv[argv.index("--sdnotify=container")] = "--sdnotify=ignore"  # the socket goes in as is
    assert service.run("ExecStartPre").returncode == 0
    started = service.run("ExecStart", argv)
    assert started.returncode == 0, started.stderr
    deadline = time.monotonic() + 60
    while service.receiver.first("READY=1") is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert service.receiver.first("READY=1") is not None, service.receiver.messages()

    assert service.run("ExecStop").returncode == 0
    deadline = time.monotonic() + 10
    while service.receiver.first("STOPPING=1") is None and time.monotonic() < deadline:
        time.sleep(0.1)
    messages = service.receiver.messages()
    assert messages[-1] == "STOPPING=1", messages
    assert messages.index("READY=1") < messages.index("STOPPING=1")
    assert any(message.startswith("STATUS=boot: ") for message in messages), messages
    assert service.run("ExecStopPost").returncode == 0
