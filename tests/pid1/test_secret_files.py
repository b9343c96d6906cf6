"""Secrets from files (`NAME_FILE=PATH`, the official images' `file_env`), seen from outside: read
once at the boot, as root before the drop, into the gateway's environment as NAME; the `_FILE`
variables never reach it; any file that cannot be read, or NAME and NAME_FILE both set, is exit 78
and one `invalid_setting` line that names the variable and the path, never the value."""

from __future__ import annotations

import json
import os
import pwd
from pathlib import Path

import pytest

from tests.conftest import InitRunner
from tests.pid1.test_supervise_mode import supervised
from tests.test_multicall import call_as

pytestmark = pytest.mark.pid1

TOKEN = "token-from-a-file-8c1f2e"
API_KEY = "sk-from-a-file 7d3a"  # a space inside: only trailing newlines are taken off


@pytest.fixture
def secrets(init: InitRunner) -> Path:
    """A directory of root-only secret files (0400, root's), as compose and podman mount them."""
    path = init.box / "secrets"
    path.mkdir(mode=0o755)
    return path


def secret(directory: Path, name: str, content: bytes) -> Path:
    path = directory / name
    path.write_bytes(content)
    path.chmod(0o400)
    return path


def test_secret_files_reach_the_gateway_as_their_names_and_the_file_variables_do_not(
    init: InitRunner, secrets: Path, test_user: pwd.struct_passwd
) -> None:
    token = secret(secrets, "token", f"{TOKEN}\n".encode())
    api_key = secret(secrets, "openai", f"{API_KEY}\r\n".encode())
    with supervised(
        init,
        MOLTBOT_USER=test_user.pw_name,  # the gateway runs as a user that cannot read the files
        MOLTBOT_GATEWAY_TOKEN_FILE=str(token),
        OPENAI_API_KEY_FILE=str(api_key),
        SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt",  # a path the gateway opens itself
    ) as running:
        env = json.loads(running.envfile.read_text())
        status = init.tool("status", "--json", timeout=30)
        run_dir_files = {
            path.name: path.read_bytes() for path in (init.box / "run").iterdir() if path.is_file()
        }
        _, stdout, stderr = running.stop()
    assert (env["OPENCLAW_GATEWAY_TOKEN"], env["OPENAI_API_KEY"]) == (TOKEN, API_KEY)
    assert [key for key in env if key.endswith("_FILE")] == ["SSL_CERT_FILE"]
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    # Taken from the file: no token was generated.
    assert not (init.box / "state" / ".moltbot-init" / "gateway-token").exists()
    # Never in a line of the init, the startup report, supervisord's config or `status`; the report
    # says where each came from.
    assert status.returncode == 0, status.stderr
    said = stdout + stderr + status.stdout + status.stderr
    for value in (TOKEN, API_KEY):
        assert value not in said
        assert not [name for name, content in run_dir_files.items() if value.encode() in content]
    assert "supervisord.conf" in run_dir_files and "startup-report.json" in run_dir_files
    report = json.loads(run_dir_files["startup-report.json"])
    config = next(phase for phase in report["phases"] if phase["name"] == "config")
    assert config["figures"]["secret_files"] == {
        "MOLTBOT_GATEWAY_TOKEN": str(token),
        "OPENAI_API_KEY": str(api_key),
    }


def _fifo(directory: Path) -> Path:
    path = directory / "fifo"
    os.mkfifo(path, 0o600)
    return path


