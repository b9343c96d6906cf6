"""The podman side of the end-to-end tests (`test_kubernetes.py`, `test_podman.py`): the engine,
the session's image copied from the local Docker engine, what the tests ask of a container, and
how systemd reads deploy/podman/moltbot.service (also for `tests/test_manifests.py`).

Used by pytest, as root, after `scripts/ci-podman-setup` (podman 4.3 from Debian, its
containers.conf) and `scripts/ci-docker-setup` (the engine the image is built in). Nothing leaves
the machine: every pod and container runs with `--network none` (loopback only; the gateway's
lookups fail at once), and the probes run inside them through `podman exec`. Every name a test
creates starts with PREFIX and a random part, so that tests never collide with each other or with
anybody's own containers; each test removes what it created. The standard library only, and the
init's own list of the capabilities its root steps need.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from entrypoint.boot.preflight import CAPABILITIES, NEEDED_BY_ROOT_STEPS
from tests.e2e.harness import HEALTHY_TIMEOUT_S, LogLine, docker, parse_time, run

PREFIX = "mbpod"
INIT = "/usr/local/bin/moltbot-init"
# The capabilities the init's root steps need (its preflight's list), as `--cap-add` and Kubernetes
# spell them, and as the bounding set of a container that holds them alone (/proc's CapBnd).
ROOT_STEP_CAPABILITIES = frozenset(name.removeprefix("CAP_") for name in NEEDED_BY_ROOT_STEPS)
ROOT_STEP_BOUNDING_SET = sum(1 << CAPABILITIES[name] for name in NEEDED_BY_ROOT_STEPS)
# Where `podman logs` of each scenario is saved for the post-mortem, beside the Docker ones.
LOG_DIR = Path(os.environ.get("MOLTBOT_E2E_LOGS", "/tmp/moltbot-e2e-logs"))


def podman(*args: str, timeout: float = 180, check: bool = False) -> subprocess.CompletedProcess[str]:
    """`podman ARGS`; with `check`, a failure is the test's, with what podman said."""
    completed = run(["podman", *args], timeout=timeout)
    said = f"podman {' '.join(args)} exited {completed.returncode}: {completed.stdout}{completed.stderr}"
    assert not check or completed.returncode == 0, said
    return completed


def problem() -> str | None:
    """Why podman cannot run containers here, or None."""
    if shutil.which("podman") is None:
        return "no podman on PATH"
    info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60)
    if info.returncode != 0:
        return f"`podman info` failed: {info.stderr.strip()[-300:]}"
    return None


def copy_from_docker(image: str) -> None:
    """Make `image` of the local Docker engine podman's too (a copy of ~1 GB: skipped when podman
    already holds the same image; the ID is the digest of the image's config in both)."""
    wanted = docker("image", "inspect", "--format", "{{.Id}}", image, check=True).stdout.strip()
    held = podman("image", "inspect", "--format", "{{.Id}}", image, timeout=60).stdout.strip()
    if held and wanted.endswith(held.removeprefix("sha256:")):
        return
    podman("pull", "--quiet", f"docker-daemon:{image}", timeout=900, check=True)


def unique() -> str:
    return f"{PREFIX}{uuid.uuid4().hex[:10]}"


def lines(container: str) -> list[LogLine]:
    """`podman logs -t`, both streams, in the order podman received the lines (each starts with
    its time)."""
    completed = podman("logs", "--timestamps", container, timeout=60)
    streams = {"stdout": completed.stdout, "stderr": completed.stderr}
    split = ((name, raw.partition(" ")) for name, text in streams.items() for raw in text.splitlines())
    found = [LogLine(parse_time(stamp), name, rest) for name, (stamp, _, rest) in split]
    return sorted(found, key=lambda line: line.at)


def events(container: str, name: str) -> list[dict[str, Any]]:
    """The init's own lines of one event, in order."""
    return [value for line in lines(container) if (value := line.json()) and value["event"] == name]


def save_logs(container: str, name: str) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    completed = podman("logs", "--timestamps", container, timeout=60)
    (LOG_DIR / f"{name}.log").write_text(completed.stdout + completed.stderr, encoding="utf-8")


def health(container: str, *probe: str) -> subprocess.CompletedProcess[str]:
    """`moltbot-init health [--startup | --ready]` inside the container, as an operator would."""
    return podman("exec", container, INIT, "health", *probe, timeout=30)


def wait_healthy(container: str, *probe: str, timeout: float = HEALTHY_TIMEOUT_S) -> str:
    """Poll the health check until it passes; its line. On a timeout, the reason and the log's tail."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = health(container, *probe)
        if last.returncode == 0:
            return last.stdout.strip()
        time.sleep(1)
    tail = "\n".join(f"  {line.stream}: {line.text[:300]}" for line in lines(container)[-30:])
    said = (last.stdout + last.stderr).strip() if last else ""
    raise AssertionError(f"{container} not healthy after {timeout:g}s: {said}\nlast lines:\n{tail}")


def process_status(container: str, pid: int = 1) -> dict[str, str]:
    """/proc/PID/status inside the container, as a dict (Uid, CapEff, NoNewPrivs, ...)."""
    completed = podman("exec", container, "cat", f"/proc/{pid}/status", timeout=30, check=True)
    return {
        key: value.strip()
        for key, _, value in (line.partition(":") for line in completed.stdout.splitlines())
    }


def mounts(container: str) -> dict[str, dict[str, Any]]:
    """The container's mounts, by destination."""
    [inspected] = json.loads(podman("inspect", container, check=True).stdout)
    return {mount["Destination"]: mount for mount in inspected["Mounts"]}


def remove(containers: tuple[str, ...] = (), volumes: tuple[str, ...] = ()) -> None:
    """Remove what a test created (any of it may be gone already)."""
    for container in containers:
        podman("rm", "--force", "--ignore", "--time", "15", container, timeout=120)
    for volume in volumes:
        podman("volume", "rm", "--force", volume, timeout=60)


# -- the systemd unit (deploy/podman/moltbot.service) ------------------------------------------------


class Unit(configparser.RawConfigParser):
    """A systemd unit file: keys keep their case, a repeated key its last value, and a line that
    ends with `\\` goes on on the next."""

    def __init__(self, path: Path) -> None:
        super().__init__(strict=False, interpolation=None)
        self.path = path
        self.read_string(path.read_text(encoding="utf-8").replace("\\\n", " "))

    def optionxform(self, optionstr: str) -> str:
        return optionstr  # systemd's keys are case-sensitive; configparser lowercases them

    def repeated(self, key: str) -> list[str]:
        """Every value of a key the file repeats (a Quadlet's Volume=)."""
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [line.split("=", 1)[1] for line in lines if line.startswith(f"{key}=")]

    def command(self, key: str, specifiers: dict[str, str]) -> list[str]:
        """A [Service] command line as systemd runs it: specifiers (%n, %N, %t) expanded, split."""
        text = re.sub(r"%(.)", lambda match: specifiers[match.group(1)], self["Service"][key])
        return shlex.split(text)


def flags(argv: list[str]) -> dict[str, list[str]]:
    """A podman command line's options, by name: `--flag value`, `--flag=value`, bare `--flag`."""
    found: dict[str, list[str]] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg.startswith("--") and "=" in arg:
            name, _, value = arg.partition("=")
        elif arg.startswith("-") and index + 1 < len(argv) and not argv[index + 1].startswith("-"):
            name, value = arg, argv[index + 1]
            index += 1
        else:
            name, value = arg, ""
        found.setdefault(name, []).append(value)
        index += 1
    return found
