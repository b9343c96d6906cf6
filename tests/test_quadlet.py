"""deploy/podman's two Quadlets through a real Quadlet generator (`quadlet -dryrun`): the rootful
one as a system unit, the rootless one as a user unit (`-user`, as ~/.config/containers/systemd).
Each must be accepted whole (an unknown key is an error) and generate the podman command line its
comments promise.

podman 4.3 here has no generator (Quadlet came with 4.4): scripts/ci-podman-setup unpacks the one of
Debian trixie's podman (5.4) beside it. Run as any user; without a generator the tests skip, unless
the end-to-end tests are required (`MOLTBOT_E2E=required`, as in CI), where they fail.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.podman_harness import ROOT_STEP_CAPABILITIES, Unit, flags

PODMAN = Path(__file__).resolve().parents[1] / "deploy" / "podman"
CANDIDATES = (
    os.environ.get("MOLTBOT_QUADLET", ""),
    "/usr/libexec/podman/quadlet",
    "/opt/moltbot-quadlet/quadlet",
)


def generator() -> str:
    found = next((path for path in CANDIDATES if path and os.access(path, os.X_OK)), None)
    if found is None:
        why = f"no Quadlet generator at {', '.join(filter(None, CANDIDATES))} (scripts/ci-podman-setup)"
        if os.environ.get("MOLTBOT_E2E") == "required":
            pytest.fail(why)
        pytest.skip(why)
    return found


def generate(quadlet: str, tmp_path: Path, *, user: bool) -> Unit:
    """The service unit the generator makes of `quadlet` (installed as moltbot.container)."""
    units = tmp_path / "units"
    units.mkdir(parents=True)
    shutil.copy(PODMAN / quadlet, units / "moltbot.container")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "QUADLET_UNIT_DIRS": str(units),
        "HOME": str(tmp_path),
    }
    argv = [generator(), "-dryrun", *(["-user"] if user else [])]
    completed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert completed.returncode == 0 and "---moltbot.service---" in completed.stdout, completed.stderr
    generated = tmp_path / "moltbot.service"
    generated.write_text(completed.stdout.split("---moltbot.service---", 1)[1], encoding="utf-8")
    return Unit(generated)


def podman_run(unit: Unit) -> tuple[dict[str, list[str]], str]:
    """The generated `podman run`: its options, and its image."""
    argv = shlex.split(unit["Service"]["ExecStart"])
    assert argv[:2] == ["/usr/bin/podman", "run"], argv
    return flags(argv[2:-1]), argv[-1]


def test_the_rootful_quadlet_runs_root_with_the_capabilities_of_the_root_steps(tmp_path: Path) -> None:
    unit = generate("moltbot.container", tmp_path, user=False)
    given, image = podman_run(unit)
    assert image == "moltbot:local"
    assert {name.upper() for name in given["--cap-add"]} == ROOT_STEP_CAPABILITIES
    assert given["--cap-drop"] == ["all"] and "--read-only" in given and "--userns" not in given
    assert given["--sdnotify"] == ["container"] and unit["Service"]["Type"] == "notify"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_rootless_quadlet_runs_as_node_through_keep_id_with_nothing_to_gain(tmp_path: Path) -> None:
    unit = generate("moltbot-rootless.container", tmp_path, user=True)
    given, image = podman_run(unit)
    assert image == "localhost/moltbot:local"  # the user's own image store
    assert given["--userns"] == ["keep-id:uid=1000,gid=1000"]  # the image's node
    assert given["--cap-drop"] == ["all"] and "--cap-add" not in given
    assert "--read-only" in given and given["--security-opt"] == ["no-new-privileges"]
    # The user's own directories, relabelled private to the container for SELinux hosts.
    assert given["-v"] == [
        "%h/.local/share/moltbot/state:/var/lib/moltbot:Z",
        "%h/.local/share/moltbot/workspace:/home/node/clawd:Z",
    ]
    assert given["--sdnotify"] == ["container"] and unit["Service"]["Type"] == "notify"
    assert unit["Install"]["WantedBy"] == "default.target"  # a user's manager has no multi-user.target


def test_both_quadlets_run_the_same_gateway_on_the_same_terms(tmp_path: Path) -> None:
    rootful = generate("moltbot.container", tmp_path / "rootful", user=False)
    rootless = generate("moltbot-rootless.container", tmp_path / "rootless", user=True)
    (root, _), (user, _) = podman_run(rootful), podman_run(rootless)
    for option in ("--env", "--publish", "--hostname", "--stop-timeout", "--name"):
        assert sorted(root[option]) == sorted(user[option]), option
    for key in ("TimeoutStartSec", "TimeoutStopSec", "Restart", "RestartPreventExitStatus"):
        assert rootful["Service"][key] == rootless["Service"][key], key
