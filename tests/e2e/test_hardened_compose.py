"""compose.hardened.yml in the real Docker engine: the stack boots healthy with a read-only image,
no capability but the five of the init's root steps, and no-new-privileges, and those five are
enough for every root step (a root-owned volume re-owned, an old ~/.clawdbot of another uid and
mode 0700 migrated), for the drop, and for the `after_repair` verdict to say root is no longer
needed.

One gateway start, through the harness: compose.yml + compose.test.yml + the test's own override
(the bind-mounted legacy dir, MOLTBOT_AFTER_REPAIR) + compose.hardened.yml. Run by pytest, as
root, after scripts/ci-docker-setup.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.e2e.harness import (
    GATEWAY_DIR,
    NODE_GID,
    NODE_UID,
    REPO,
    RUN_DIR,
    WORKSPACE_DIR,
    Engine,
    Stack,
    throwaway,
)
from tests.e2e.podman_harness import ROOT_STEP_BOUNDING_SET, ROOT_STEP_CAPABILITIES

pytestmark = pytest.mark.e2e

THEN = "run it as --user 1000:1000 from now on"


def proc_status(stack: Stack, pid: int = 1) -> dict[str, str]:
    completed = stack.exec("cat", f"/proc/{pid}/status")
    assert completed.returncode == 0, completed.stderr
    fields = (line.partition(":") for line in completed.stdout.splitlines())
    return {key: value.strip() for key, _, value in fields}


def test_hardened_override_boots_healthy_and_its_five_capabilities_do_every_root_step(
    stack: Stack, engine: Engine, host_dir: Path
) -> None:
    # A workspace filled by root, and an old state of a macOS account (uid 501), private to it.
    throwaway(
        engine.image,
        "set -e; mkdir -p /w/notes; printf 'from root\\n' > /w/notes/today.md; chown -R 0:0 /w",
        f"{stack.workspace_volume}:/w",
    )
    legacy = host_dir / "clawdbot"
    legacy.mkdir()
    (legacy / "NOTES.md").write_text("kept from the clawdbot days\n")
    (legacy / "NOTES.md").chmod(0o600)
    for path in (legacy / "NOTES.md", legacy):
        os.chown(path, 501, 20)
    legacy.chmod(0o700)
    stack.override(
        {
            "volumes": [f"{legacy}:/home/node/.clawdbot:ro"],
            "environment": {"MOLTBOT_AFTER_REPAIR": THEN},
        }
    )
    stack.overrides.append(REPO / "compose.hardened.yml")

    stack.up()
    stack.wait_healthy()

    host = stack.inspect()["HostConfig"]
    assert host["ReadonlyRootfs"] is True and host["CapDrop"] == ["ALL"]
    assert {name.removeprefix("CAP_") for name in host["CapAdd"]} == ROOT_STEP_CAPABILITIES
    assert "no-new-privileges:true" in host["SecurityOpt"]
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "5"}}
    assert stack.exec("touch", "/app/written").returncode != 0

    # After the drop: node, nothing effective, nothing to regain; the bounding set is the five.
    status = proc_status(stack)
    assert status["Uid"].split() == [str(NODE_UID)] * 4 and status["NoNewPrivs"] == "1"
    assert (int(status["CapEff"], 16), int(status["CapBnd"], 16)) == (0, ROOT_STEP_BOUNDING_SET)
    ids = [str(NODE_UID), str(NODE_GID)]
    assert stack.exec("stat", "-f", "-c", "%T", RUN_DIR).stdout.strip() == "tmpfs"
    assert stack.exec("stat", "-c", "%a %u %g", RUN_DIR).stdout.split() == ["755", *ids]

    [report] = stack.events("startup_report")
    phases = {phase["name"]: phase for phase in report["phases"]}
    assert phases["ownership"]["status"] == "ok" and phases["ownership"]["figures"]["changed"] >= 3
    assert phases["migration"]["figures"]["outcome"] == "migrated", phases["migration"]
    assert phases["privileges"]["figures"]["dropped"] is True
    verdict = phases["after_repair"]
    assert (verdict["status"], verdict["figures"]["ready"], verdict["figures"]["next"]) == ("ok", True, THEN)

    assert stack.exec("stat", "-c", "%a %u %g", f"{GATEWAY_DIR}/NOTES.md").stdout.split() == ["600", *ids]
    assert stack.exec("cat", f"{GATEWAY_DIR}/NOTES.md").stdout == "kept from the clawdbot days\n"
    assert stack.exec("stat", "-c", "%u %g", f"{WORKSPACE_DIR}/notes/today.md").stdout.split() == ids
