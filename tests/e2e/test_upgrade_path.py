"""The seed's upgrade path, on ordinary hosts (issue 10), with each real gateway generation.

A user's old `~/.clawdbot` belongs to their host account (uid 1001 here, mode 0700) and is
bind-mounted, read-only as compose.yml suggests, next to a state volume that may hold the
leftovers of the failed start the seed describes (a root-owned volume root, empty root-owned
`cron/`, `canvas/`, `logs/`, a log file). Whatever the combination, the gateway must come up on
the old config and files, once, with no restart of the container, everything owned by `node`,
and the host's dir left exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    GATEWAY_DIR,
    HOME_DIR,
    STATE_DIR,
    TOKEN_FILE,
    WORKSPACE_DIR,
    Stack,
    manifest,
    throwaway,
    write_legacy_state,
)

pytestmark = pytest.mark.e2e

HOST_UID = HOST_GID = 1001  # a second Linux account; macOS would be 501, a NAS 99:100
LEGACY_MOUNT = "/home/node/.clawdbot"
# A config every generation accepts, whose effect shows in the report (the config's own bytes are
# compared; the gateways do not rewrite a valid config at start).
LEGACY_CONFIG = json.dumps({"gateway": {"mode": "local"}, "agents": {"defaults": {}}}) + "\n"
# The seed's leftovers, at the volume root, all root's.
LEFTOVERS = (
    "set -e; cd /v; mkdir -p cron canvas logs; printf 'old start\\n' > logs/failed-start.log;"
    " chown -R 0:0 /v; chmod 755 /v"
)
RESTARTS = 3


def legacy_tree(root: Path) -> None:
    """Legacy state the gateways leave alone once migrated (they move some files into their own
    stores at start, e.g. cron/jobs.json, and those would not compare byte for byte), the host
    user's."""
    root.mkdir(mode=0o700)
    write_legacy_state(root, LEGACY_CONFIG, photo_kib=64)
    for path in [root, *root.rglob("*")]:
        os.lchown(path, HOST_UID, HOST_GID)


def config_name(stack: Stack) -> str:
    """The installed generation's config name (clawdbot's keeps its own)."""
    listing = stack.exec("ls", GATEWAY_DIR).stdout.split()
    return next(name for name in ("openclaw.json", "moltbot.json", "clawdbot.json") if name in listing)


