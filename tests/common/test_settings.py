"""Settings: defaults, every setting's validation, and the exit-78 contract's data."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.common import settings

DEFAULTS = settings.Defaults(
    env_prefix="APP_",
    user="root",
    state_dir="/var/lib/app",
    workspace_dir="/home/app/work",
    run_dir="/run/app",
    legacy_dirs=("/home/app/.old",),
    program_port=18789,
    program_cli=("node", "/app/cli.mjs"),
)


def load(**env: str) -> settings.Settings:
    return settings.load(env, DEFAULTS, as_root=True)


def test_defaults_come_from_the_profile() -> None:
    settings = load()
    assert (settings.state_dir, settings.workspace_dir, settings.run_dir) == (
        "/var/lib/app",
        "/home/app/work",
        "/run/app",
    )
    assert settings.user.uid == 0
    assert settings.log_format == "json" and settings.log_level == "info"
    assert settings.program_command == () and settings.program_port == 18789
    assert (settings.ownership_mode, settings.migration_mode) == ("auto", "auto")
    assert settings.legacy_dirs == ("/home/app/.old",)
    restart = settings.restart
    assert (restart.backoff_initial_s, restart.backoff_max_s, restart.backoff_reset_s) == (1, 60, 600)
    assert (restart.crashloop_burst, restart.crashloop_window_s, restart.crashloop_action) == (5, 300, "hold")
    # The gateway's own stop policy (it drains up to 315 s); a hold is tried again after 15 min.
    assert (restart.stop_timeout_s, restart.stop_clocks.supervisord_s, restart.hold_retry_s) == (
        330,
        330,
        900,
    )
    assert settings.program_cli == ("node", "/app/cli.mjs") and settings.handoff_timeout_s == 45


def test_the_gateway_cli_is_split_like_a_shell_and_a_hold_retry_of_0_means_never() -> None:
    settings = load(APP_GATEWAY_CLI="python3 '/opt/my cli.py' --quiet", APP_HOLD_RETRY="0")
    assert settings.program_cli == ("python3", "/opt/my cli.py", "--quiet")
    assert settings.restart.hold_retry_s == 0
    assert load(APP_GATEWAY_CLI="").program_cli == ("node", "/app/cli.mjs")


def test_ownership_roots_are_the_three_dirs_then_extra_paths_without_duplicates() -> None:
    settings = load(APP_CHOWN_PATHS="/data/a:/run/app:/data/b")
    assert settings.ownership_roots == ("/var/lib/app", "/home/app/work", "/run/app", "/data/a", "/data/b")


def test_gateway_command_is_split_like_a_shell_without_running_one() -> None:
    settings = load(APP_GATEWAY_COMMAND="python3 -c 'print(1); import sys' \"$HOME\"")
    assert settings.program_command == ("python3", "-c", "print(1); import sys", "$HOME")


def test_paths_are_normalised() -> None:
    assert load(APP_STATE_DIR="/data//state/../state/").state_dir == "/data/state"


@pytest.mark.parametrize(
    ("variable", "value", "accepted_fragment"),
    [
        ("PUID", "abc", "numeric id"),
        ("PGID", "-5", "numeric id"),
        ("PUID", "99999999999", "numeric id"),
        ("APP_USER", "bogus", "existing user"),
        ("APP_USER", "0day", "existing user"),
        ("APP_USER", "0:bogus", "existing user"),
        ("APP_STATE_DIR", "relative/path", "absolute path"),
        ("APP_WORKSPACE_DIR", "", "absolute path"),
        ("APP_RUN_DIR", "run", "absolute path"),
        ("APP_CHOWN_PATHS", "/ok:relative", "absolute path"),
        ("APP_LEGACY_DIRS", "~/.old", "absolute path"),
        ("APP_LOG_FORMAT", "xml", "json, text"),
        ("APP_LOG_LEVEL", "verbose", "debug, info, warning, error"),
        ("APP_FIX_OWNERSHIP", "yes", "auto, off"),
        ("APP_MIGRATE", "force", "auto, off, merge-missing"),
        ("APP_CRASHLOOP_ACTION", "restart", "hold, exit"),
        ("APP_CRASHLOOP_BURST", "0", "whole number"),
        ("APP_CRASHLOOP_BURST", "2.5", "whole number"),
        ("APP_CRASHLOOP_WINDOW", "-1", "seconds"),
        ("APP_BACKOFF_INITIAL", "soon", "seconds"),
        ("APP_BACKOFF_MAX", "0", "seconds"),
        ("APP_BACKOFF_RESET", "nan", "seconds"),
        ("APP_STOP_TIMEOUT", "inf", "seconds"),
        ("APP_GATEWAY_PORT", "70000", "TCP port"),
        ("APP_GATEWAY_COMMAND", "'unbalanced", "command line"),
        ("APP_GATEWAY_COMMAND", "   ", "command line"),
        ("APP_GATEWAY_CLI", "'unbalanced", "command line"),
        ("APP_HOLD_RETRY", "-1", "0 to never retry"),
        ("APP_HANDOFF_TIMEOUT", "0", "seconds"),
    ],
)
def test_invalid_value_names_the_setting_the_value_and_what_is_accepted(
    variable: str, value: str, accepted_fragment: str
) -> None:
    with pytest.raises(settings.ConfigError) as raised:
        load(**{variable: value})
    assert (raised.value.setting, raised.value.value) == (variable, value)
    assert accepted_fragment in raised.value.accepted


@pytest.mark.parametrize("variable", ["APP_STATE_DIR", "APP_WORKSPACE_DIR", "APP_RUN_DIR", "APP_CHOWN_PATHS"])
@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/etc",
        "/usr",
        "/usr/local/lib",
        "/bin",
        "/sbin",
        "/lib",
        "/lib64",
        "/proc",
        "/sys/fs",
        "/dev",
        "/boot",
        "/run",
        "/var",
        "/var/../etc",
    ],
)
def test_system_trees_are_refused_as_roots_to_repair(variable: str, path: str) -> None:
    with pytest.raises(settings.ConfigError) as raised:
        load(**{variable: path})
    assert raised.value.setting == variable


@pytest.mark.parametrize("path", ["/run/app", "/var/lib/app", "/home/node/clawd", "/srv/data", "/data"])
def test_data_directories_are_accepted_as_roots(path: str) -> None:
    assert load(APP_STATE_DIR=path).state_dir == path


def test_non_root_start_targets_the_current_user_and_still_checks_an_explicit_spec() -> None:
    loaded = settings.load({}, DEFAULTS, as_root=False)
    assert loaded.started_as_root is False
    with pytest.raises(settings.ConfigError):
        settings.load({"APP_USER": "bogus"}, DEFAULTS, as_root=False)


def test_secret_values_are_redacted_in_errors() -> None:
    error = settings.ConfigError("APP_TOKEN", "s3cret", "anything", secret=True)
    assert "s3cret" not in str(error) and error.value == "<redacted>"


@given(st.integers(min_value=1, max_value=65535))
def test_every_valid_port_is_accepted(port: int) -> None:
    assert load(APP_GATEWAY_PORT=str(port)).program_port == port


@given(st.text(min_size=1).filter(lambda text: not text.strip().isdigit()))
def test_anything_but_a_number_is_refused_as_puid(text: str) -> None:
    with pytest.raises(settings.ConfigError):
        load(PUID=text)


def test_secret_files_are_the_program_s_variables_only() -> None:
    """The frozen loader's own `_PYI_ARCHIVE_FILE` (the init's executable) and the paths the program
    opens itself are never read as secrets; another `NAME_FILE` is, and is hidden from the program."""
    loaded = settings.load(
        {
            "_PYI_ARCHIVE_FILE": "/opt/init/init",
            "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
            "OPENAI_API_KEY_FILE": "/run/secrets/openai",
        },
        dataclasses.replace(DEFAULTS, path_variables=frozenset({"SSL_CERT_FILE"})),
        as_root=True,
    )
    assert loaded.secret_files == (settings.SecretFile("OPENAI_API_KEY", "/run/secrets/openai"),)
    assert "OPENAI_API_KEY_FILE" in loaded.variables
    assert not {"_PYI_ARCHIVE_FILE", "SSL_CERT_FILE"} & loaded.variables


@pytest.mark.parametrize(
    ("value", "address"),
    [
        ("", None),
        ("9800", ("", 9800)),
        (":9800", ("", 9800)),
        ("0.0.0.0:9800", ("0.0.0.0", 9800)),
        ("127.0.0.1:9800", ("127.0.0.1", 9800)),
        ("[::]:9800", ("::", 9800)),
        ("[::1]:1", ("::1", 1)),
    ],
)
def test_the_metrics_address_is_a_port_with_an_optional_ip_address(
    value: str, address: tuple[str, int] | None
) -> None:
    assert load(APP_METRICS_ADDRESS=value).metrics_address == address


@pytest.mark.parametrize(
    "value",
    [
        "localhost:9800",
        "metrics:9800",
        "::1:9800",
        "[]:9800",
        "[::1]",
        "0.0.0.0:",
        "0.0.0.0:0",
        "1.2.3.4:65536",
        "1.2.3:80",
        "0.0.0.0:\u0669\u0668",
        " 9800",
        "9800/tcp",
    ],
)
def test_a_metrics_address_that_is_not_one_is_refused_naming_what_is_accepted(value: str) -> None:
    with pytest.raises(settings.ConfigError) as raised:
        load(APP_METRICS_ADDRESS=value)
    assert (raised.value.setting, raised.value.value) == ("APP_METRICS_ADDRESS", value)
    assert "PORT" in raised.value.accepted and "IP address" in raised.value.accepted
