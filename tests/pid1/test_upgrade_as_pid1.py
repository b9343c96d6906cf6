"""The upgrade gate as PID 1 boots it: a new release takes a checkpoint and asks its own preflight
before the gateway starts, old checkpoints go only once it has started (never the way back), status
names the releases, and the operator's checkpoint and rollback refuse while the init holds the state.

The image records its gateway in /app/gateway.json; here a copy of the sources whose profile reads
that record from the test's own directory stands in for the image (nothing is written to /app)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.boot.upgrade.helpers import database
from tests.conftest import InitRunner, init_python, world_readable_dir
from tests.supervised import Supervised, free_port, standin

pytestmark = pytest.mark.pid1

PREFLIGHT_CLI = "tests/standins/preflight_cli.py"


@pytest.fixture
def image(init_sources: Path, box: Path) -> Iterator[tuple[InitRunner, Path]]:
    """An init whose profile reads the gateway's record from `<box>/app/gateway.json`."""
    sources = world_readable_dir("init-src-upgrade-")
    shutil.copytree(init_sources, sources, dirs_exist_ok=True)
    profile = sources / "moltbot" / "profile.py"
    app = box / "app"
    app.mkdir()
    profile.write_text(profile.read_text().replace('APP_DIR = "/app"', f'APP_DIR = "{app}"'))
    try:
        yield InitRunner(init_python(), sources, box), app / "gateway.json"
    finally:
        shutil.rmtree(sources, ignore_errors=True)


def booted(runner: InitRunner, record: Path, version: str, port: int, **env: str) -> Supervised:
    record.write_text(json.dumps({"name": "openclaw", "version": version, "bin": "openclaw.mjs"}))
    cli = f"{sys.executable} {runner.sources}/{PREFLIGHT_CLI} --log {runner.box}/preflight.log"
    gateway = standin("probes", "--port", port, "--starting", "2").replace(
        "tests/standins", f"{runner.sources}/tests/standins"
    )
    return Supervised(
        runner,
        gateway,
        {"MOLTBOT_GATEWAY_PORT": str(port), "MOLTBOT_GATEWAY_CLI": cli, "MOLTBOT_STOP_TIMEOUT": "3", **env},
    )


def test_an_upgrade_checkpoints_asks_its_preflight_starts_and_prunes_only_once_started(
    image: tuple[InitRunner, Path],
) -> None:
    runner, record = image
    port = free_port()
    first = booted(runner, record, "2026.1.29", port)
    try:
        first.wait_for("gateway_running")
        (runner.box / "state" / "gateway" / "openclaw.json").write_text('{"gateway": {"mode": "local"}}')
        for _ in range(2):  # two checkpoints of the old release, as an operator might have taken
            refused = first.init_command("checkpoint")
            assert refused.returncode == 1 and "state_in_use" in refused.stderr  # not while it runs
    finally:
        assert first.terminate() == 0
    database(runner.box / "state" / "gateway" / "state" / "openclaw.sqlite", 10)
    for _ in range(2):
        taken = runner.tool("checkpoint")  # a one-off, with no init on the state: taken
        assert taken.returncode == 0 and taken.stdout.startswith("checkpoint openclaw-2026.1.29-"), (
            taken.stderr
        )

    second = booted(runner, record, "2026.9.6", port, MOLTBOT_CHECKPOINT_KEEP="1")
    try:
        gate = next(p for p in second.wait_for("startup_report")[0]["phases"] if p["name"] == "upgrade")
        assert gate["figures"]["from"] == "openclaw@2026.1.29" and gate["figures"]["checkpoint"]
        pruned = second.wait_for("checkpoints_pruned", timeout=60)[0]
        started = second.wait_for("gateway_running")[0]
        status = json.loads(second.init_command("status", "--json").stdout)
        listed = json.loads(second.init_command("checkpoints", "--json").stdout)
    finally:
        assert second.terminate() == 0
    assert pruned["time"] > started["time"]  # once it started, never before
    ids = [item["id"] for item in listed["checkpoints"]]
    assert ids[0] == gate["figures"]["checkpoint"] and len(ids) == 1  # the way back is the newest
    assert len(pruned["removed"]) == 2
    assert status["releases"]["current"]["version"] == "2026.9.6"
    assert status["releases"]["previous"]["version"] == "2026.1.29"
    [call] = [json.loads(line) for line in (runner.box / "preflight.log").read_text().splitlines()]
    assert (call["command"], call["sidecars"]) == ("preflight", [])
