"""The boot ledger: recorded boots, the hold rule, and tolerance of a broken file."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from entrypoint.common import guardstate, ledger, rundir
from entrypoint.common.guardstate import HoldCause
from entrypoint.common.plans import Hold
from entrypoint.crashguard.runtime import Runtime
from tests.supervised import guard_plan


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state" / ".init" / "boot-ledger.json")


def failed_boots(path: str, starts: list[float], outcome: str = "refused") -> None:
    for started in starts:
        ledger.begin_boot(path, started)
        ledger.mark(path, outcome)


def test_begin_creates_the_directory_and_mark_records_the_outcome(path: str) -> None:
    ledger.begin_boot(path, 100.0)
    ledger.mark(path, "ready", 101.0)
    assert ledger.boots(path) == [{"started": 100.0, "outcome": "ready", "ended": 101.0}]
    ledger.mark(path, "refused")
    assert ledger.boots(path)[-1]["outcome"] == "refused"  # the last write wins


def test_only_the_last_fifty_boots_are_kept(path: str) -> None:
    for started in range(60):
        ledger.begin_boot(path, float(started))
    recorded = ledger.boots(path)
    assert len(recorded) == ledger.KEEP
    assert recorded[0]["started"] == 10.0


def test_unknown_outcome_is_a_programming_error(path: str) -> None:
    with pytest.raises(ValueError):
        ledger.mark(path, "crashed")


def test_hold_after_burst_failed_boots_within_the_window(path: str) -> None:
    failed_boots(path, [0.0, 10.0, 20.0], "refused")
    failed_boots(path, [30.0, 40.0], "init_failed")
    reason = ledger.hold_reason(path, burst=5, window_s=300, now=50.0)
    assert reason is not None and "5 boots" in reason and "refused" in reason and "init_failed" in reason


def test_no_hold_when_a_boot_succeeded_was_stopped_or_left_no_outcome(path: str) -> None:
    failed_boots(path, [0.0, 10.0])
    ledger.begin_boot(path, 15.0)
    ledger.mark(path, "ready")
    failed_boots(path, [20.0, 30.0, 40.0])
    assert ledger.hold_reason(path, burst=4, window_s=300, now=50.0) is None
    assert ledger.hold_reason(path, burst=3, window_s=300, now=50.0) is not None
    ledger.begin_boot(path, 45.0)  # killed: no outcome recorded
    ledger.begin_boot(path, 48.0)
    ledger.mark(path, "refused")
    assert ledger.hold_reason(path, burst=3, window_s=300, now=50.0) is None


def test_no_hold_when_the_failed_boots_are_spread_beyond_the_window(path: str) -> None:
    failed_boots(path, [0.0, 200.0, 400.0])
    assert ledger.hold_reason(path, burst=3, window_s=300, now=450.0) is None
    assert ledger.hold_reason(path, burst=3, window_s=500, now=450.0) is not None


def test_the_current_boot_never_counts_against_itself(path: str) -> None:
    failed_boots(path, [0.0, 10.0, 20.0])
    before = ledger.hold_reason(path, burst=3, window_s=300, now=30.0)
    ledger.begin_boot(path, 30.0)
    after = ledger.hold_reason(path, burst=3, window_s=300, now=30.0)
    assert before is not None and after == before


@given(outcomes=st.lists(st.sampled_from([*ledger.Outcome, None]), max_size=12), burst=st.integers(1, 6))
def test_failed_streak_rule(outcomes: list[str | None], burst: int) -> None:
    recorded = [{"started": float(index), "outcome": outcome} for index, outcome in enumerate(outcomes)]
    expected = len(outcomes) >= burst and all(
        outcome in ("refused", "init_failed") for outcome in outcomes[-burst:]
    )
    assert ledger.failed_streak(recorded, burst, 1000.0, float(len(outcomes))) == expected


@pytest.mark.parametrize("content", ["{not json", '{"boots": 3}', "[]", '{"boots": [{"started": "x"}]}'])
def test_a_corrupt_ledger_warns_once_and_is_treated_as_empty(
    path: str, content: str, caplog: pytest.LogCaptureFixture
) -> None:
    os.makedirs(os.path.dirname(path))
    Path(path).write_text(content)
    with caplog.at_level(logging.WARNING):
        assert ledger.hold_reason(path, 1, 300, 0.0) is None
        assert ledger.hold_reason(path, 1, 300, 0.0) is None
    assert len([r for r in caplog.records if getattr(r, "event", "") == "boot_ledger_unreadable"]) <= 1
    ledger.begin_boot(path, 1.0)  # rewrites a usable file
    assert ledger.boots(path) == [{"started": 1.0, "outcome": None}]


def test_an_unwritable_ledger_warns_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    path = str(blocker / "sub" / "boot-ledger.json")  # a path under a regular file
    with caplog.at_level(logging.WARNING):
        ledger.begin_boot(path, 1.0)
        ledger.mark(path, "refused")
        assert ledger.hold_reason(path, 1, 300, 2.0) is None
    assert any(getattr(r, "event", "") == "boot_ledger_unwritable" for r in caplog.records)


def test_mark_without_a_boot_warns(path: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        ledger.mark(path, "stopped")
    assert any(getattr(r, "event", "") == "boot_ledger_no_boot" for r in caplog.records)


def test_held_state_written_for_the_init_is_what_the_guard_adopts(tmp_path: Path) -> None:
    guardstate.hold_at_boot(
        str(tmp_path), "gateway", Hold("boot ledger: the last 5 boots failed", HoldCause.BOOT_LOOP), now=10.0
    )
    state = json.loads((tmp_path / rundir.GUARD_STATE).read_text())
    assert state["state"] == "held" and "the last 5 boots failed" in state["held_reason"]
    runtime = Runtime(str(tmp_path), guard_plan(str(tmp_path / "l")))
    runtime.start()
    runtime.finish(5)
    assert runtime.guard.state == guardstate.State.HELD
