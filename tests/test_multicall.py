"""One program, several names: the init, `moltbot` (the gateway's CLI), supervisorctl; and the
settings contract (exit 78, one JSON line) seen from outside."""

from __future__ import annotations

import json
import pwd
import subprocess
from pathlib import Path

import pytest

from entrypoint.__main__ import SUBCOMMANDS
from tests.conftest import InitRunner, parse_lines

pytestmark = pytest.mark.pid1

# Stands in for `node`: reports who runs it, with which arguments and environment.
FAKE_NODE = """#!/bin/sh
printf '{"uid": %s, "args": "%s", "state": "%s", "respawn": "%s", "token": "%s", "home": "%s",' \\
  "$(id -u)" "$*" "$OPENCLAW_STATE_DIR" "$OPENCLAW_NO_RESPAWN" "$OPENCLAW_GATEWAY_TOKEN" "$HOME"
printf ' "legacy": "%s"}\\n' "$(env | grep -c -e '^MOLTBOT_' -e '^CLAWDBOT_')"
exit 3
"""


@pytest.fixture
def fake_node(box: Path) -> Path:
    bin_dir = box / "bin"
    bin_dir.mkdir()
    node = bin_dir / "node"
    node.write_text(FAKE_NODE)
    node.chmod(0o755)
    return bin_dir


def call_as(init: InitRunner, name: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the program as if called through a symlink named `name` (argv[0])."""
    code = f"import sys; from entrypoint.__main__ import main; sys.exit(main({[name, *args]!r}))"
    return subprocess.run(
        [init.python, "-c", code], env=init.env(**env), cwd="/", capture_output=True, text=True, timeout=60
    )


def test_moltbot_name_runs_the_gateway_cli_as_the_target_user_with_the_gateway_environment(
    init: InitRunner, fake_node: Path, test_user: pwd.struct_passwd
) -> None:
    path = f"{fake_node}:/usr/bin:/bin"
    result = call_as(
        init,
        "moltbot",
        "status",
        "--json",
        PATH=path,
        MOLTBOT_USER=test_user.pw_name,
        MOLTBOT_GATEWAY_TOKEN="t0ken",
    )
    assert result.returncode == 3, result.stderr  # the CLI's own exit code
    seen = json.loads(result.stdout)
    assert seen["uid"] == test_user.pw_uid
    assert seen["args"] == "/app/moltbot.mjs status --json"
    # The gateway's state dir and HOME are in the state volume; it sees its generation's names only
    # (with no manifest in /app, the oldest openclaw: OPENCLAW_*), never the init's MOLTBOT_*.
    state = init.box / "state"
    assert (seen["state"], seen["respawn"], seen["token"]) == (str(state / "gateway"), "1", "t0ken")
    assert seen["home"] == str(state / "home")
    assert seen["legacy"] == "0"


def test_moltbot_as_first_argument_boots_then_runs_the_cli_once_and_passes_its_code(
    init: InitRunner, fake_node: Path
) -> None:
    result = init.run("moltbot", "--version", PATH=f"{fake_node}:/usr/bin:/bin")
    assert result.returncode == 3
    assert json.loads(result.stdout)["args"] == "/app/moltbot.mjs --version"
    assert result.events("startup_report")[0]["mode"] == "run"


def test_unknown_program_name_is_refused_without_booting(init: InitRunner) -> None:
    result = call_as(init, "/usr/local/bin/sneaky")
    assert result.returncode == 64
    lines = parse_lines(result.stderr)
    assert [line["event"] for line in lines] == ["unknown_program_name"]
    assert not (init.box / "run").exists()


def test_help_and_version_answer_without_booting(init: InitRunner) -> None:
    helped = init.run("--help", pid1=False)
    versioned = init.run("--version", pid1=False)
    assert helped.returncode == 0 and "usage:" in helped.stdout
    for name, subcommand in SUBCOMMANDS.items():  # each row of the dispatch table, with its help
        assert f"moltbot-init {name} {subcommand.usage}" in helped.stdout
    assert versioned.returncode == 0 and versioned.stdout.startswith("moltbot-init ")
    assert not (init.box / "run").exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PUID", "abc"),
        ("PGID", "1.5"),
        ("UMASK", "0o22"),
        ("UMASK", "778"),
        ("UMASK", "01777"),
        ("MOLTBOT_STATE_DIR", "relative/state"),
        ("MOLTBOT_LOG_FORMAT", "xml"),
        ("MOLTBOT_LOG_LEVEL", "loud"),
        ("MOLTBOT_MIGRATE", "yes-please"),
        ("MOLTBOT_CRASHLOOP_BURST", "0"),
        ("MOLTBOT_CHOWN_PATHS", "/etc"),
        ("MOLTBOT_GATEWAY_COMMAND", "'unterminated"),
        ("MOLTBOT_CONFIG_SEED", "seed/openclaw.json"),
        ("MOLTBOT_METRICS_ADDRESS", "localhost:9800"),
        ("MOLTBOT_METRICS_ADDRESS", "0.0.0.0:70000"),
        ("MOLTBOT_METRICS_ADDRESS", "::1:9800"),
    ],
)
def test_invalid_setting_exits_78_with_exactly_one_json_line_naming_it(
    init: InitRunner, variable: str, value: str
) -> None:
    result = init.run("true", **{variable: value})
    assert result.returncode == 78
    assert len(result.lines) == 1, result.stderr
    line = result.lines[0]
    assert (line["event"], line["level"], line["setting"], line["value"]) == (
        "invalid_setting",
        "error",
        variable,
        value,
    )
    assert line["accepted"] and "Traceback" not in result.stderr
    assert not (init.box / "run").exists()


def test_text_log_format_gives_readable_lines(init: InitRunner) -> None:
    process = subprocess.run(
        init.command("true"),
        env=init.env(MOLTBOT_LOG_FORMAT="text"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 0
    assert process.stderr and not process.stderr.lstrip().startswith("{")
    assert "startup_report" in process.stderr
