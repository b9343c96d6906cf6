"""The init as PID 1 supervising a stand-in gateway under a real supervisord."""

from __future__ import annotations

import datetime
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from entrypoint.tools import health as tools_health
from tests.conftest import ROOT_BOOT_PHASES, InitRunner, kill_namespace, namespace_init_pid, parse_lines
from tests.pid1.test_run_mode import wait_for_file
from tests.supervised import free_port, service_manager

pytestmark = pytest.mark.pid1


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
def supervised(
    init: InitRunner,
    *args: str,
    standin: str = "healthy",
    gateway_options: str = "",
    port: int | None = None,
    **env: str,
) -> Iterator[Supervised]:
    port = port or free_port()
    out = init.box / "out"  # where the stand-in, running as the target user, may write
    out.mkdir()
    out.chmod(0o777)
    pidfile, envfile = out / "gateway.pid", out / "gateway-env.json"
    gateway = (
        f"python3 {init.sources}/tests/standins/{standin}.py --port {port} "
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


def test_gateway_environment_is_its_generation_s_and_hides_the_init_s_own(init: InitRunner) -> None:
    """Without a manifest in /app the init assumes the oldest openclaw: its names, one of each."""
    with supervised(init, NOTIFY_SOCKET="/nonexistent/notify.sock", WATCHDOG_USEC="1000000") as running:
        env = json.loads(running.envfile.read_text())
        running.stop()
    state = init.box / "state"
    assert env["OPENCLAW_NO_RESPAWN"] == "1"
    assert env["OPENCLAW_STATE_DIR"] == str(state / "gateway")
    assert env["HOME"] == str(state / "home")
    token = (state / ".moltbot-init" / "gateway-token").read_text().strip()
    assert len(token) >= 32
    assert env["OPENCLAW_GATEWAY_TOKEN"] == token
    # The init's own settings (the test sets MOLTBOT_STATE_DIR, MOLTBOT_RUN_DIR...) stay the init's.
    assert not [key for key in env if key.startswith(("MOLTBOT_", "CLAWDBOT_"))]
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} & env.keys()
    assert not [key for key in env if key.startswith("_PYI_")]


