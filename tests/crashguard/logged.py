"""What the crash guard's policy said: the `Log` effects among the effects it returned."""

from __future__ import annotations

from typing import Any

from entrypoint.crashguard.effects import Log


def events(effects: list[Any]) -> list[str]:
    """The event names of the lines the effects would log, in order."""
    return [effect.event for effect in effects if isinstance(effect, Log)]


def line(effects: list[Any], event: str) -> Log:
    """The one line of this event among the effects (fails if there are none or several)."""
    found = [effect for effect in effects if isinstance(effect, Log) and effect.event == event]
    assert len(found) == 1, events(effects)
    return found[0]
