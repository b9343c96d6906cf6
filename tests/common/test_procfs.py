"""What /proc says, read without psutil (which stays out of the init's processes): the same answers."""

from __future__ import annotations

import os
import subprocess
import time

import psutil
import pytest

from entrypoint.common import procfs


def test_a_process_start_time_is_the_one_psutil_reads() -> None:
    assert procfs.started_at(os.getpid()) == pytest.approx(psutil.Process().create_time(), abs=0.02)


def test_a_gone_process_is_unknown_not_an_error() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert procfs.started_at(child.pid) is None
    assert procfs.stat_fields(child.pid) == []
    assert procfs.tree(child.pid) == []
    assert procfs.cpu_ns(child.pid) == 0


def test_the_tree_holds_every_descendant_and_their_memory() -> None:
    with subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"]) as shell:
        try:
            deadline = time.monotonic() + 10
            while len(psutil.Process(shell.pid).children()) < 2:
                assert time.monotonic() < deadline, "the shell never started its two children"
                time.sleep(0.01)
            children = psutil.Process(shell.pid).children(recursive=True)
            assert set(procfs.tree(shell.pid)) == {shell.pid, *(child.pid for child in children)}
            fields = procfs.stat_fields(shell.pid)
            assert procfs.parent(fields) == os.getpid()
            # stat's rss lags statm's (the kernel folds per-thread counters in now and then).
            rss = procfs.rss_pages(fields) * os.sysconf("SC_PAGE_SIZE")
            assert rss == pytest.approx(psutil.Process(shell.pid).memory_info().rss, rel=0.5)
        finally:
            for child in psutil.Process(shell.pid).children(recursive=True):
                child.kill()
            shell.kill()


def test_the_mount_table_names_the_root_and_proc() -> None:
    points = {mount.point: mount for mount in procfs.mounts()}
    assert "/" in points and points["/proc"].fstype == "proc"


def test_capabilities_and_threads_of_this_process() -> None:
    held = procfs.effective_capabilities()
    assert held is not None and (held != 0) == (os.geteuid() == 0)
    assert procfs.thread_count() == len(os.listdir("/proc/self/task"))