# name: (the variable, what its path is, other variables); the value of any secret never shows.
REFUSALS = {
    "missing": ("OPENAI_API_KEY_FILE", lambda d: d / "absent", {}),
    "directory": ("OPENAI_API_KEY_FILE", lambda d: d, {}),
    "fifo": ("OPENAI_API_KEY_FILE", _fifo, {}),
    "empty": ("MOLTBOT_GATEWAY_TOKEN_FILE", lambda d: secret(d, "empty", b"\n"), {}),
    "not-utf8": ("OPENAI_API_KEY_FILE", lambda d: secret(d, "latin1", b"caf\xe9-" + API_KEY.encode()), {}),
    "too-large": ("OPENAI_API_KEY_FILE", lambda d: secret(d, "large", API_KEY.encode() * 4000), {}),
    "nul": ("OPENAI_API_KEY_FILE", lambda d: secret(d, "nul", API_KEY.encode() + b"\0x"), {}),
    "both-set": (
        "MOLTBOT_GATEWAY_TOKEN_FILE",
        lambda d: secret(d, "token", TOKEN.encode()),
        {"MOLTBOT_GATEWAY_TOKEN": API_KEY},
    ),
    "setting-of-the-init": ("MOLTBOT_LOG_LEVEL_FILE", lambda d: secret(d, "level", b"debug"), {}),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_a_secret_file_that_cannot_be_taken_is_exit_78_naming_variable_and_path_not_value(
    init: InitRunner, secrets: Path, case: str
) -> None:
    variable, make, others = REFUSALS[case]
    path = str(make(secrets))
    result = init.run("true", timeout=30, **{variable: path, **others})
    assert result.returncode == 78, result.stderr
    assert len(result.lines) == 1, result.stderr
    [line] = result.lines
    assert (line["event"], line["setting"], line["value"]) == ("invalid_setting", variable, path)
    assert TOKEN not in result.stderr + result.stdout and API_KEY not in result.stderr + result.stdout
    assert not (init.box / "run").exists()  # refused before anything was written


def test_a_relative_path_is_refused(init: InitRunner) -> None:
    result = init.run("true", timeout=30, OPENAI_API_KEY_FILE="run/secrets/openai")
    assert result.returncode == 78 and len(result.lines) == 1
    assert (result.lines[0]["setting"], result.lines[0]["value"]) == (
        "OPENAI_API_KEY_FILE",
        "run/secrets/openai",
    )


def test_a_root_only_file_is_refused_to_an_init_started_as_another_user(
    init: InitRunner, secrets: Path, test_user: pwd.struct_passwd
) -> None:
    """Started as the user (`--user`, runAsNonRoot), the init reads the files as that user."""
    token = secret(secrets, "token", TOKEN.encode())
    as_user = ["setpriv", f"--reuid={test_user.pw_uid}", f"--regid={test_user.pw_gid}", "--init-groups"]
    result = init.tool("true", under=as_user, MOLTBOT_GATEWAY_TOKEN_FILE=str(token), timeout=30)
    assert result.returncode == 78, result.stderr
    [line] = [json.loads(text) for text in result.stderr.splitlines()]
    assert (line["setting"], line["value"]) == ("MOLTBOT_GATEWAY_TOKEN_FILE", str(token))
    assert "Permission denied" in line["accepted"] and TOKEN not in result.stderr


def test_the_gateway_s_cli_takes_the_secret_files_too(
    init: InitRunner, secrets: Path, test_user: pwd.struct_passwd
) -> None:
    """`docker exec moltbot moltbot ...` (root): the CLI reads them before it drops to the user."""
    token = secret(secrets, "token", f"{TOKEN}\n".encode())
    bin_dir = init.box / "bin"
    bin_dir.mkdir()
    node = bin_dir / "node"
    node.write_text(
        '#!/bin/sh\nprintf \'{"token": "%s", "files": "%s"}\\n\' "$OPENCLAW_GATEWAY_TOKEN" '
        '"$(env | grep -c _FILE=)"\n'
    )
    node.chmod(0o755)
    result = call_as(
        init,
        "moltbot",
        "status",
        MOLTBOT_USER=test_user.pw_name,
        MOLTBOT_GATEWAY_TOKEN_FILE=str(token),
        PATH=f"{bin_dir}:/usr/bin:/bin",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"token": TOKEN, "files": "0"}
