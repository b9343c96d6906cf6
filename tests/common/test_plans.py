"""The plans' own rules: the stop's three clocks come from the one stop timeout."""

from __future__ import annotations

import pytest

from entrypoint.common.plans import StopClocks


@pytest.mark.parametrize(("timeout", "supervisord"), [(330.0, 330), (0.2, 1), (2.6, 3)])
def test_the_stop_clocks_follow_the_one_timeout_in_order(timeout: float, supervisord: int) -> None:
    """supervisord kills the program at its whole-second timeout; the crash guard says what the
    program was still doing just before; PID 1 kills supervisord only after both."""
    clocks = StopClocks(timeout)
    assert clocks.supervisord_s == supervisord
    assert clocks.guard_warns_s < clocks.supervisord_s < clocks.pid1_s
    assert clocks.pid1_s - clocks.supervisord_s == StopClocks.SUPERVISORD_GRACE_S
