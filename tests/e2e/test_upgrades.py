"""Image upgrades with a way back, with the real gateways (issue 20): clawdbot 2026.1.24-3 and
openclaw 2026.1.29 each make their own state; the openclaw 2026.9.6 image takes over it after a
checkpoint of it; openclaw 2026.1.29 is then held on the newer state and changes nothing; a rollback
from the new image puts the old state back and the old image answers on it, the newer state set
aside; the new release's own preflight judges the state's databases before it runs on them (a
schema it does not know holds, in its own words); a volume too small for the checkpoint holds
with both numbers.

Each change of image recreates the container (as `docker compose pull && up -d` does): its logs
start afresh, its volumes stay."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.e2e.harness import GATEWAY_DIR, Engine, Stack, docker, throwaway
from tests.e2e.test_upgrade_path import LEGACY_CONFIG, answers_http, phase

pytestmark = pytest.mark.e2e

NODE = "1000:1000"  # the image's node: the state's files stay its own
CREDENTIAL = '{"provider": "e2e", "refresh": "kept-through-upgrades"}'  # the user's, byte for byte
# The state dir's files and their sha256 (not the gateway's scratch), read from the volume itself.
HASHES = "cd /v/gateway && find . -type f ! -path './tmp/*' -exec sha256sum {} + | sort -k 2"


def on_image(stack: Stack, engine: Engine) -> None:
    """The stack's container recreated on `engine`'s image, its volumes kept."""
    stack.override({"image": engine.image})
    stack.up("--force-recreate")  # also when the image is the one it ran last (its logs start afresh)


def answering(stack: Stack) -> dict[str, Any]:
    """The boot's report, once the gateway answers."""
    report = stack.wait_event("startup_report", timeout=180)[0]
    stack.wait_for("the gateway to answer HTTP", lambda: answers_http(stack), 240, interval=1)
    return report


def hashes(stack: Stack, engine: Engine) -> dict[str, str]:
    listing = throwaway(engine.image, HASHES, f"{stack.data_volume}:/v")
    return {path: digest for digest, path in (line.split(maxsplit=1) for line in listing.splitlines())}


def config_name(engine: Engine) -> str:
    """The config's name as the image's gateway wants it (the init renames it at every boot)."""
    return "clawdbot.json" if "clawdbot" in engine.image else "openclaw.json"


def seed(stack: Stack, engine: Engine) -> None:
    """The user's own config and credential in the state volume, before any start."""
    throwaway(
        engine.image,
        "set -e; mkdir -p /v/gateway/credentials;"
        f" printf '%s' '{LEGACY_CONFIG.strip()}' > /v/gateway/openclaw.json;"
        f" printf '%s' '{CREDENTIAL}' > /v/gateway/credentials/e2e.json;"
        " chmod 600 /v/gateway/openclaw.json /v/gateway/credentials/e2e.json",
        f"{stack.data_volume}:/v",
    )


def test_a_new_image_takes_over_an_old_state_after_a_checkpoint_and_a_rollback_goes_back(
    stack: Stack, engine: Engine, older_gateway: Engine, openclaw_2026_1: Engine
) -> None:
    old = older_gateway.image.rpartition(":")[2].replace("-2026", "@2026", 1)  # clawdbot@2026.1.24-3
    seed(stack, older_gateway)
    on_image(stack, older_gateway)
    assert phase(answering(stack), "upgrade")["figures"]["release"] == old
    stack.compose("stop", "--timeout", "30")
    before = hashes(stack, older_gateway)  # the old release's state, as it left it

    # The new image: a checkpoint of the old release's state, its own preflight, then it runs.
    on_image(stack, engine)
    gate = phase(answering(stack), "upgrade")
    assert gate["figures"]["from"] == old and gate["figures"]["checkpoint"], gate
    listed = json.loads(stack.exec("moltbot-init", "checkpoints", "--json").stdout)
    [taken] = [item for item in listed["checkpoints"] if item["id"] == gate["figures"]["checkpoint"]]
    assert f"{taken['release']['package']}@{taken['release']['version']}" == old
    assert {tree["name"] for tree in taken["trees"] if tree["included"]} >= {"gateway", "home"}
    assert listed["releases"]["current"]["version"] == "2026.9.6"
    assert stack.exec("cat", f"{GATEWAY_DIR}/credentials/e2e.json").stdout == CREDENTIAL  # nothing lost
    assert json.loads(stack.exec("cat", f"{GATEWAY_DIR}/openclaw.json").stdout)["gateway"]["mode"] == "local"
    stack.compose("stop", "--timeout", "30")
    newer = hashes(stack, engine)

    # openclaw 2026.1.29 on the state 2026.9.6 ran: held, nothing of the state changed.
    on_image(stack, openclaw_2026_1)
    held = stack.wait_event("boot_held", timeout=180)[0]
    assert "older than openclaw@2026.9.6" in held["reason"], held
    assert "rollback" in held["how_to_leave"], held
    health = stack.exec("moltbot-init", "health")
    assert health.returncode == 1 and "held" in health.stdout
    assert stack.events("gateway_starting") == []
    stack.compose("stop", "--timeout", "30")
    assert hashes(stack, openclaw_2026_1) == newer

    # The rollback, as a one-off of the new image: the old state back, the newer one aside.
    stack.override({"image": engine.image})
    rolled = stack.compose("run", "--rm", "-T", "--no-deps", "moltbot-gateway", "rollback", timeout=300)
    assert "rolled back" in rolled.stdout and "set aside" in rolled.stdout, rolled.stdout + rolled.stderr
    on_image(stack, older_gateway)
    assert phase(answering(stack), "upgrade")["warnings"] == []  # its own release: no hold, no checkpoint
    stack.compose("stop", "--timeout", "30")
    restored = hashes(stack, older_gateway)
    config = f"./{config_name(older_gateway)}"
    assert (
        restored[config] == before[config]
        and restored["./credentials/e2e.json"] == before["./credentials/e2e.json"]
    )
    [when] = throwaway(engine.image, "ls /v/.moltbot-init/rolled-back", f"{stack.data_volume}:/v").split()
    aside = f"/v/.moltbot-init/rolled-back/{when}/gateway/openclaw.json"
    moved = throwaway(engine.image, f"sha256sum {aside}", f"{stack.data_volume}:/v")
    assert moved.split()[0] == newer["./openclaw.json"]  # 2026.9.6's state, set aside whole


