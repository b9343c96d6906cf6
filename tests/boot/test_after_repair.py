"""The `after_repair` verdict: a root boot with MOLTBOT_AFTER_REPAIR set says whether a start
without root would now do, and what to do then; the judgement itself, then the init as PID 1.

Run by pytest, as root (the PID-1 tests create a user and a PID namespace, as tests/conftest.py's
`init` does for every boot test).
"""

from __future__ import annotations

import os
import pwd
from typing import Any

import pytest

from entrypoint.boot.after_repair import judge
from entrypoint.common import settings
from entrypoint.common.plans import TargetUser
from entrypoint.common.report import PhaseResult, Status, warning
from tests.common.test_settings import DEFAULTS
from tests.conftest import ROOT_BOOT_PHASES, InitRunner

THEN = "switch back to the hardened overlay"
NODE = TargetUser("node", 1000, 1000, (1000,), "/home/node")


def phases(**statuses: Status) -> list[PhaseResult]:
    """The root boot's phases, all ok but those named (a warning for each one not ok)."""
    made = []
    for name in ROOT_BOOT_PHASES[:-2]:  # up to the drop: the upgrade and credentials come after the verdict
        status = statuses.get(name, "ok")
        result = PhaseResult(name, status, 1.0)
        if status in ("warned", "failed"):
            result.warnings.append(warning(f"{name}_trouble", "something"))
        made.append(result)
    return made


def test_the_setting_is_the_init_s_own_and_empty_by_default() -> None:
    assert settings.load({}, DEFAULTS, as_root=True).after_repair == ""
    loaded = settings.load({"APP_AFTER_REPAIR": f"  {THEN}\n"}, DEFAULTS, as_root=True)
    assert loaded.after_repair == THEN
    assert "APP_AFTER_REPAIR" in loaded.variables  # never passed on to the program


def test_clean_root_steps_are_done_and_say_what_next() -> None:
    verdict = judge(phases(), THEN, NODE)
    assert verdict.status == "ok" and not verdict.warnings
    assert verdict.figures["ready"] is True and verdict.figures["next"] == THEN
    assert "1000:1000" in verdict.figures["message"] and verdict.figures["message"].endswith(THEN)


@pytest.mark.parametrize("name", ["prepare", "ownership", "migration", "privileges"])
@pytest.mark.parametrize("status", ["warned", "failed"])
def test_any_phase_with_a_warning_keeps_root(name: str, status: str) -> None:
    verdict = judge(phases(**{name: status}), THEN, NODE)
    assert verdict.figures == {"ready": False}
    [pending] = verdict.warnings
    assert pending["event"] == "repair_pending"
    assert pending["pending"] == [f"{name} {status} ({name}_trouble)"]


def test_a_skipped_ownership_walk_vouches_for_nothing() -> None:
    verdict = judge(phases(ownership="skipped"), THEN, NODE)
    assert verdict.figures["ready"] is False
    assert "ownership skipped" in verdict.warnings[0]["message"]


# -- as PID 1, for real ------------------------------------------------------------------------


def report_phases(init: InitRunner, **env: str) -> dict[str, dict[str, Any]]:
    result = init.run("true", **env)
    assert result.returncode == 0, result.stderr
    [report] = result.events("startup_report")
    return {phase["name"]: phase for phase in report["phases"]}


@pytest.mark.pid1
def test_root_boot_repairs_a_root_owned_state_then_says_root_is_no_longer_needed(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    state = init.box / "state"
    (state / "gateway" / "agents").mkdir(parents=True)
    (state / "gateway" / "agents" / "session.json").write_text("{}")
    found = report_phases(init, MOLTBOT_USER=test_user.pw_name, MOLTBOT_AFTER_REPAIR=THEN)

    assert list(found) == [*ROOT_BOOT_PHASES[:-2], "after_repair", "upgrade", "credentials"]
    assert found["ownership"]["figures"]["changed"] > 0
    verdict = found["after_repair"]
    assert (verdict["status"], verdict["figures"]["ready"], verdict["figures"]["next"]) == ("ok", True, THEN)
    owner = os.stat(state / "gateway" / "agents" / "session.json")
    assert (owner.st_uid, owner.st_gid) == (test_user.pw_uid, test_user.pw_gid)


@pytest.mark.pid1
def test_an_entry_the_walk_left_alone_keeps_root(init: InitRunner, test_user: pwd.struct_passwd) -> None:
    # A root-owned file with a second name: the walk never re-owns it (its other name may be
    # anywhere), so a start as the user could not write it.
    state = init.box / "state"
    state.mkdir()
    (state / "shared").write_text("x")
    os.link(state / "shared", state / "shared-again")
    found = report_phases(init, MOLTBOT_USER=test_user.pw_name, MOLTBOT_AFTER_REPAIR=THEN)

    verdict = found["after_repair"]
    assert (verdict["status"], verdict["figures"]["ready"]) == ("warned", False)
    assert verdict["warnings"][0]["event"] == "repair_pending"
    assert any(
        "ownership warned (" in item and "ownership_hardlink" in item
        for item in verdict["warnings"][0]["pending"]
    )


@pytest.mark.pid1
def test_without_the_setting_the_report_has_no_verdict(
    init: InitRunner, test_user: pwd.struct_passwd
) -> None:
    assert list(report_phases(init, MOLTBOT_USER=test_user.pw_name)) == list(ROOT_BOOT_PHASES)
