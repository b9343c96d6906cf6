"""The init as PID 1 supervising a stand-in gateway under a real supervisord."""

from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT_BOOT_PHASES, InitRunner, kill_namespace, namespace_init_pid, parse_lines
from tests.pid1.test_run_mode import wait_for_file

pytestmark = pytest.mark.pid1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as client:
            client.settimeout(0.2)
            if client.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"port {port} never opened")


@dataclass
class Supervised:
    process: subprocess.Popen[str]
    init_pid: int
    port: int
    pidfile: Path
    envfile: Path

    def stop(self, timeout: float = 20) -> tuple[int, str, str]:
        os.kill(self.init_pid, signal.SIGTERM)
        stdout, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stdout, stderr


@contextmanager
def supervised(init: InitRunner, *args: str, gateway_options: str = "", **env: str) -> Iterator[Supervised]:
    port = free_port()
    out = init.box / "out"  # where the stand-in, running as the target user, may write
    out.mkdir()
    out.chmod(0o777)
    pidfile, envfile = out / "gateway.pid", out / "gateway-env.json"
    gateway = (
        f"python3 {init.sources}/tests/standins/healthy.py --port {port} "
        f"--pidfile {pidfile} --env-file {envfile} {gateway_options}"
    )
    settings = {"MOLTBOT_GATEWAY_COMMAND": gateway, "MOLTBOT_GATEWAY_PORT": str(port), **env}
    process = init.popen(*args, **settings)
    try:
        init_pid = namespace_init_pid(process.pid)
        wait_for_port(port)
        wait_for_file(pidfile)
        yield Supervised(process, init_pid, port, pidfile, envfile)
    finally:
        if process.poll() is None:
            kill_namespace(process)


def test_sigterm_stops_the_gateway_and_the_init_exits_0_within_2s_of_it(init: InitRunner) -> None:
    term_delay = 0.5  # the stand-in takes this long to exit after its SIGTERM
    with supervised(init, gateway_options=f"--term-delay {term_delay}") as running:
        asked = time.monotonic()
        os.kill(running.init_pid, signal.SIGTERM)
        running.process.wait(timeout=15)
        took = time.monotonic() - asked
    assert running.process.returncode == 0
    assert term_delay <= took < term_delay + 2.0


def test_gateway_output_reaches_stdout_once_and_every_init_line_is_json(init: InitRunner) -> None:
    with supervised(init, gateway_options="--stderr-lines 3") as running:
        code, stdout, stderr = running.stop()
    assert code == 0
    assert stdout.count("standin healthy pid=") == 1
    lines = parse_lines(
        "\n".join(line for line in stderr.splitlines() if not line.startswith("standin stderr"))
    )
    assert sum(1 for line in stderr.splitlines() if line.startswith("standin stderr")) == 3
    report = next(line for line in lines if line["event"] == "startup_report")
    assert report["mode"] == "supervise"
    assert [phase["name"] for phase in report["phases"]] == list(ROOT_BOOT_PHASES)
    for line in lines:
        assert {"time", "level", "logger", "event", "message"} <= line.keys()
        assert line["time"].endswith("Z")


def test_startup_report_is_written_to_the_run_dir(init: InitRunner) -> None:
    with supervised(init) as running:
        saved = json.loads((init.box / "run" / "startup-report.json").read_text())
        running.stop()
    assert saved["mode"] == "supervise" and saved["user"]["uid"] == 0
    assert {phase["status"] for phase in saved["phases"]} <= {"ok", "skipped", "warned", "failed"}


def test_gateway_environment_pins_every_state_dir_name_and_hides_the_init_s_own(init: InitRunner) -> None:
    with supervised(init, NOTIFY_SOCKET="/nonexistent/notify.sock", WATCHDOG_USEC="1000000") as running:
        env = json.loads(running.envfile.read_text())
        running.stop()
    state = str(init.box / "state")
    assert env["CLAWDBOT_NO_RESPAWN"] == "1"
    assert (env["MOLTBOT_STATE_DIR"], env["CLAWDBOT_STATE_DIR"], env["OPENCLAW_STATE_DIR"]) == (state,) * 3
    token = (init.box / "state" / ".moltbot-init" / "gateway-token").read_text().strip()
    assert len(token) >= 32
    for name in ("MOLTBOT_GATEWAY_TOKEN", "OPENCLAW_GATEWAY_TOKEN", "CLAWDBOT_GATEWAY_TOKEN"):
        assert env[name] == token
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & env.keys()
    assert not [key for key in env if key.startswith("_PYI_")]


def test_generated_token_is_0600_owned_by_the_user_and_never_logged(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    with supervised(init, MOLTBOT_USER=test_user.pw_name) as running:
        _, stdout, stderr = running.stop()
    path = init.box / "state" / ".moltbot-init" / "gateway-token"
    info = path.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_uid == test_user.pw_uid
    token = path.read_text().strip()
    assert token not in stdout + stderr
    assert str(path) in stderr


def test_init_arguments_are_passed_to_the_gateway(init: InitRunner) -> None:
    port = free_port()
    gateway = f"python3 {init.sources}/tests/standins/healthy.py"
    process = init.popen("gateway", "--port", str(port), MOLTBOT_GATEWAY_COMMAND=gateway)
    try:
        wait_for_port(port)  # the port came from the init's own arguments
        os.kill(namespace_init_pid(process.pid), signal.SIGTERM)
        process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            kill_namespace(process)
    assert process.returncode == 0


def supervisorctl(
    init: InitRunner, *args: str, user: pwd.struct_passwd | None = None
) -> subprocess.CompletedProcess:
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"] if user else []
    return subprocess.run(
        [*prefix, *init.command("supervisorctl", *args, pid1=False)],
        env=init.env(),
        cwd="/",
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_supervisorctl_works_for_root_and_the_target_user_and_nobody_else(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    with supervised(init, MOLTBOT_USER=test_user.pw_name) as running:
        as_root = supervisorctl(init, "status", "gateway")
        as_user = supervisorctl(init, "status", "gateway", user=test_user)
        as_nobody = supervisorctl(init, "status", "gateway", user=pwd.getpwnam("nobody"))
        socket_info = (init.box / "run" / "supervisor.sock").stat()
        running.stop()
    assert "RUNNING" in as_root.stdout, as_root.stderr
    assert "RUNNING" in as_user.stdout, as_user.stderr
    assert "RUNNING" not in as_nobody.stdout
    assert stat.S_IMODE(socket_info.st_mode) == 0o700 and socket_info.st_uid == test_user.pw_uid


def test_gateway_and_supervisord_run_as_the_target_user(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    with supervised(init, MOLTBOT_USER=test_user.pw_name) as running:
        init_process = psutil.Process(running.init_pid)
        tree = [init_process, *init_process.children(recursive=True)]
        # /proc/PID/status, not the owner of /proc/PID: a process that changed its uid is not
        # dumpable, and the kernel then shows its /proc directory as root's.
        uids = {process.pid: tuple(process.uids()) for process in tree}
        names = sorted(" ".join(process.cmdline()[-2:]) for process in tree)
        running.stop()
    assert len(tree) == 4, names  # init, supervisord, crash guard, gateway
    assert set(uids.values()) == {(test_user.pw_uid,) * 3}