def claim_an_earlier_release(stack: Stack, engine: Engine) -> None:
    """The state's history made to say that openclaw 2026.9.5 ran on it last (no image of it exists
    here): the next boot of 2026.9.6 is an upgrade, with a checkpoint and the real preflight."""
    rewrite = 'sed -i \'s/"2026.9.6"/"2026.9.5"/\' /v/.moltbot-init/releases.json'
    throwaway(engine.image, rewrite, f"{stack.data_volume}:/v", user=NODE)


def test_the_new_release_s_own_preflight_judges_the_state_before_it_runs_on_it(
    stack: Stack, engine: Engine
) -> None:
    on_image(stack, engine)
    answering(stack)
    stack.compose("stop", "--timeout", "30")
    claim_an_earlier_release(stack, engine)
    on_image(stack, engine)
    gate = phase(answering(stack), "upgrade")
    assert gate["figures"]["from"] == "openclaw@2026.9.5", gate
    assert gate["figures"]["preflight"] == {"state/openclaw.sqlite": "exact"}, gate  # the real CLI's verdict
    stack.compose("stop", "--timeout", "30")

    # A schema from a release that does not exist yet: 2026.9.6's preflight calls it incompatible.
    future = (
        "const { DatabaseSync } = require('node:sqlite');"
        "const db = new DatabaseSync('/v/gateway/state/openclaw.sqlite');"
        "db.exec('PRAGMA user_version = 999'); db.close();"
    )
    throwaway(engine.image, f'node -e "{future}"', f"{stack.data_volume}:/v", user=NODE)
    claim_an_earlier_release(stack, engine)
    on_image(stack, engine)
    held = stack.wait_event("boot_held", timeout=240)[0]
    assert "preflight refuses this state" in held["reason"] and "incompatible" in held["reason"], held
    assert "rollback" in held["how_to_leave"] and "MOLTBOT_UPGRADE_PREFLIGHT=warn" in held["how_to_leave"]
    health = stack.exec("moltbot-init", "health")
    assert health.returncode == 1 and "incompatible" in health.stdout
    assert stack.events("gateway_starting") == []


def test_a_volume_without_room_for_the_checkpoint_holds_with_both_numbers(
    stack: Stack, engine: Engine, openclaw_2026_1: Engine
) -> None:
    """A 40 MB state volume that the user's own files nearly fill: the upgrade holds, never a start
    without a way back; once the user makes room, a restart takes the checkpoint and starts."""
    stack.data_volume_on_tmpfs("40m")
    on_image(stack, openclaw_2026_1)
    answering(stack)
    # A tmpfs volume lives while a container mounts it: this one keeps it across the recreate.
    keeper = f"{stack.project}-keeper"
    docker("run", "-d", "--name", keeper, "--network", "none", "--entrypoint", "sleep",
           "-v", f"{stack.data_volume}:/v", engine.image, "3600", check=True)  # fmt: skip
    try:
        used = int(stack.exec("du", "-sb", GATEWAY_DIR).stdout.split()[0])
        room = (
            "free=$(df -B1 --output=avail /v | tail -1); [ $free -lt $((64 << 20)) ] || exit 3;"  # the tmpfs
        )
        fill = f"head -c $((free - {used // 2})) /dev/zero > /v/backups/old.bin"
        docker("exec", keeper, "sh", "-c", f"mkdir -p /v/backups; {room} {fill}", check=True)
        stack.compose("stop", "--timeout", "30")
        on_image(stack, engine)
        held = stack.wait_event("boot_held", timeout=180)[0]
        report = stack.wait_event("startup_report")[0]
        warning = next(w for w in phase(report, "upgrade")["warnings"] if w["event"] == "checkpoint_no_space")
        assert warning["needed_bytes"] > warning["free_bytes"]
        for said in (str(warning["needed_bytes"]), str(warning["free_bytes"])):
            assert said in held["reason"]
        assert "MOLTBOT_UPGRADE_CHECKPOINT=off" in held["how_to_leave"]
        assert stack.events("gateway_starting") == []
        docker("exec", keeper, "rm", "/v/backups/old.bin", check=True)  # the user makes room
        stack.compose("restart", "--timeout", "30")
        stack.wait_for("the gateway to answer HTTP", lambda: answers_http(stack), 240, interval=1)
        gate = phase(stack.wait_event("startup_report", count=2)[-1], "upgrade")
        assert gate["figures"]["from"] == "openclaw@2026.1.29" and gate["figures"]["checkpoint"]
    finally:
        docker("rm", "-f", keeper)
