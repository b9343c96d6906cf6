"""deploy/podman/moltbot-rootless.container, as far as podman 4.3 here runs it: the podman command
line that a real Quadlet generator makes of it (tests/test_quadlet.py has it) run by an unprivileged
user of its own, rootless, on that user's image store and directories.

What podman 4.3 cannot do here, and so what this changes of the generated command: there is no
systemd, so no `--cgroups=split` (cgroupfs) and no service manager to notify (`--sdnotify=ignore`;
tests/e2e/test_podman.py covers READY=1 rootful); `--network none` instead of publishing the port
(nothing leaves the machine); `%h` and `%t` expanded as systemd would for that user. Everything else
is the Quadlet's: keep-id to the image's node, no capability, no privilege escalation, a read-only
root filesystem, the user's own directories bind-mounted with `:Z`.

Run by pytest, as root (it makes the user, and gives it the session's image with `podman save`),
after scripts/ci-docker-setup and scripts/ci-podman-setup.
"""

from __future__ import annotations

import pwd
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import podman_harness as pm
from tests.e2e.harness import HEALTHY_TIMEOUT_S, run
from tests.test_quadlet import generate, podman_run

pytestmark = pytest.mark.e2e

USER = "mbrootless"
# Rootless podman's native overlay (kernel >= 5.13): its default here would be vfs, a full copy of
# every layer of a 900 MB image.
STORAGE_CONF = '[storage]\ndriver = "overlay"\n'


def as_user(command: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`command` as the rootless user, in a login environment of its own (its HOME, its runtime dir)."""
    return run(["runuser", "-l", USER, "-c", shlex.join(command)], timeout=timeout)


@pytest.fixture(scope="session")
def rootless_image(podman_image: str) -> str:
    """The user, with subordinate ids for its namespace, and the session's image in its own store
    (copied once per session: skipped when it holds the same image)."""
    try:
        pwd.getpwnam(USER)
    except KeyError:
        run(["useradd", "--create-home", "--shell", "/bin/sh", USER], timeout=60).check_returncode()
    for table in ("/etc/subuid", "/etc/subgid"):
        if not any(line.startswith(f"{USER}:") for line in Path(table).read_text().splitlines()):
            with open(table, "a", encoding="ascii") as handle:
                handle.write(f"{USER}:300000:65536\n")
    home = Path(pwd.getpwnam(USER).pw_dir)
    conf = home / ".config" / "containers" / "storage.conf"
    if not conf.exists():
        as_user(["mkdir", "-p", str(conf.parent)]).check_returncode()
        as_user(["sh", "-c", f"printf '%s' {shlex.quote(STORAGE_CONF)} > {conf}"]).check_returncode()
    wanted = pm.podman("image", "inspect", "--format", "{{.Id}}", podman_image, check=True).stdout.strip()
    held = as_user(["podman", "image", "inspect", "--format", "{{.Id}}", podman_image]).stdout.strip()
    if held != wanted:
        archive = Path(f"/tmp/{pm.unique()}.tar")
        try:
            pm.podman("save", "--quiet", "-o", str(archive), podman_image, timeout=900, check=True)
            archive.chmod(0o644)
            loaded = as_user(["podman", "load", "--quiet", "-i", str(archive)], timeout=900)
            assert loaded.returncode == 0, loaded.stderr
        finally:
            archive.unlink(missing_ok=True)
    return podman_image


@pytest.fixture
def directories() -> Iterator[tuple[Path, str]]:
    """The Quadlet's two directories under the user's home (made as the user, as its comment says),
    and the name of the test's container; all removed at the end."""
    name = pm.unique()
    home = Path(pwd.getpwnam(USER).pw_dir)
    data = home / ".local" / "share" / name
    as_user(["mkdir", "-p", str(data / "state"), str(data / "workspace")]).check_returncode()
    try:
        yield data, name
    finally:
        as_user(["podman", "rm", "--force", "--ignore", "--time", "15", name], timeout=120)
        # What the container wrote is the user's (keep-id): the user can remove it.
        as_user(["podman", "unshare", "rm", "-rf", str(data)], timeout=120)


def test_the_rootless_quadlet_runs_the_gateway_as_node_on_the_user_s_own_files(
    rootless_image: str, directories: tuple[Path, str], tmp_path: Path
) -> None:
    data, name = directories
    given, _ = podman_run(generate("moltbot-rootless.container", tmp_path, user=True))
    user = pwd.getpwnam(USER)
    argv = ["podman", "run"]
    for option, values in given.items():
        if option in ("--cgroups", "--publish", "--sdnotify", "--cidfile", "--name"):
            continue
        for value in values:
            value = value.replace("%h/.local/share/moltbot", str(data))
            argv += [option, value] if value else [option]
    argv += ["--name", name, "--sdnotify=ignore", "--network", "none", rootless_image]
    started = as_user(argv)
    assert started.returncode == 0, started.stderr

    deadline, said = time.monotonic() + HEALTHY_TIMEOUT_S, None
    while time.monotonic() < deadline:
        said = as_user(["podman", "exec", name, pm.INIT, "health"], timeout=30)
        if said.returncode == 0:
            break
        time.sleep(1)
    assert said is not None and said.returncode == 0, (
        said.stdout if said else "",
        as_user(["podman", "logs", name]).stderr[-3000:],
    )

    status = as_user(["podman", "exec", name, "cat", "/proc/1/status"]).stdout
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    assert fields["Uid"].split() == ["1000"] * 4  # keep-id: the user is the image's node inside
    assert (int(fields["CapEff"], 16), fields["NoNewPrivs"].strip()) == (0, "1")
    # Nothing to repair or drop: the non-root path, and nothing it could not write.
    logs = as_user(["podman", "logs", name]).stderr
    assert '"started_as_root": false' in logs and '"unwritable": []' in logs
    # On the host, what the gateway wrote is the user's own.
    token = data / "state" / ".moltbot-init" / "gateway-token"
    assert token.stat().st_uid == user.pw_uid
    assert {path.stat().st_uid for path in (data / "state").iterdir()} == {user.pw_uid}

    stopped = as_user(["podman", "stop", "--time", "60", name], timeout=120)
    assert stopped.returncode == 0, stopped.stderr
