"""Backups and a restore with the real gateway (issue 21): compose.backup.yml's service makes the
gateway's own verified archive beside the running gateway as soon as it is healthy; the Kubernetes
CronJob's very command (rendered from the component, run as its uid 1000) makes another; `moltbot-init
restore` puts that one into fresh volumes, and the gateway started on them answers with the same
config and the same token. An image whose gateway has no archives of its own (openclaw 2026.1.29)
says so in one line, with its exit code, and changes nothing."""

from __future__ import annotations

import http.client
import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import LOG_DIR
from tests.e2e.harness import GATEWAY_DIR, PORT, REPO, TOKEN_FILE, Engine, Stack, docker, throwaway
from tests.e2e.test_container import MARKER_CONFIG, MARKER_MODEL
from tests.test_kustomize_components import backup_pod, render

pytestmark = pytest.mark.e2e

BACKUPS = "/var/backups/moltbot"
ARCHIVES = f"cd {BACKUPS} && find . -maxdepth 1 -type f -printf '%U %m %f\\n' | sort -k 3"


def invoked(stack: Stack, token: str) -> int:
    """The status of `POST /tools/invoke` with `token`: the gateway's own check of its token."""
    connection = http.client.HTTPConnection(stack.ip(), PORT, timeout=30)
    try:
        body = json.dumps({"tool": "session_status", "args": {}})
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        connection.request("POST", "/tools/invoke", body, headers)
        return connection.getresponse().status
    finally:
        connection.close()


def backup_lines(stack: Stack) -> list[dict[str, Any]]:
    """The init's lines of compose.backup.yml's service."""
    found = docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={stack.project}",
        "--filter", "label=com.docker.compose.service=moltbot-backup", check=True,
    ).stdout.split()  # fmt: skip
    lines = []
    for container in found:
        logs = docker("logs", container, timeout=60)
        for text in (logs.stdout + logs.stderr).splitlines():
            if text.startswith("{"):
                lines.append(json.loads(text))
    return lines


def test_the_cron_job_s_backup_restored_into_fresh_volumes_answers_with_the_same_config_and_token(
    stack: Stack, engine: Engine, tmp_path: Path
) -> None:
    throwaway(
        engine.image,
        f"mkdir -p /v/gateway && printf '%s' '{MARKER_CONFIG.strip()}' > /v/gateway/openclaw.json"
        " && chown -R 1000:1000 /v/gateway && chmod 600 /v/gateway/openclaw.json",
        f"{stack.data_volume}:/v",
    )
    image = tmp_path / "backup-image.yml"  # compose.backup.yml's service runs the session's image too
    image.write_text(json.dumps({"services": {"moltbot-backup": {"image": engine.image}}}))
    stack.overrides += [REPO / "compose.backup.yml", image]
    stack.up()
    stack.wait_healthy()
    token = stack.exec("cat", TOKEN_FILE).stdout.strip()
    assert token and invoked(stack, token) == 200 and invoked(stack, token + "x") == 401

    # compose.backup.yml's service: a backup as soon as the gateway is healthy, then every 24 h.
    scheduled = stack.wait_for(
        "compose.backup.yml's first backup",
        lambda: [line for line in backup_lines(stack) if line["event"] == "backup_created"],
        240,
        interval=2,
    )[0]
    assert scheduled["secret_copied"] is True and set(scheduled["assets"]) >= {"state", "workspace"}

    # The CronJob's command, as its pod runs it: uid 1000 from the start, the same volumes.
    [cron_job] = backup_pod(render(tmp_path / "kustomize"))["containers"]
    made = stack.compose(
        "run", "--rm", "-T", "--no-deps", "-u", "1000:1000", "moltbot-backup", *cron_job["args"], timeout=600
    )
    said = (made.stdout + made.stderr).splitlines()
    [created] = [json.loads(line) for line in said if line.startswith("{") and '"backup_created"' in line]
    archive = created["archive"]
    listed = throwaway(engine.image, ARCHIVES.replace(BACKUPS, "/b"), f"{stack.backups_volume}:/b")
    name = archive.rpartition("/")[2]
    assert f"1000 600 {name}\n" in listed and f"1000 600 {name}.gateway-token\n" in listed, listed
    config = stack.exec("sha256sum", f"{GATEWAY_DIR}/openclaw.json").stdout.split()[0]

    # Fresh volumes: the restore, as a one-off of the image, then the gateway on them.
    fresh = Stack(engine, tmp_path)
    try:
        restored = docker(
            "run", "--rm", "--network", "none",
            "-v", f"{fresh.data_volume}:/var/lib/moltbot", "-v", f"{fresh.workspace_volume}:/home/node/clawd",
            "-v", f"{stack.backups_volume}:{BACKUPS}:ro", engine.image, "restore", name, timeout=600,
        )  # fmt: skip
        assert restored.returncode == 0, restored.stdout + restored.stderr
        assert restored.stdout.startswith(f"restored {archive}"), restored.stdout
        assert "The generated secret came back" in restored.stdout and "workspace" in restored.stdout
        check = "sha256sum /v/gateway/openclaw.json; cat /v/.moltbot-init/gateway-token"
        digest, _, kept = throwaway(engine.image, check, f"{fresh.data_volume}:/v").partition("\n")
        assert (digest.split()[0], kept.strip()) == (config, token)

        fresh.up()
        fresh.wait_healthy()
        assert invoked(fresh, token) == 200 and invoked(fresh, token + "x") == 401
        assert any(f"agent model: {MARKER_MODEL}" in line for line in fresh.gateway_output())
        [report] = fresh.events("startup_report")
        upgrade = next(phase for phase in report["phases"] if phase["name"] == "upgrade")
        assert upgrade["warnings"] == [] and "checkpoint" not in upgrade["figures"], upgrade
    finally:
        if docker("inspect", fresh.container).returncode == 0:
            fresh.save_logs(LOG_DIR, "backups-restored-into-fresh-volumes")
        fresh.down()


def test_an_image_whose_gateway_has_no_archives_says_so_and_changes_nothing(
    stack: Stack, openclaw_2026_1: Engine
) -> None:
    # Mounted where the image has its state dir: a fresh volume starts with the image's directories.
    volume, listing = f"{stack.data_volume}:/var/lib/moltbot", "find /var/lib/moltbot -mindepth 1 | sort"
    before = set(throwaway(openclaw_2026_1.image, listing, volume).split())
    for args in (["restore", "any-openclaw-backup.tar.gz"], ["backup"]):
        said = docker(
            "run", "--rm", "--network", "none", "-v", volume, openclaw_2026_1.image, *args,
        )  # fmt: skip
        [line] = [json.loads(text) for text in said.stderr.splitlines() if text.startswith("{")]
        assert said.returncode == 69 and "openclaw@2026.1.29 makes no archives" in line["message"], (
            said.stderr
        )
        assert "openclaw 2026.9 and later" in line["message"]
    after = set(throwaway(openclaw_2026_1.image, listing, volume).split())
    lock = {"/var/lib/moltbot/.moltbot-init", "/var/lib/moltbot/.moltbot-init/state.lock"}
    assert after - before <= lock and before <= after  # the restore's lock, and nothing else
