"""A child forked from PID 1 that goes on in this program's code (supervisord's process) starts
as the same program exec'd again would, and never returns into the caller's code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from entrypoint.pid1 import reaper
from tests.conftest import REPO


@pytest.fixture
def as_pid1() -> Iterator[set[int]]:
    """This process as PID 1 is when it forks: its own stop handler, every signal blocked."""
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGHUP)}
    signal.signal(signal.SIGTERM, lambda number, frame: None)
    original = reaper.block_signals()
    try:
        yield original
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, original)
        for signum, handler in handlers.items():
            signal.signal(signum, handler)


def forked(main: Callable[[], int], original_mask: set[int], **env: str) -> int:
    pid = reaper.fork(main, env, "/", original_mask, frozenset({signal.SIGHUP}))
    return reaper.exit_code(os.waitpid(pid, 0)[1])


def test_the_child_starts_as_the_program_exec_d_again_would(as_pid1: set[int]) -> None:
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)  # what an exec keeps, the child keeps
    private = os.open("/dev/null", os.O_RDONLY)  # close-on-exec, as Python opens everything

    def main() -> int:
        handler = {signum: signal.getsignal(signum) for signum in reaper.WAITED}
        seen = {
            "group": os.getpgid(0) == os.getpid(),
            "cwd": os.getcwd(),
            "env": dict(os.environ),
            "blocked": sorted(signal.pthread_sigmask(signal.SIG_BLOCK, ())),
            "term": handler[signal.SIGTERM] == signal.SIG_DFL,
            "int": handler[signal.SIGINT] is signal.default_int_handler,
            "pipe": handler[signal.SIGPIPE] == signal.SIG_IGN,
            "hup": handler[signal.SIGHUP] == signal.SIG_IGN,
            "private_closed": private not in map(int, os.listdir("/proc/self/fd")),
        }
        os.write(write_end, json.dumps(seen).encode())
        return 5

    try:
        assert forked(main, as_pid1, ONLY="this") == 5
    finally:
        os.close(write_end)
        os.close(private)
    with os.fdopen(read_end) as results:
        seen = json.loads(results.read())
    assert seen == {
        "group": True,
        "cwd": "/",
        "env": {"ONLY": "this"},
        "blocked": sorted(as_pid1),
        "term": True,  # PID 1's own handler is gone, as an exec would have it
        "int": True,  # a Python program's own, which supervisord replaces with its own
        "pipe": True,
        "hup": True,  # ignored by whoever started the init: still ignored
        "private_closed": True,
    }


@pytest.mark.parametrize(
    ("leaving", "code"),
    [(SystemExit(3), 3), (SystemExit(None), 0), (SystemExit("bye"), 1), (RuntimeError("boom"), 70)],
)
def test_the_child_ends_with_its_own_code_and_never_returns(
    as_pid1: set[int], leaving: BaseException, code: int
) -> None:
    def main() -> int:
        raise leaving

    assert forked(main, as_pid1) == code


def test_alone_counts_the_threads_of_the_process() -> None:
    script = (
        "import threading, time\n"
        "from entrypoint.pid1 import reaper\n"
        "print(reaper.alone())\n"
        "threading.Thread(target=time.sleep, args=(1,), daemon=True).start()\n"
        "print(reaper.alone())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=30, check=True
    )
    assert result.stdout.split() == ["True", "False"]
