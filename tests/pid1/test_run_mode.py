"""The init as PID 1 running a one-off command: tini's duties, checked from outside."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import InitRunner, kill_namespace, namespace_init_pid

pytestmark = pytest.mark.pid1


def wait_for_file(path: Path, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().endswith("\n"):
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def test_every_exit_code_from_0_to_255_passes_through(init: InitRunner) -> None:
    def run(code: int) -> tuple[int, int]:
        # Four at a time, as four containers: each its own run dir (one boot per run dir).
        run_dir = str(init.box / f"run-{code}")
        return code, init.run("sh", "-c", f"exit {code}", MOLTBOT_RUN_DIR=run_dir).returncode

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(pool.map(run, range(256)))
    assert results == {code: code for code in range(256)}


@pytest.mark.parametrize(
    "signum",
    sorted(
        set(range(1, 32))
        - {signal.SIGSTOP, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD}
        - {signal.SIGURG, signal.SIGWINCH, signal.SIGCONT}  # by default they do not kill the child
    ),
)
def test_child_killed_by_signal_n_gives_128_plus_n(init: InitRunner, signum: int) -> None:
    result = init.run("sh", "-c", f"kill -{signum} $$")
    assert result.returncode == 128 + signum


def test_missing_command_exits_127_with_one_json_line(init: InitRunner) -> None:
    result = init.run("/no/such/command")
    assert result.returncode == 127
    assert [line["command"] for line in result.events("command_not_found")] == ["/no/such/command"]


def test_non_executable_command_exits_126(init: InitRunner) -> None:
    result = init.run("/etc/hostname")
    assert result.returncode == 126
    assert result.events("command_not_executable")


def test_command_found_on_path_runs(init: InitRunner) -> None:
    result = init.run("true")
    assert result.returncode == 0
    assert result.events("startup_report")[0]["mode"] == "run"


def test_hundred_orphans_are_reaped_and_no_zombie_is_left(init: InitRunner) -> None:
    # The child starts 100 grandchildren that it never waits for, exits from its subshells so
    # that they are re-parented to PID 1, then counts zombies in the namespace.
    script = (
        "for i in $(seq 100); do (sleep 0.2 &) ; done; sleep 2; "
        "zombies=$(ps -eo stat= | grep -c '^Z'); echo zombies=$zombies; exit $zombies"
    )
    result = init.run("sh", "-c", script)
    assert "zombies=0" in result.stdout
    assert result.returncode == 0


def test_init_cwd_is_root_and_child_gets_the_directory_it_was_started_in(init: InitRunner, box: Path) -> None:
    workdir = box / "work"
    workdir.mkdir()
    process = subprocess.Popen(
        init.command("sh", "-c", "pwd; sleep 30"),
        env=init.env(),
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        init_pid = namespace_init_pid(process.pid)
        assert process.stdout is not None
        child_cwd = process.stdout.readline().strip()
        assert os.readlink(f"/proc/{init_pid}/cwd") == "/"
        assert child_cwd == str(workdir)
    finally:
        if process.poll() is None:
            kill_namespace(process)


FORWARDED = sorted(
    set(range(1, 32))
    - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU}
)

RECORDER = """
import os, signal, sys, time
out = sys.argv[1]
wanted = [int(n) for n in sys.argv[2].split(",")]
seen = []
def note(number, frame):
    seen.append(number)
    with open(out, "a") as handle:
        handle.write(f"{number}\\n")
for number in wanted:
    signal.signal(number, note)
with open(out + ".ready", "w") as handle:
    handle.write("ready\\n")
deadline = time.monotonic() + 60
while len(set(seen)) < len(wanted) and time.monotonic() < deadline:
    time.sleep(0.01)
"""


def test_every_catchable_signal_reaches_the_child(init: InitRunner, box: Path) -> None:
    received = box / "received"
    wanted = ",".join(str(n) for n in FORWARDED)
    process = init.popen("python3", "-c", RECORDER, str(received), wanted)
    try:
        init_pid = namespace_init_pid(process.pid)
        wait_for_file(Path(f"{received}.ready"))
        for signum in FORWARDED:
            os.kill(init_pid, signum)
            deadline = time.monotonic() + 5
            while str(signum) not in received.read_text().split() if received.exists() else True:
                assert time.monotonic() < deadline, f"signal {signum} never reached the child"
                time.sleep(0.005)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            kill_namespace(process)
    assert sorted(int(n) for n in received.read_text().split()) == FORWARDED


def test_child_starts_with_no_blocked_and_no_ignored_signal(init: InitRunner) -> None:
    result = init.run("grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status")
    assert result.returncode == 0
    assert sorted(result.stdout.split()) == sorted(["SigBlk:", "0" * 16, "SigIgn:", "0" * 16])


@pytest.mark.parametrize(
    "names",
    [("HUP", "TERM"), ("TTOU", "INT"), ("TTIN", "TTOU", "TSTP")],
    ids=["nohup", "background-job", "job-control"],
)
def test_signals_ignored_by_whoever_started_the_init_stay_ignored_in_the_child(
    init: InitRunner, names: tuple[str, ...]
) -> None:
    """As tini and gosu do: a `nohup` (SIGHUP ignored), or a job-control shell that started the init
    in the background (SIGTTIN, SIGTTOU, SIGINT ignored), in front of the init reaches the child."""
    ignoring = ["sh", "-c", f'trap "" {" ".join(names)}; exec "$@"', "sh"]
    completed = init.tool("grep", "^SigIgn", "/proc/self/status", under=ignoring, pid1=True)
    assert completed.returncode == 0, completed.stderr
    ignored = int(completed.stdout.split()[1], 16)
    expected = sum(1 << (signal.Signals[f"SIG{name}"] - 1) for name in names)
    assert ignored == expected, hex(ignored)


def test_sigterm_to_the_init_reaches_the_child_and_its_code_comes_back(init: InitRunner, box: Path) -> None:
    ready = box / "ready"
    script = f"trap 'exit 42' TERM; echo ok > {ready}; while :; do sleep 0.05; done"
    process = init.popen("sh", "-c", script)
    init_pid = namespace_init_pid(process.pid)
    wait_for_file(ready)
    os.kill(init_pid, signal.SIGTERM)
    assert process.wait(timeout=10) == 42
