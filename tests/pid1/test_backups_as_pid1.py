"""Backups and a restore as the image runs them: `backup` beside a running init (a one-off, and as
the PID 1 of a container of its own, as a CronJob's pod runs it) archives the live state; `restore`
refuses while the init holds the state, and with the init stopped puts the archive's state back, so
that the next boot starts on it as on its own.

A copy of the sources whose profile reads the gateway's record from the test's own directory, and
takes its backups there, stands in for the image; the stand-in CLI makes and reads the archives."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.common.exits import Exit
from tests.conftest import InitRunner, init_python, world_readable_dir
from tests.supervised import Supervised, free_port, standin

pytestmark = pytest.mark.pid1

BACKUP_CLI = "tests/standins/backup_cli.py"
CONFIG = '{"gateway": {"mode": "local"}, "marker": "backed up"}'


@pytest.fixture
def image(init_sources: Path, box: Path) -> Iterator[InitRunner]:
    """An init that finds its gateway's record in `<box>/app/gateway.json` (openclaw 2026.9.6) and
    its backups directory at `<box>/backups`."""
    sources = world_readable_dir("init-src-backups-")
    shutil.copytree(init_sources, sources, dirs_exist_ok=True)
    profile = sources / "moltbot" / "profile.py"
    (box / "app").mkdir()
    (box / "backups").mkdir()
    (box / "app" / "gateway.json").write_text(json.dumps({"name": "openclaw", "version": "2026.9.6"}))
    text = profile.read_text().replace('APP_DIR = "/app"', f'APP_DIR = "{box / "app"}"')
    profile.write_text(
        text.replace('BACKUP_DIR = "/var/backups/moltbot"', f'BACKUP_DIR = "{box / "backups"}"')
    )
    try:
        yield InitRunner(init_python(), sources, box)
    finally:
        shutil.rmtree(sources, ignore_errors=True)


def cli(runner: InitRunner) -> dict[str, str]:
    return {"MOLTBOT_GATEWAY_CLI": f"{sys.executable} {runner.sources}/{BACKUP_CLI}"}


def booted(runner: InitRunner, port: int) -> Supervised:
    gateway = standin("probes", "--port", port).replace("tests/standins", f"{runner.sources}/tests/standins")
    env = {"MOLTBOT_GATEWAY_PORT": str(port), "MOLTBOT_STOP_TIMEOUT": "3", **cli(runner)}
    return Supervised(runner, gateway, env)


def test_a_backup_beside_the_running_init_restored_with_the_init_stopped_boots_as_it_was(
    image: InitRunner,
) -> None:
    runner, port = image, free_port()
    config = runner.box / "state" / "gateway" / "openclaw.json"
    first = booted(runner, port)
    try:
        first.wait_for("gateway_running")
        config.write_text(CONFIG)
        once = runner.tool("backup", **cli(runner))  # beside it: no lock taken, none waited for
        assert once.returncode == Exit.OK, once.stderr
        as_pid1 = runner.tool("backup", "--keep", "1", pid1=True, **cli(runner))  # a CronJob's pod
        assert as_pid1.returncode == Exit.OK, as_pid1.stderr
        [created] = [json.loads(line) for line in as_pid1.stderr.splitlines() if "backup_created" in line]
        archive = created["archive"]
        assert len(created["removed"]) == 1  # --keep 1: the first one went
        refused = first.init_command("restore", archive)
        assert refused.returncode == Exit.FAILED and "state_in_use" in refused.stderr
    finally:
        assert first.terminate() == 0

    config.write_text('{"changed": "after the backup"}')
    usage = runner.tool("restore", **cli(runner))
    assert usage.returncode == Exit.USAGE and archive.rpartition("/")[2] in usage.stderr
    restored = runner.tool("restore", archive, pid1=True, **cli(runner))
    assert restored.returncode == Exit.OK, restored.stderr
    assert restored.stdout.startswith(f"restored {archive}") and "set aside" in restored.stdout
    assert config.read_text() == CONFIG

    second = booted(runner, port)
    try:
        report = second.wait_for("startup_report")[0]
        second.wait_for("gateway_running")
    finally:
        assert second.terminate() == 0
    upgrade = next(phase for phase in report["phases"] if phase["name"] == "upgrade")
    assert upgrade["warnings"] == [] and "checkpoint" not in upgrade["figures"]
