"""The moltbot gateway as data: its paths, legacy names, config names, command and environment.

This module imports nothing of the init's: `entrypoint.__main__` reads it and wires it in, so the
generic init never learns the gateway's names and this file can be read on its own.
"""

from __future__ import annotations

import json
import os

APP_NAME = "moltbot"
ENV_PREFIX = "MOLTBOT_"

USER = "node"
STATE_DIR = "/var/lib/moltbot"
WORKSPACE_DIR = "/home/node/clawd"
RUN_DIR = "/run/moltbot"

# Where each generation kept its state by default, oldest first: clawdbot, moltbot, a short-lived
# typo'd name, then openclaw. The first that holds data is migrated into STATE_DIR.
LEGACY_DIRS = (
    "/home/node/.clawdbot",
    "/home/node/.moltbot",
    "/home/node/.moldbot",
    "/home/node/.openclaw",
)

# The init's own records inside the state volume (migration record, boot ledger, generated token).
INIT_DIR_NAME = ".moltbot-init"
TOKEN_FILE_NAME = "gateway-token"
LEDGER_FILE_NAME = "boot-ledger.json"

APP_DIR = "/app"
CLI = ("node", f"{APP_DIR}/moltbot.mjs")
PROGRAM_NAME = "gateway"
GATEWAY_PORT = 18789

# Each generation reads its own variables; openclaw ignores MOLTBOT_* and moltbot still reads
# CLAWDBOT_* for most things. Setting every name is what keeps all of them on the state volume.
STATE_DIR_ENV_NAMES = ("MOLTBOT_STATE_DIR", "CLAWDBOT_STATE_DIR", "OPENCLAW_STATE_DIR")
TOKEN_ENV_NAMES = ("MOLTBOT_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_TOKEN", "CLAWDBOT_GATEWAY_TOKEN")

# Config file names per generation, in the state dir. openclaw still reads clawdbot.json but
# not moltbot.json, which migration therefore renames to openclaw.json.
CONFIG_NAMES = {"openclaw": "openclaw.json", "moltbot": "moltbot.json", "clawdbot": "clawdbot.json"}


def installed_generation(app_dir: str = APP_DIR) -> str:
    """Which generation of the gateway the image carries, from its package.json (moltbot if unknown)."""
    for manifest in (os.path.join(app_dir, "package.json"), os.path.join(app_dir, "gateway.json")):
        try:
            with open(manifest, encoding="utf-8") as handle:
                name = json.load(handle).get("name", "")
        except (OSError, ValueError, AttributeError):
            continue
        if name in CONFIG_NAMES:
            return name
    return "moltbot"


def config_names(generation: str) -> tuple[str, ...]:
    """Config file names, the installed generation's first: an older name is renamed to it."""
    preferred = CONFIG_NAMES[generation]
    return (preferred, *(name for name in CONFIG_NAMES.values() if name != preferred))


def gateway_command(port: int, args: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The supervised gateway: reachable through the published port (bind lan), token auth,
    first start without a config (`--allow-unconfigured`), plus any arguments given to the init."""
    return (*CLI, "gateway", "--allow-unconfigured", "--bind", "lan", "--port", str(port), *args)


def cli_command(args: tuple[str, ...]) -> tuple[str, ...]:
    """`moltbot ARGS` on PATH runs the gateway's own CLI."""
    return (*CLI, *args)


def gateway_environment(state_dir: str, workspace_dir: str) -> dict[str, str]:
    """Variables the gateway (and its CLI) need on top of the container's environment."""
    env = {name: state_dir for name in STATE_DIR_ENV_NAMES}
    # openclaw puts its workspace under the state dir once OPENCLAW_STATE_DIR is set, not in
    # ~/clawd: point it back at the workspace volume.
    env["OPENCLAW_WORKSPACE_DIR"] = workspace_dir
    # openclaw otherwise runs its own crash triage on every failed start (~10 s, and a zip in the
    # state volume each time): restarts are ours.
    env["OPENCLAW_SUPERVISOR_MODE"] = "external"
    # moltbot.mjs re-spawns node as a child unless told not to: the supervised PID must be the
    # gateway itself, or signals and exit codes reach a wrapper instead.
    env["CLAWDBOT_NO_RESPAWN"] = "1"
    return env
