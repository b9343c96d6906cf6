"""The rendered supervisord.conf, read back by supervisord's own parser."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from supervisor.options import ServerOptions

from entrypoint.common.plans import Program, RestartPolicy
from entrypoint.crashguard import plugin
from entrypoint.pid1 import supervision
from entrypoint.supervisord import INTERFACES, rpcinterface

POLICY = RestartPolicy(1, 60, 600, 5, 300, "hold", 330)


def parse(tmp_path: Path, program: Program, autostart: bool = True) -> ServerOptions:
    layout = supervision.Layout(str(tmp_path))
    supervision.write_config(
        layout, supervision.render(program, POLICY, layout, INTERFACES, autostart=autostart)
    )
    options = ServerOptions()
    options.realize(["-c", layout.config])
    return options


@pytest.fixture
def program() -> Program:
    return Program("gateway", ("node", "/app/x.mjs", "gateway", "--token", "100%", "a b"), {}, "/app")


def test_supervisord_parses_the_config_and_gets_the_program_back_unchanged(
    tmp_path: Path, program: Program
) -> None:
    options = parse(tmp_path, program)
    groups = {group.name: group for group in options.process_group_configs}
    gateway = groups["gateway"].process_configs[0]
    assert shlex.split(gateway.command) == list(program.argv)
    assert gateway.directory == "/app"
    assert (gateway.autostart, gateway.autorestart, gateway.startsecs, gateway.startretries) == (
        True,
        False,
        0,
        0,
    )
    assert (gateway.stopasgroup, gateway.killasgroup, gateway.stopwaitsecs) == (True, True, 330)
    assert gateway.stdout_logfile == "/dev/stdout" and gateway.stdout_logfile_maxbytes == 0
    assert gateway.stderr_logfile == "/dev/stderr"
    # The crash guard reads both streams: the last lines explain a hold and a stop timeout.
    assert gateway.stdout_events_enabled and gateway.stderr_events_enabled


def test_supervisord_serves_our_interface_whose_stops_always_stop_and_loads_the_crash_guard(
    tmp_path: Path, program: Program
) -> None:
    options = parse(tmp_path, program)
    assert options.rpcinterface_factories == [
        ("supervisor", rpcinterface.make_rpcinterface, {"run_dir": str(tmp_path)}),
        # In supervisord's own process, with where the init left its orders.
        ("crashguard", plugin.make_rpcinterface, {"run_dir": str(tmp_path)}),
    ]


def test_supervisord_runs_the_program_alone(tmp_path: Path, program: Program) -> None:
    """The crash guard is no process of supervisord's: the program is all it starts."""
    options = parse(tmp_path, program)
    assert [group.name for group in options.process_group_configs] == ["gateway"]


def test_control_socket_lives_in_the_run_dir_and_only_its_owner_may_use_it(
    tmp_path: Path, program: Program
) -> None:
    options = parse(tmp_path, program)
    server = options.server_configs[0]
    assert server["file"] == str(tmp_path / "supervisor.sock")
    assert server["chmod"] == 0o700
    assert (tmp_path / "supervisord.conf").stat().st_mode & 0o777 == 0o600


def test_supervisord_does_not_copy_its_log_to_stdout(tmp_path: Path, program: Program) -> None:
    options = parse(tmp_path, program)
    assert options.nodaemon and options.silent
    assert options.logfile == str(tmp_path / "supervisord.log")


def test_held_boot_renders_the_program_without_autostart(tmp_path: Path, program: Program) -> None:
    options = parse(tmp_path, program, autostart=False)
    gateway = {group.name: group for group in options.process_group_configs}["gateway"].process_configs[0]
    assert gateway.autostart is False


def test_no_environment_value_is_written_into_the_config(tmp_path: Path) -> None:
    secret = Program("gateway", ("node",), {"GATEWAY_TOKEN": "s3cret-value"}, "/")
    parse(tmp_path, secret)
    assert "s3cret-value" not in (tmp_path / "supervisord.conf").read_text()
