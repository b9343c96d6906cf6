"""The memory cgroup facts, from the real kernel: a child cgroup of ours with a limit, and a process
in it that the kernel's OOM killer kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from entrypoint.common import cgroup

LIMIT = 64 << 20


@pytest.fixture
def child_cgroup() -> Iterator[cgroup.MemoryCgroup]:
    """A memory cgroup below ours with a 64 MiB limit (and no swap to escape to), removed after."""
    if os.geteuid() != 0:
        pytest.skip("making a cgroup needs root")
    own = cgroup.find()
    if own is None:
        pytest.skip("no memory cgroup on this kernel")
    directory = Path(own.directory) / f"mbtest-{uuid.uuid4().hex[:8]}"
    directory.mkdir()
    try:
        if own.v2:
            (directory / "memory.max").write_text(str(LIMIT))
            (directory / "memory.swap.max").write_text("0")
        else:
            (directory / "memory.limit_in_bytes").write_text(str(LIMIT))
            swap = directory / "memory.memsw.limit_in_bytes"
            if swap.exists():
                swap.write_text(str(LIMIT))
        yield cgroup.MemoryCgroup(str(directory), own.v2)
    finally:
        directory.rmdir()


def test_the_process_own_cgroup_is_found_and_read_without_privilege() -> None:
    own = cgroup.find()
    assert own is not None
    assert os.path.isdir(own.directory)
    assert own.oom_kills() is not None
    assert (own.peak() or 0) > 0


def test_a_limit_is_read_and_an_oom_kill_is_counted(child_cgroup: cgroup.MemoryCgroup) -> None:
    assert child_cgroup.limit() == LIMIT
    assert child_cgroup.oom_kills() == 0
    procs = Path(child_cgroup.directory) / "cgroup.procs"
    # The child joins the cgroup before it allocates: 256 MiB, four times the limit.
    hog = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; sys.stdin.read(1); b = bytearray(256 << 20); b[::4096] = b'x' * (len(b) // 4096)",
        ],
        stdin=subprocess.PIPE,
    )
    procs.write_text(str(hog.pid))
    hog.communicate(b"x", timeout=60)
    assert hog.returncode == -signal.SIGKILL
    assert child_cgroup.oom_kills() == 1
    assert (child_cgroup.peak() or 0) >= LIMIT * 3 // 4


def test_no_cgroup_shown_means_none(tmp_path: Path) -> None:
    assert cgroup.find(str(tmp_path)) is None
