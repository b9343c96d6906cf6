"""The moltbot gateway as plain data: its paths, legacy names, generations, command and environment.

Read by `entrypoint/wiring.py` only (the generic init never learns the gateway's names); this
module imports nothing of the init's and can be read on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

APP_NAME = "moltbot"
ENV_PREFIX = "MOLTBOT_"

USER = "node"
STATE_DIR = "/var/lib/moltbot"  # the state volume
WORKSPACE_DIR = "/home/node/clawd"  # the workspace volume
RUN_DIR = "/run/moltbot"

# Inside the state volume. The gateway's state dir holds nothing of the init's: openclaw skips its
# slow legacy-state migration step on a first start only when its state dir holds nothing but its
# config. Its HOME is on the volume too: it writes there (~/.config/openclaw holds a key that must
# survive a recreate, ~/.cache a temp dir it cannot start without), the image may be read-only, and
# a legacy dir bind-mounted under /home/node is then never scanned by the gateway itself.
GATEWAY_DIR_NAME = "gateway"
HOME_DIR_NAME = "home"
# The init's own records (migration record, legacy copies, boot ledger, generated token).
INIT_DIR_NAME = ".moltbot-init"
TOKEN_FILE_NAME = "gateway-token"
LEDGER_FILE_NAME = "boot-ledger.json"
# What the installed gateway's CLI answered about restart handoffs (asked once per image).
HANDOFF_CACHE_FILE_NAME = "restart-handoff.json"
# Names at the volume's root that are not the gateway's state (ext4 makes lost+found).
VOLUME_ROOT_NAMES = (GATEWAY_DIR_NAME, HOME_DIR_NAME, INIT_DIR_NAME, "lost+found")
# What the gateway keeps in its state dir, every generation's (as its docs and code name it), as
# patterns: an earlier version of this image kept the state at the volume's root, and these are
# what is moved from there into GATEWAY_DIR_NAME. Anything else at the root (a `backups/` of the
# user's) is the user's and stays. The seed's failed start left `cron/`, `canvas/`, `logs/` there.
STATE_ENTRIES = (
    # its config, under every generation's name, with its backups and temporaries
    "openclaw.json*",
    "moltbot.json*",
    "clawdbot.json*",
    ".env",
    "*.log",
    # what it writes
    "agent",
    "agents",
    "bin",
    "browser",
    "cache",
    "canvas",
    "completions",
    "config-journal-fingerprint.key",
    "credentials",
    "cron",
    "delivery-queue",
    "devices",
    "dns",
    "exec-approvals.json",
    "extensions",
    "gateway.password",
    "gateway.token",
    "hooks",
    "identity",
    "logs",
    "matrix",
    "media",
    "memory",
    "models",
    "nodes",
    "npm",
    "npm-runtime",
    "plugins",
    "policies",
    "sandbox",
    "sandboxes",
    "secrets",
    "secrets.json",
    "session-sqlite-migration-runs",
    "sessions",
    "settings",
    "skills",
    "state",
    "subagents",
    "tmp",
    "tools",
    "transcripts",
    "usage-footer.json",
    "voice-calls",
    "wiki",
    "workspace",
    "workspace-*",
)

# Where each generation kept its state by default, oldest first: clawdbot, moltbot, a short-lived
# typo'd name, then openclaw. The first that holds data is migrated into the gateway's state dir.
LEGACY_DIRS = (
    "/home/node/.clawdbot",
    "/home/node/.moltbot",
    "/home/node/.moldbot",
    "/home/node/.openclaw",
)

APP_DIR = "/app"
# What the image records about the gateway it installed ({"name", "version", "bin"}), then npm's.
MANIFESTS = (f"{APP_DIR}/gateway.json", f"{APP_DIR}/package.json")
CLI = ("node", f"{APP_DIR}/moltbot.mjs")
PROGRAM_NAME = "gateway"
GATEWAY_PORT = 18789

# The token's names the init accepts from the container's environment, whatever the generation.
TOKEN_ENV_NAMES = ("MOLTBOT_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_TOKEN", "CLAWDBOT_GATEWAY_TOKEN")
# Every prefix any generation ever read; a generation that ignores some warns about each variable.
ALL_PREFIXES = ("OPENCLAW_", "MOLTBOT_", "CLAWDBOT_")
# Variables ending in `_FILE` that name a file the gateway, or a library or tool it runs, opens itself
# (a CA bundle, a config, a web identity token re-read whenever it rotates): its code reads these
# names, and platforms inject the last ones for its cloud SDKs (EKS, Azure workload identity).
# They are passed on as they are; any other `NAME_FILE` gives the gateway NAME, read from the file.
PATH_VARIABLES = frozenset(
    {
        "OPENCLAW_PROXY_CA_FILE",
        "OPENCLAW_VAULT_JWT_FILE",
        "OPENCLAW_CACHE_TRACE_FILE",
        "VAULT_TOKEN_FILE",
        "SSL_CERT_FILE",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
        "AZURE_FEDERATED_TOKEN_FILE",
        "GOOGLE_CHAT_SERVICE_ACCOUNT_FILE",
        "GIT_INDEX_FILE",
        "PIP_CONFIG_FILE",
        "TF_CLI_CONFIG_FILE",
    }
)


@dataclass(frozen=True)
class Generation:
    """What one generation of the gateway reads and where it writes, as its own code has it."""

    package: str  # the npm package
    since: tuple[int, int]  # the first version (year, month) this record describes
    config_name: str  # in its state dir
    state_dir_env: tuple[str, ...]  # set to the gateway's state dir
    workspace_env: tuple[str, ...]  # set to the workspace volume
    token_env: tuple[str, ...]  # set to the token
    # Set as they are: one process under the supervisor (no re-spawned child), and the defaults a
    # container wants (no mDNS on a bridge network: it crash-looped 1,800 times in 19 h upstream; no
    # self-update: the image is the update path; restarts are the supervisor's).
    fixed_env: Mapping[str, str]
    # Prefixes of other generations it ignores: dropped from its environment (each such variable
    # costs a deprecation warning at every start and does nothing).
    ignored_prefixes: tuple[str, ...] = ()
    # Names in its HOME that its code hard-codes under `~` (device identity, sandboxes, logs, the
    # workspace): each points at "gateway" (its state dir) or "workspace" (the workspace volume).
    home_links: Mapping[str, str] = field(default_factory=dict)


GENERATIONS = (
    Generation(
        package="openclaw",
        since=(2026, 2),
        config_name="openclaw.json",
        state_dir_env=("OPENCLAW_STATE_DIR",),
        workspace_env=("OPENCLAW_WORKSPACE_DIR",),
        token_env=("OPENCLAW_GATEWAY_TOKEN",),
        # No OPENCLAW_NO_RESPAWN: its launcher never re-spawns a foreground `gateway` run (the
        # supervised pid is the gateway's own without it), and with it a restart the gateway
        # needs happens in-process instead of as the fresh process, with a restart handoff, that
        # the external-supervisor contract describes.
        fixed_env={
            "OPENCLAW_SUPERVISOR_MODE": "external",
            "OPENCLAW_DISABLE_BONJOUR": "1",
            "OPENCLAW_NO_AUTO_UPDATE": "1",
        },
        ignored_prefixes=("MOLTBOT_", "CLAWDBOT_"),
    ),
    Generation(
        package="openclaw",
        since=(2026, 1),
        config_name="openclaw.json",
        state_dir_env=("OPENCLAW_STATE_DIR",),
        workspace_env=(),
        token_env=("OPENCLAW_GATEWAY_TOKEN",),
        fixed_env={"OPENCLAW_NO_RESPAWN": "1", "OPENCLAW_DISABLE_BONJOUR": "1"},
        # Device identity, sandboxes, canvas and the workspace are hard-coded under ~/.openclaw.
        home_links={".openclaw": "gateway"},
    ),
    Generation(
        package="moltbot",
        since=(2026, 1),
        config_name="moltbot.json",
        state_dir_env=("MOLTBOT_STATE_DIR", "CLAWDBOT_STATE_DIR"),
        workspace_env=(),
        token_env=("CLAWDBOT_GATEWAY_TOKEN",),
        fixed_env={"CLAWDBOT_NO_RESPAWN": "1", "CLAWDBOT_DISABLE_BONJOUR": "1"},
        # identity/, exec-approvals.json, sandboxes/ and logs/ ignore the state dir (upstream #3773).
        home_links={".clawdbot": "gateway", "clawd": "workspace"},
    ),
    Generation(
        package="clawdbot",
        since=(2026, 1),
        config_name="clawdbot.json",
        state_dir_env=("CLAWDBOT_STATE_DIR",),
        workspace_env=(),
        token_env=("CLAWDBOT_GATEWAY_TOKEN",),
        fixed_env={"CLAWDBOT_NO_RESPAWN": "1", "CLAWDBOT_DISABLE_BONJOUR": "1"},
        home_links={".clawdbot": "gateway", "clawd": "workspace"},
    ),
)
# When the image says nothing about its gateway: the oldest reading of the newest package.
DEFAULT_GENERATION = GENERATIONS[1]

# Node sizes its old space from the host's memory, not the container's limit, and a heap that grows
# past the limit is an OOM kill instead of a garbage collection: with a limit and no size of the
# user's own in NODE_OPTIONS, the gateway's heap gets this share of the limit.
HEAP_OPTION = "--max-old-space-size"
HEAP_SHARE = 0.75

# Node's compile cache of the gateway, baked into the image (docker/gateway/warm-compile-cache.mjs).
# The gateway's launcher looks for it as `node-compile-cache` in its temp dir (/tmp; with TMPDIR set
# elsewhere it starts cold, as without the image's cache), where the image links to it; a /tmp that
# is a fresh tmpfs (a read-only image) gets the same link at every boot. (link, its target) pairs.
COMPILE_CACHE_LINKS = (("/tmp/node-compile-cache", "/var/cache/moltbot/node-compile-cache"),)

# Upgrades (the init's upgrade gate). The gateway stamps its config with the release that last wrote
# it, which dates a state the init has no history of.
CONFIG_STAMP = ("meta", "lastTouchedVersion")
# Its own check of a copied state before a release first runs on it (openclaw >= 2026.9, its
# docs/reference/database-schemas/storage-changes.md); `PATH` is the copy, `AGENT` the agent's id.
PREFLIGHT_SINCE = ("openclaw", (2026, 9))
PREFLIGHT = ("database", "preflight", "PATH", "--json")
PREFLIGHT_AGENT = ("database", "preflight-agent", "PATH", "--agent-id", "AGENT", "--json")
STATE_DB = "state/openclaw.sqlite"
AGENT_DBS = "agents/*/agent/openclaw-agent.sqlite"
# Its CLI's cold start took 11 s on a busy 2-core machine; a preflight opens a whole database.
PREFLIGHT_TIMEOUT_S = 180.0
# The gateway's own archives of its state (its docs/cli/backup.md and install/backups.md): `create
# --verify` makes a verified .tar.gz of its state dir (config and credentials in it), its workspace
# and its agents' databases (captured with SQLite's online backup: it runs beside a live gateway);
# `verify` checks one; `restore --target` extracts one into an empty directory, never in place.
# `OUTPUT`, `ARCHIVE` and `TARGET` are replaced. openclaw 2026.9 is the first release these were
# tried with; 2026.1.29 has no `backup` (it answers with its general help), nor has clawdbot.
BACKUP_SINCE = ("openclaw", (2026, 9))
BACKUP_COMMANDS = {
    "create": ("backup", "create", "--verify", "--output", "OUTPUT", "--json"),
    "verify": ("backup", "verify", "ARCHIVE", "--json"),
    "restore": ("backup", "restore", "ARCHIVE", "--target", "TARGET", "--json"),
}
# Its archives are named `<local time>-openclaw-backup.tar.gz`: what retention counts and prunes.
BACKUP_ARCHIVE_SUFFIX = "-openclaw-backup.tar.gz"
# The kind of the asset, in an archive's manifest.json, that is its state dir.
BACKUP_STATE_ASSET = "state"
# Where the scheduled backups go (a volume of their own: compose.backup.yml, the Kubernetes
# component) and how many are kept.
BACKUP_DIR = "/var/backups/moltbot"
BACKUP_KEEP = 7
# One archive of a large state with its workspace: the CLI's cold start, then a copy and a check.
BACKUP_TIMEOUT_S = 3600.0

# How the init's messages tell an operator to roll back: compose.yml's service, the image's
# entrypoint (the subcommand needs no boot).
ROLLBACK_COMMAND = "docker compose run --rm moltbot-gateway rollback"

# The supervised gateway: reachable through the published port (bind lan), token auth, a first
# start without a config (`--allow-unconfigured`); the init's own arguments are appended.
GATEWAY_ARGS = ("gateway", "--allow-unconfigured", "--bind", "lan", "--port")

# The gateway's contract with an external supervisor (openclaw >= 2026.9, probed, never assumed):
# ask once which operations the installed CLI offers, then, after every clean exit, whether that
# exit was a restart the gateway asked for (`PID` is replaced by the exited process' pid).
RESTART_HANDOFF_CAPABILITIES = ("gateway", "restart-handoff", "capabilities", "--json")
RESTART_HANDOFF_CONSUME = ("gateway", "restart-handoff", "consume", "--expected-pid", "PID", "--json")

# A start refused for a cause that passes by itself: the gateway's owner lease on its state dir is
# keyed to the hostname, and a recreated container (a new hostname) is refused for up to 5 minutes
# after an unclean end ("Gateway failed to start: Another Gateway owner lease is still active for
# this state directory", exit 1). The crash guard starts it again every OWNER_LEASE_RETRY_S (or
# MOLTBOT_BACKOFF_MAX, if shorter), not counting these exits, for at most OWNER_LEASE_WAIT_S: longer
# than the lease lives.
OWNER_LEASE_REFUSALS = ("Another Gateway owner lease is still active",)
OWNER_LEASE_RETRY_S = 20.0
OWNER_LEASE_WAIT_S = 360.0