def phase(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(item for item in report["phases"] if item["name"] == name)


def not_owned_by_node(stack: Stack) -> list[str]:
    return stack.volume_files("(", "!", "-uid", "1000", "-o", "!", "-gid", "1000", ")")


def answers_http(stack: Stack) -> bool:
    """The gateway answers on its port: its /healthz JSON where it has one, else any answer."""
    try:
        status, body = stack.http_get("/healthz")
    except OSError:
        return False
    if body.lstrip().startswith("{"):
        return status == 200 and json.loads(body).get("ok") is True
    return status == 200  # generations without probes answer every path with the Control UI


SCENARIOS = {
    "foreign-legacy-and-leftovers": (True, True),
    "foreign-legacy-alone": (True, False),
    "leftovers-alone": (False, True),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_an_old_state_migrates_once_whatever_its_owner_and_the_volume_s_leftovers(
    gateway_stack: Stack, host_dir: Path, scenario: str
) -> None:
    with_legacy, with_leftovers = SCENARIOS[scenario]
    stack = gateway_stack
    legacy = host_dir / "clawdbot"
    if with_legacy:
        legacy_tree(legacy)
        stack.override({"volumes": [f"{legacy}:{LEGACY_MOUNT}:ro"]})
        before = manifest(legacy)
    if with_leftovers:
        throwaway(stack.engine.image, LEFTOVERS, f"{stack.data_volume}:/v")

    stack.up()
    stack.wait_for("the gateway to answer HTTP", lambda: answers_http(stack), 180, interval=1)
    state = stack.state()
    assert state["Running"] and stack.inspect()["RestartCount"] == 0, state
    report = stack.events("startup_report")[0]
    migration = phase(report, "migration")
    assert migration["status"] == "ok", migration
    assert not [w for w in report["warnings"] if w["phase"] == "migration"], report["warnings"]
    figures = migration["figures"]
    if with_legacy:
        assert figures["outcome"] == "migrated", figures
        name = config_name(stack)
        # The config (renamed to the installed generation's name) and every other file, byte for byte.
        assert stack.exec("cat", f"{GATEWAY_DIR}/{name}").stdout == LEGACY_CONFIG
        for rel, entry in before.items():
            if rel in (".", "clawdbot.json") or entry[6] is None:
                continue
            path = f"{GATEWAY_DIR}/{rel}"
            show = f"if [ -L '{path}' ]; then readlink '{path}'; else sha256sum '{path}'; fi"
            copied = stack.exec("sh", "-c", show)
            assert entry[6] in copied.stdout, (rel, copied.stdout)
        modes = stack.exec("stat", "-c", "%a", f"{GATEWAY_DIR}/credentials/e2e.json").stdout.strip()
        assert modes == "600"
    else:
        assert figures["outcome"] == "nothing-to-migrate", figures
    if with_leftovers:
        assert stack.exec("cat", f"{GATEWAY_DIR}/logs/failed-start.log").stdout == "old start\n"
    assert not_owned_by_node(stack) == []
    # The gateway writes its own state into the volume: its HOME and its state dir, nowhere else.
    stack.wait_for(
        "the gateway's own state in the volume",
        lambda: stack.exec("find", GATEWAY_DIR, HOME_DIR, "-newer", TOKEN_FILE, "-type", "f").stdout.strip(),
        60,
    )
    token = stack.exec("cat", TOKEN_FILE).stdout
    commits = len(stack.events("migration_commit"))

    for restart in range(RESTARTS):
        stack.compose("restart", "--timeout", "20")
        reports = stack.wait_event("startup_report", count=restart + 2, timeout=120)
        again = phase(reports[-1], "migration")["figures"]
        assert again["outcome"] in ("already-migrated", "nothing-to-migrate"), again
        assert stack.exec("cat", TOKEN_FILE).stdout == token
        assert len(stack.events("migration_commit")) == commits  # nothing migrated again
    stack.wait_for("the gateway to answer HTTP again", lambda: answers_http(stack), 180, interval=1)
    assert not_owned_by_node(stack) == []
    stack.compose("stop", "--timeout", "20")
    if with_legacy:
        assert manifest(legacy) == before  # the host's dir, exactly as it was


def test_a_read_only_root_filesystem_runs_healthy_with_tmpfs_on_tmp_and_run(stack: Stack) -> None:
    """The first thing Kubernetes hardening asks for: nothing the gateway writes is on the image."""
    stack.override({"read_only": True, "tmpfs": ["/tmp", "/run"]})
    stack.up()
    stack.wait_healthy()
    assert answers_http(stack)
    assert stack.events("gateway_exited") == []
    written = stack.exec("find", f"{HOME_DIR}/.config", f"{HOME_DIR}/.cache", "-maxdepth", "1").stdout
    assert "openclaw" in written, written


def test_a_recreated_container_keeps_the_gateway_s_home_and_takes_no_detour(stack: Stack) -> None:
    """`docker compose up -d --force-recreate` keeps ~/.config/openclaw (its auth-profile key), and a
    boot with nothing to migrate never runs the gateway's legacy-state migration step."""
    stack.override({"environment": {"OPENCLAW_GATEWAY_STARTUP_TRACE": "1"}})
    stack.up()
    stack.wait_healthy()
    # What an auth-profile setup keeps there (openclaw writes it on its first OAuth profile), and
    # what the gateway writes under its HOME by itself on every start.
    key = f"{HOME_DIR}/.config/openclaw/auth-profile-secret-key"
    plant = f"umask 077; mkdir -p {HOME_DIR}/.config/openclaw; head -c 32 /dev/urandom > {key}"
    assert stack.exec("sh", "-c", plant, user="1000:1000").returncode == 0
    secret = stack.exec("sha256sum", key).stdout
    assert stack.exec("test", "-d", f"{HOME_DIR}/.cache/openclaw").returncode == 0
    output = "\n".join(stack.gateway_output())
    assert "startup trace" in output  # the gateway's own trace is there to be read
    assert "legacy-state-migrations" not in output
    assert "OPENCLAW_LEGACY_ENV_VARS" not in output  # only its own generation's names
    assert "EACCES" not in output

    recreated_at = time.time()
    stack.up("--force-recreate")
    stack.wait_healthy(since=recreated_at)
    assert stack.exec("sha256sum", key).stdout == secret
    assert stack.exec("stat", "-c", "%a %U", key).stdout.split() == ["600", "node"]
    assert "legacy-state-migrations" not in "\n".join(stack.gateway_output())
    assert stack.exec("find", STATE_DIR, WORKSPACE_DIR, "-xdev", "-uid", "0").stdout == ""


def test_a_state_volume_too_small_holds_with_both_numbers_until_there_is_room(
    stack: Stack, host_dir: Path
) -> None:
    """A 40 MB state volume, a 60 MB `~/.clawdbot` (and a 1 GiB sparse database in it): the init
    measures both before it copies anything and holds, the container up and unhealthy, never the
    gateway on an empty state. Once the user makes room (here: old media out of the legacy dir) a
    restart migrates, the sparse file stays sparse, and the gateway answers on the old config."""
    stack.data_volume_on_tmpfs("40m")
    legacy = host_dir / "clawdbot"
    legacy_tree(legacy)
    (legacy / "media" / "old").mkdir()
    for number in range(6):
        (legacy / "media" / "old" / f"video{number}.mp4").write_bytes(os.urandom(10 << 20))
    with open(legacy / "memory.sqlite", "wb") as sparse:
        sparse.write(b"SQLite format 3\x00" + os.urandom(4080))
        sparse.truncate(1 << 30)
    for path in [legacy, *legacy.rglob("*")]:
        os.lchown(path, HOST_UID, HOST_GID)
    stack.override({"volumes": [f"{legacy}:{LEGACY_MOUNT}"]})

    stack.up()
    held = stack.wait_event("boot_held", timeout=120)[0]
    report = stack.wait_event("startup_report")[0]
    warning = next(w for w in report["warnings"] if w["event"] == "migration_no_space")
    assert warning["needed_bytes"] > 60_000_000 > (40 << 20) >= warning["free_bytes"]
    for said in (held["reason"], report["held"]["reason"]):
        assert str(warning["needed_bytes"]) in said and str(warning["free_bytes"]) in said
    health = stack.exec("moltbot-init", "health")
    assert health.returncode == 1 and "held" in health.stdout and "MOLTBOT_MIGRATE=off" in health.stdout
    assert stack.events("gateway_starting") == [] and stack.state()["Running"]
    assert stack.exec("ls", "-A", GATEWAY_DIR).stdout == ""  # nothing half-copied, nothing started

    shutil.rmtree(legacy / "media" / "old")  # the user makes room
    stack.compose("restart", "--timeout", "20")
    stack.wait_for("the gateway to answer HTTP", lambda: answers_http(stack), 180, interval=1)
    migration = phase(stack.wait_event("startup_report", count=2)[-1], "migration")
    assert migration["figures"]["outcome"] == "migrated", migration
    assert stack.exec("cat", f"{GATEWAY_DIR}/openclaw.json").stdout == LEGACY_CONFIG
    size, blocks = stack.exec("stat", "-c", "%s %b", f"{GATEWAY_DIR}/memory.sqlite").stdout.split()
    assert int(size) == 1 << 30 and int(blocks) * 512 < 1 << 20  # sparse, as it was
