"""The walk handed to worker processes: the stop, a worker's failure, and when the phase forks."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from entrypoint.boot import ownership
from entrypoint.boot.ownership import processes
from entrypoint.boot.ownership.walk import Walk
from entrypoint.common.plans import StopFlag
from entrypoint.common.report import PhaseResult

from .conftest import (
    GID,
    TARGET,
    UID,
    assert_stopped_midway,
    make_files,
    no_child_left,
    owner,
    owners_below,
    plan_for,
)
from .engines import ENGINES


def _forked(root: Path, stop: StopFlag | None = None) -> PhaseResult:
    """The whole walk handed to two worker processes at once."""
    return processes.walk(plan_for(root, interval=0.05), TARGET, stop or StopFlag(), processes=2)


def _as_the_init_chooses(root: Path) -> PhaseResult:
    return ownership.run(plan_for(root, interval=0.05), TARGET, StopFlag())


def test_stop_flag_halts_the_worker_processes_within_a_second_leaving_no_entry_half_owned(
    fresh_big_tree, events
):
    root, entries = fresh_big_tree
    events.stop_at_first_progress = stop = StopFlag()
    fds_before = len(os.listdir("/proc/self/fd"))

    result = _forked(root, stop)
    returned_at = time.monotonic()

    assert result.figures["processes"] == 2
    assert returned_at - events.stopped_at < 1.0
    # The parent re-owns the root last, and never after a stop.
    assert_stopped_midway(root, entries, result, fds_before)
    assert no_child_left()


def test_worker_that_does_not_halt_is_killed_and_the_phase_still_returns_within_a_second(
    fresh_big_tree, events, monkeypatch
):
    root, _ = fresh_big_tree
    events.stop_at_first_progress = stop = StopFlag()
    # A worker blocked in a system call that does not return (a hung NFS server): it never gets
    # to look at the halt flag. The parent itself enters no directory when asked for processes.
    monkeypatch.setattr(Walk, "enter", lambda *_: time.sleep(60))
    fds_before = len(os.listdir("/proc/self/fd"))

    result = _forked(root, stop)
    returned_at = time.monotonic()

    assert result.figures["processes"] == 2
    assert returned_at - events.stopped_at < 1.0
    assert result.figures["interrupted"] is True
    assert set(owners_below(root).values()) <= {(0, 0), (UID, GID)}
    assert owner(root) == (0, 0)
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert no_child_left()


def test_failure_inside_a_worker_fails_the_phase_and_leaves_the_parents_alone(vol, outside, monkeypatch):
    for index in range(4):
        make_files(vol / f"d{index}", 3)
    before = owners_below(outside)

    def broken(*_: object) -> None:
        raise RuntimeError("a bug in the walk")

    monkeypatch.setattr(Walk, "enter", broken)
    fds_before = len(os.listdir("/proc/self/fd"))

    result = _forked(vol)

    assert result.status == "failed"
    [warning] = [w for w in result.warnings if w["event"] == "ownership_failed"]
    assert "a bug in the walk" in warning["message"]
    assert owner(vol) == (0, 0)  # its subtrees were not all done: it keeps its owner
    assert owners_below(outside) == before
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert no_child_left()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="one CPU: the phase never forks")
def test_the_init_forks_for_a_large_tree_only(vol, fresh_big_tree):
    make_files(vol / "sub", 10)
    root, entries = fresh_big_tree

    small = _as_the_init_chooses(vol)
    large = _as_the_init_chooses(root)

    assert small.figures["processes"] == 0
    assert large.figures["processes"] == min(len(os.sched_getaffinity(0)), processes.MAX_PROCESSES)
    assert large.figures["changed"] == large.figures["seen"] == entries
    assert set(owners_below(root).values()) == {(UID, GID)}
    assert no_child_left()


@pytest.mark.parametrize("engine", ["auto", "processes"], indirect=True)
def test_the_init_never_forks_while_another_thread_runs(fresh_big_tree, engine):
    """Neither as the init chooses (it walks in threads then) nor when worker processes are asked
    for (it walks in the calling thread then): a lock held by the other thread would stay held
    in the child forever."""
    root, entries = fresh_big_tree
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        result = ENGINES[engine](plan_for(root, interval=0.05), TARGET, StopFlag())
    finally:
        release.set()
        other.join()

    assert result.figures["processes"] == 0
    assert result.figures["changed"] == entries
    assert set(owners_below(root).values()) == {(UID, GID)}
    assert no_child_left()
