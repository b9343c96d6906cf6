"""What the upgrade tests share: a state volume as the image lays it out, the gate's plan for a
release, stand-in CLIs that answer the preflight and make and read archives, and a gateway-like
state with live databases."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from entrypoint.boot import upgrade
from entrypoint.common import swapjournal
from entrypoint.common.plans import BackupPlan, PreflightPlan, StopFlag, UpgradePlan
from entrypoint.common.releases import Release
from entrypoint.common.settings import Name, UpgradeSettings

REPO = Path(__file__).resolve().parents[3]
PREFLIGHT_CLI = REPO / "tests" / "standins" / "preflight_cli.py"
BACKUP_CLI = REPO / "tests" / "standins" / "backup_cli.py"
SECRET = "gateway-token"
OLD = Release("openclaw", "2026.1.29")
NEW = Release("openclaw", "2026.9.6", "eb377ac5")
ROLLBACK = "docker compose run --rm moltbot-gateway rollback"
SETTINGS = UpgradeSettings(
    checkpoint=True, preflight_warns=False, keep=2, workspace_max_bytes=8 << 20, allow_downgrade=False
)


def layout(root: Path) -> tuple[Path, Path, Path]:
    """(state dir, home, workspace) of a volume at `root` (and a workspace beside it)."""
    state, home, workspace = root / "volume" / "gateway", root / "volume" / "home", root / "workspace"
    for path in (state, home, workspace, root / "volume" / ".moltbot-init"):
        path.mkdir(parents=True, exist_ok=True)
    return state, home, workspace


def plan_for(
    root: Path,
    release: Release | None = NEW,
    verdict: str = "exact",
    agent_verdict: str = "exact",
    log: Path | None = None,
    **settings: object,
) -> UpgradePlan:
    state, home, workspace = layout(root)
    cli = (sys.executable, str(PREFLIGHT_CLI), "--verdict", verdict, "--agent-verdict", agent_verdict)
    if log is not None:
        cli = (*cli, "--log", str(log))
    preflight = PreflightPlan(
        state_argv=(*cli, "database", "preflight", "PATH", "--json"),
        agent_argv=(*cli, "database", "preflight-agent", "PATH", "--agent-id", "AGENT", "--json"),
        state_db="state/openclaw.sqlite",
        agent_dbs="agents/*/agent/openclaw-agent.sqlite",
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        state_dir_env=("OPENCLAW_STATE_DIR",),
        timeout_s=20.0,
    )
    names = (Name.UPGRADE_CHECKPOINT, Name.UPGRADE_PREFLIGHT, Name.ALLOW_DOWNGRADE)
    return UpgradePlan(
        release=release,
        record_dir=str(root / "volume" / ".moltbot-init"),
        trees=(("gateway", str(state)), ("home", str(home))),
        workspace=str(workspace),
        config_names=("openclaw.json", "moltbot.json", "clawdbot.json"),
        stamp=("meta", "lastTouchedVersion"),
        settings=replace(SETTINGS, **settings),
        preflight=preflight,
        variables={name: f"MOLTBOT_{name}" for name in names},
        rollback=ROLLBACK,
        program="gateway",
    )


def gate(plan: UpgradePlan) -> upgrade.UpgradeResult:
    """The phase, as the boot runs it; its state lock let go at once (a boot holds it for life)."""
    result = upgrade.run(plan, StopFlag())
    if result.lock is not None:
        os.close(result.lock)
    return result


def events(result: upgrade.UpgradeResult) -> list[str]:
    return [warning["event"] for warning in result.warnings]


def database(path: Path, rows: int, version: int = 18, keep_wal: bool = True) -> None:
    """A WAL database as a gateway leaves it when killed: `rows` committed rows, those past the
    first still only in its -wal (a process that writes them, then dies without a checkpoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    script = f"""
import os, sqlite3
db = sqlite3.connect({str(path)!r}, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("PRAGMA user_version={version}")
db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)")
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
for number in range({rows}):
    db.execute("INSERT INTO notes (body) VALUES (?)", (f"note {{number}}" * 20,))
os._exit(0) if {keep_wal} else db.close()
"""
    subprocess.run([sys.executable, "-c", script], check=True)


def rows(path: Path) -> int:
    reader = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return int(reader.execute("SELECT count(*) FROM notes").fetchone()[0])
    finally:
        reader.close()


def gateway_state(state: Path, stamp: str | None = OLD.version) -> None:
    """What a gateway leaves in its state dir: its config (stamped), its databases, its secrets."""
    config = {"gateway": {"mode": "local"}} | ({"meta": {"lastTouchedVersion": stamp}} if stamp else {})
    (state / "openclaw.json").write_text(json.dumps(config))
    (state / "credentials").mkdir(exist_ok=True)
    (state / "credentials" / "oauth.json").write_text('{"token": "not-a-secret"}')
    (state / "credentials" / "oauth.json").chmod(0o600)
    database(state / "state" / "openclaw.sqlite", 40)
    database(state / "agents" / "main" / "agent" / "openclaw-agent.sqlite", 25, version=7)


def backup_plan_for(
    root: Path, version: str = NEW.version, refuse: str = "", log: Path | None = None, supported: bool = True
) -> BackupPlan:
    """The archives of the volume at `root`, made and read by the stand-in CLI as `version`, into
    `<root>/backups`."""
    state, _, workspace = layout(root)
    cli = (sys.executable, str(BACKUP_CLI), "--version", version, "--refuse", refuse)
    if log is not None:
        cli = (*cli, "--log", str(log))
    commands = {
        "create": ("backup", "create", "--verify", "--output", "OUTPUT", "--json"),
        "verify": ("backup", "verify", "ARCHIVE", "--json"),
        "restore": ("backup", "restore", "ARCHIVE", "--target", "TARGET", "--json"),
    }
    (root / "backups").mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(root / "volume" / "home")}
    return BackupPlan(
        supported=supported,
        since="openclaw 2026.9",
        secret_path=str(root / "volume" / ".moltbot-init" / SECRET),
        directory=str(root / "backups"),
        keep=7,
        argv={name: (*cli, *args) for name, args in commands.items()},
        env={**env, "OPENCLAW_STATE_DIR": str(state), "OPENCLAW_WORKSPACE_DIR": str(workspace)},
        state_dir_env=("OPENCLAW_STATE_DIR",),
        archive_suffix="-openclaw-backup.tar.gz",
        state_asset="state",
        timeout_s=60.0,
    )


def killed_at_seeded_points(
    step: Callable[[], dict[str, Any]], volume: Path, seed: int, count: int
) -> Iterator[tuple[int, int, bool]]:
    """A swap (`step`) SIGKILLed at `count` of its filesystem calls, chosen by `seed`, each time on
    a fresh copy of `volume` as it is now: (the kill's number, the call it came at, whether the
    swap's journal was written by then). The caller then checks what a next run or boot makes of it."""
    from tests.boot.migration.killing import killed

    snapshot = volume.with_name(volume.name + "-before-the-kills")
    subprocess.run(["cp", "-a", str(volume), str(snapshot)], check=True)
    calls = killed(step).calls
    for number, kill_at in enumerate(
        sorted(random.Random(seed).sample(range(1, calls + 1), min(calls, count)))
    ):
        subprocess.run(["rm", "-rf", str(volume)], check=True)
        subprocess.run(["cp", "-a", str(snapshot), str(volume)], check=True)
        assert killed(step, kill_at).killed
        yield number, kill_at, (volume / ".moltbot-init" / swapjournal.FILE).exists()
