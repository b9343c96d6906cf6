"""Helpers for the supervision tests: restart policies, and the init running as PID 1 with its
lines read live (the shared `init` runner in tests/conftest.py waits for the end; these tests
act while the init runs: supervisorctl, health, signals)."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shlex
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from entrypoint.common import rundir
from entrypoint.common.guardplan import GuardPlan, HandoffPlan, LeaseRule, MetricsPlan
from entrypoint.common.plans import CrashLoopAction, RestartPolicy
from tests.conftest import InitRunner, namespace_init_pid

STANDINS = "tests/standins"
NOT_UTF8 = "<not UTF-8> "
PY = "python3"  # the stand-ins need nothing but the standard library


def standin(name: str, *args: object) -> str:
    """The command line of a stand-in gateway (tests/standins/<name>.py)."""
    return shlex.join([PY, f"{STANDINS}/{name}.py", *map(str, args)])


def policy_env(**values: object) -> dict[str, str]:
    """The init's settings for a restart policy, by `policy()`'s names."""
    names = {
        "initial": "MOLTBOT_BACKOFF_INITIAL",
        "maximum": "MOLTBOT_BACKOFF_MAX",
        "reset": "MOLTBOT_BACKOFF_RESET",
        "burst": "MOLTBOT_CRASHLOOP_BURST",
        "window": "MOLTBOT_CRASHLOOP_WINDOW",
        "action": "MOLTBOT_CRASHLOOP_ACTION",
        "stop": "MOLTBOT_STOP_TIMEOUT",
        "hold_retry": "MOLTBOT_HOLD_RETRY",
    }
    return {names[key]: str(value) for key, value in values.items()}


def epoch(line: dict[str, Any]) -> float:
    """When a JSON line (or a field holding such a time) was written, in epoch seconds."""
    return dt.datetime.strptime(line["time"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC).timestamp()


def policy(
    initial: float = 1.0,
    maximum: float = 60.0,
    reset: float = 600.0,
    burst: int = 5,
    window: float = 300.0,
    action: CrashLoopAction | str = CrashLoopAction.HOLD,
    stop: float = 8.0,
    hold_retry: float = 900.0,
) -> RestartPolicy:
    return RestartPolicy(initial, maximum, reset, burst, window, CrashLoopAction(action), stop, hold_retry)


def guard_plan(
    ledger_path: str,
    handoff: HandoffPlan | None = None,
    lease: LeaseRule | None = None,
    oom_kills_at_boot: int | None = None,
    metrics: MetricsPlan | None = None,
    **chosen: Any,
) -> GuardPlan:
    """The crash guard's orders for a program named `gateway`, with the policy `policy(**chosen)`."""
    policy_chosen = policy(**chosen)
    return GuardPlan(
        "gateway",
        policy_chosen,
        ledger_path,
        "json",
        "info",
        handoff,
        lease or LeaseRule(),
        oom_kills_at_boot,
        metrics,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def service_manager(on_message: Callable[[str], None]) -> Iterator[str]:
    """A service manager's sd_notify socket (abstract, as podman's and systemd's may be): yields
    the NOTIFY_SOCKET to give the init; each message goes to `on_message`, from a thread, until
    the block ends. A datagram that is not UTF-8 (sd_notify's protocol) arrives as NOT_UTF8 + its
    repr, so that a test sees it."""
    name = f"init-notify-{uuid.uuid4().hex}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(0.2)
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            try:
                data = receiver.recv(65536)
            except TimeoutError:
                continue
            try:
                message = data.decode("utf-8")
            except UnicodeDecodeError:
                message = NOT_UTF8 + repr(data)
            on_message(message)

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    try:
        yield "@" + name
    finally:
        done.set()
        thread.join(5)
        receiver.close()


class Supervised:
    """The init as PID 1 in supervise mode, its stderr parsed line by line as it comes."""

    def __init__(self, runner: InitRunner, gateway: str, env: dict[str, str], args: tuple[str, ...] = ()):
        self.runner = runner
        self.run_dir = runner.box / "run"
        self.state_dir = runner.box / "state"
        self.lines: list[dict[str, Any]] = []
        self.raw_stderr: list[str] = []
        self.stdout: list[str] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.env = {"MOLTBOT_GATEWAY_COMMAND": gateway, **env}
        self.process = runner.popen(*args, **self.env)
        self._threads = [
            threading.Thread(target=self._read_stderr, daemon=True),
            threading.Thread(target=self._read_stdout, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    # -- reading ----------------------------------------------------------------------------------
    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            with self._changed:
                self.raw_stderr.append(raw)
                stripped = raw.strip()
                if stripped.startswith("{"):
                    with contextlib.suppress(ValueError):
                        self.lines.append(json.loads(stripped))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._changed:
                self.stdout.append(raw)

    def events(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [line for line in self.lines if line.get("event") == name]

    def names(self) -> list[str]:
        with self._lock:
            return [str(line.get("event")) for line in self.lines]

    def wait_for(
        self,
        name: str,
        count: int = 1,
        timeout: float = 60.0,
        where: Callable[[dict[str, Any]], bool] = lambda line: True,
    ) -> list[dict[str, Any]]:
        """Wait until `count` lines of event `name` (matching `where`) were written."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if line.get("event") == name and where(line)]
                if len(found) >= count:
                    return found
                if self.process.poll() is not None and self._threads[0].is_alive() is False:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, 0.5))
        raise AssertionError(
            f"waited for {count} x {name}, saw {len(found)}; events: {self.names()}\n"
            f"stderr tail: {''.join(self.raw_stderr[-30:])}"
        )

    def guard_state(self, state: str, timeout: float = 30.0) -> dict[str, Any]:
        """The crash guard's state file once it says `state`. The guard writes it (with fsyncs)
        just after its log lines, and after supervisord's own view, which health reports, has
        changed: on a busy disk the file is a moment behind both, so a test that reads it right
        after either waits for it."""
        path = self.run_dir / rundir.GUARD_STATE
        deadline = time.monotonic() + timeout
        seen = read_json(path)
        while (seen or {}).get("state") != state and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = read_json(path)
        if seen is None or seen.get("state") != state:
            raise AssertionError(f"the crash guard's state never became {state}; last: {seen}")
        return seen

    def non_json_stderr(self) -> list[str]:
        with self._lock:
            return [raw for raw in self.raw_stderr if raw.strip() and not raw.strip().startswith("{")]

    # -- acting -----------------------------------------------------------------------------------
    def init_command(
        self, *args: str, timeout: float = 30, inside: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Another invocation of the init (not PID 1), as `docker exec` runs it: inside the PID
        namespace (and its /proc), so pids that supervisord reports mean the same processes."""
        enter = ["nsenter", f"--target={self.init_pid()}", "--pid", "--mount", "--"] if inside else []
        return subprocess.run(
            [*enter, *self.runner.command(*args, pid1=False)],
            env=self.runner.env(**self.env),
            cwd="/",
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def health_once_listening(self, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`health`, asked again until it passes or `timeout`: a program is running some time
        before it listens (a loaded machine stretches that), and `health` says so until then."""
        deadline = time.monotonic() + timeout
        while (answer := self.init_command("health")).returncode != 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        return answer

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.init_command("supervisorctl", *args)

    def init_pid(self, timeout: float = 10) -> int:
        """The init's pid as seen from here: the child that `unshare --fork` made (unshare itself
        forwards no signal)."""
        return namespace_init_pid(self.process.pid, timeout)

    def signal(self, signum: int) -> None:
        os.kill(self.init_pid(), signum)

    def terminate(self, timeout: float = 30) -> int:
        """`docker stop`: SIGTERM to PID 1, then its exit code."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            # unshare forwards nothing: kill the whole namespace through its init.
            with open(f"/proc/{self.process.pid}/task/{self.process.pid}/children") as handle:
                children = handle.read().split()
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(child), signal.SIGKILL)
            self.process.kill()
        self.process.wait(timeout=10)


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None