def test_umask_and_tz_are_the_gateway_s_while_the_init_s_lines_stay_utc(init: InitRunner) -> None:
    """UMASK is set in the init before it starts anything (the gateway inherits it); TZ is passed
    on as it is; the init's own times are UTC whatever TZ says."""
    with supervised(init, UMASK="0027", TZ="Asia/Kolkata") as running:
        # The stand-in's pidfile holds its pid in the container's namespace: found by its command.
        [gateway] = [
            process
            for process in psutil.Process(running.init_pid).children(recursive=True)
            if "healthy.py" in " ".join(process.cmdline())
        ]
        status = Path(f"/proc/{gateway.pid}/status").read_text().splitlines()
        umask = next(line for line in status if line.startswith("Umask:"))
        env = json.loads(running.envfile.read_text())
        _, _, stderr = running.stop()
    assert umask.split() == ["Umask:", "0027"]
    assert env["TZ"] == "Asia/Kolkata" and "UMASK" not in env
    lines = parse_lines("\n".join(line for line in stderr.splitlines() if line.startswith("{")))
    report = next(line for line in lines if line["event"] == "startup_report")
    assert report["phases"][0]["figures"]["umask"] == "0027"
    stamps = [line["time"] for line in lines]
    assert stamps and all(stamp.endswith("Z") for stamp in stamps)
    # Kolkata is 5 h 30 min off UTC: a local time would be hours away from the clock's UTC.
    newest = datetime.datetime.strptime(stamps[-1], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
    assert abs(datetime.datetime.now(datetime.UTC) - newest) < datetime.timedelta(minutes=10)


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
        wait_for_port(port)
        tree = psutil.Process(namespace_init_pid(process.pid)).children(recursive=True)
        argv = next(child.cmdline() for child in tree if "healthy.py" in " ".join(child.cmdline()))
        os.kill(namespace_init_pid(process.pid), signal.SIGTERM)
        process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            kill_namespace(process)
    assert argv[-3:] == [f"{init.sources}/tests/standins/healthy.py", "--port", str(port)]
    assert process.returncode == 0


def supervisorctl(
    init: InitRunner, *args: str, user: pwd.struct_passwd | None = None
) -> subprocess.CompletedProcess:
    prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups"] if user else []
    return init.tool("supervisorctl", *args, under=prefix, timeout=30)


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


def test_supervisord_is_forked_with_the_crash_guard_in_it_and_all_run_as_the_target_user(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    with supervised(init, MOLTBOT_USER=test_user.pw_name) as running:
        init_process = psutil.Process(running.init_pid)
        tree = [init_process, *init_process.children(recursive=True)]
        # /proc/PID/status, not the owner of /proc/PID: a process that changed its uid is not
        # dumpable, and the kernel then shows its /proc directory as root's.
        uids = {process.pid: tuple(process.uids()) for process in tree}
        names = sorted(" ".join(process.cmdline()[-2:]) for process in tree)
        comms = [process.name() for process in tree]
        state = init.box / "run" / "crashguard.json"
        wait_until("the crash guard says running", lambda: '"running"' in _text(state))
        guard = json.loads(state.read_text())
        _, _, stderr = running.stop()
    # The init, supervisord (forked from it at the boot's start, a standby given its orders once
    # the boot was done: the program is not started again) and the gateway.
    assert len(tree) == 3, names
    assert set(uids.values()) == {(test_user.pw_uid,) * 3}
    started = next(line for line in parse_lines(stderr) if line["event"] == "supervisor_started")
    assert started["how"] == "standby"
    # `ps` tells supervisord from the init by its name, though both are this program.
    assert comms[1] == "supervisord", comms
    # The crash guard is alive, a thread of supervisord's process: it wrote the gateway's state.
    assert guard["supervisord_pid"] == started["pid"] and guard["pid"] is not None


def _text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


# --------------------------------------------------------------------------------------------------
# Health and sd_notify from the gateway's own probes, against a stand-in that has them


def gateway_process(running: Supervised) -> psutil.Process:
    """The stand-in gateway as seen from here (its pidfile holds its pid inside the namespace)."""
    tree = psutil.Process(running.init_pid).children(recursive=True)
    return next(process for process in tree if "--pidfile" in process.cmdline())


def health(init: InitRunner, running: Supervised, *args: str) -> tuple[int, str, float]:
    """`<init> health ARGS` as the HEALTHCHECK runs it: exit code, its one line, seconds taken."""
    started = time.monotonic()
    result = init.tool("health", *args, timeout=30, MOLTBOT_GATEWAY_PORT=str(running.port))
    assert result.stderr == "" and result.stdout.count("\n") == 1, result
    return result.returncode, result.stdout.strip(), time.monotonic() - started


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.1)


def test_health_follows_the_gateway_s_probes_and_fails_while_it_is_stuck(init: InitRunner) -> None:
    with supervised(init, standin="probes", gateway_options="--starting 4") as running:
        code, line, _ = health(init, running, "--startup")
        assert code == 1 and line.startswith("failing: gateway starting: startup-sidecars (/startupz")
        code, line, _ = health(init, running)
        assert code == 0 and line.startswith("ok: gateway live, pid ") and "(/healthz" in line
        wait_until("started", lambda: health(init, running, "--startup")[0] == 0)
        code, line, _ = health(init, running, "--ready")
        assert code == 0 and line.startswith("ok: gateway ready, pid ") and "(/readyz" in line
        gateway = gateway_process(running)
        gateway.suspend()  # SIGSTOP: its port still accepts connections
        try:
            code, line, took = health(init, running, "--timeout", "1")
        finally:
            gateway.resume()
        assert code == 1 and took < 5, (line, took)
        assert line.startswith(
            f"failing: port {running.port} accepts connections but gave no answer to /healthz within 1s"
        )
        assert health(init, running)[0] == 0
        status = init.tool("status", "--json", timeout=30, MOLTBOT_GATEWAY_PORT=str(running.port))
        probes = json.loads(status.stdout)["health"]
        running.stop()
    assert probes["ok"] and probes["startup"]["ok"] and probes["ready"]["ok"], probes


def test_sd_notify_ready_once_started_status_before_watchdog_only_while_live(init: InitRunner) -> None:
    received: list[tuple[float, str, bool | None]] = []  # (when, message, started when READY came)
    port = free_port()

    def receive(message: str) -> None:
        started = None
        if message == "READY=1":
            started = tools_health.check(str(init.box / "run"), "gateway", port, "startup", 1.0)[0]
        received.append((time.monotonic(), message, started))

    def watchdogs() -> list[float]:
        return [when for when, message, _ in received if message == "WATCHDOG=1"]

    with service_manager(receive) as notify_socket:
        with supervised(
            init,
            standin="probes",
            gateway_options="--starting 3",
            port=port,
            NOTIFY_SOCKET=notify_socket,
            WATCHDOG_USEC="1000000",  # a ping every 0.5 s
        ) as running:
            wait_until("two pings", lambda: len(watchdogs()) >= 2)
            gateway = gateway_process(running)
            gateway.suspend()
            stopped_at = time.monotonic()
            time.sleep(3)
            gateway.resume()
            resumed_at = time.monotonic()
            wait_until("a ping after SIGCONT", lambda: watchdogs()[-1] > resumed_at, timeout=10)
            code, _, _ = running.stop()
        time.sleep(0.3)
    assert code == 0
    messages = [message for _, message, _ in received]
    assert messages.count("READY=1") == 1
    ready = messages.index("READY=1")
    assert received[ready][2] is True, "READY=1 came before /startupz said started"
    before = messages[:ready]
    assert all(message.startswith("STATUS=") for message in before)
    assert any(message.startswith("STATUS=boot") for message in before)
    assert f"STATUS=gateway starting: startup-sidecars (/startupz on port {port})" in before
    assert "WATCHDOG=1" not in before
    # A check under way when the gateway stopped may still have answered just then.
    assert [when for when in watchdogs() if stopped_at + 0.3 < when < resumed_at] == []
    assert messages[-1] == "STOPPING=1"
