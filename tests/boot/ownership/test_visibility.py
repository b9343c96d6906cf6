"""What an operator sees: progress lines, the stop on SIGTERM, the writability report, whichever
engine walks (each test runs once per engine, through `run_phase`)."""

from __future__ import annotations

import os
import threading
import time

from entrypoint.common.plans import StopFlag

from .conftest import GID, UID, assert_stopped_midway, make_files, no_child_left, owner


def test_progress_lines_appear_every_interval_with_seen_changed_and_rate(fresh_big_tree, run_phase, events):
    root, entries = fresh_big_tree

    run_phase(root, interval=0.01)

    progress = [record for record in events.records if getattr(record, "event", None) == "progress"]
    assert len(progress) >= 2
    fields = [getattr(record, "fields") for record in progress]  # noqa: B009 - set by log.event
    assert all(set(f) == {"phase", "seen", "changed", "rate_per_s"} for f in fields)
    assert all(f["phase"] == "ownership" and f["rate_per_s"] > 0 for f in fields)
    assert [f["seen"] for f in fields] == sorted(f["seen"] for f in fields)
    assert fields[-1]["seen"] <= entries


def test_no_progress_line_when_the_walk_ends_within_the_interval(vol, run_phase, events):
    make_files(vol, 10)

    run_phase(vol, interval=3600)

    assert not [record for record in events.records if getattr(record, "event", None) == "progress"]


def test_stop_flag_set_during_the_walk_stops_it_within_a_second_leaving_no_entry_half_owned(
    fresh_big_tree, run_phase, events
):
    root, entries = fresh_big_tree
    # Set at the first progress line, in the phase's own thread, as the init's SIGTERM handler
    # sets it (Python runs signal handlers in the main thread): no other thread keeps the phase
    # from forking its worker processes.
    events.stop_at_first_progress = stop = StopFlag()
    fds_before = len(os.listdir("/proc/self/fd"))

    result = run_phase(root, interval=0.05, stop=stop)
    returned_at = time.monotonic()

    assert returned_at - events.stopped_at < 1.5
    assert_stopped_midway(root, entries, result, fds_before)
    assert no_child_left()


def test_stop_flag_set_by_another_thread_stops_the_walk_within_a_second_too(
    fresh_big_tree, run_phase, events
):
    root, entries = fresh_big_tree
    stop = StopFlag()
    stopped_at: list[float] = []

    def sigterm_arrives() -> None:
        events.first_progress.wait(timeout=60)
        stopped_at.append(time.monotonic())
        stop.set(15)

    signaller = threading.Thread(target=sigterm_arrives)
    signaller.start()
    fds_before = len(os.listdir("/proc/self/fd"))
    result = run_phase(root, interval=0.05, stop=stop)
    returned_at = time.monotonic()
    signaller.join()

    assert returned_at - stopped_at[0] < 1.5
    assert_stopped_midway(root, entries, result, fds_before)


def test_root_left_unwritable_for_the_target_is_reported(area, run_phase, warnings_of):
    root = area / "readonly-for-owner"
    make_files(root, 2)
    root.chmod(0o555)

    result = run_phase(root)

    assert owner(root) == (UID, GID)
    assert result.figures["unwritable"] == [str(root)]
    assert warnings_of(result, "ownership_root_unwritable")[0]["path"] == str(root)
    assert result.status == "warned"


def test_root_behind_a_directory_the_target_cannot_enter_is_reported_unwritable(area, run_phase):
    locked = area / "locked"
    root = locked / "vol"
    make_files(root, 1)
    locked.chmod(0o700)

    result = run_phase(root)

    assert owner(root / "f00000") == (UID, GID)
    assert result.figures["unwritable"] == [str(root)]


def test_repaired_roots_are_reported_writable(area, vol, run_phase):
    make_files(vol, 3)

    result = run_phase(vol)

    assert result.figures["unwritable"] == []
    assert result.status == "ok"
    assert (area / "vol").stat().st_uid == UID
