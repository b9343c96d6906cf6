"""supervisord's standby: forked at the start of the boot, it becomes the user first, imports
supervisord and the crash guard while PID 1 boots, and serves only once it has its orders; a
standby that cannot go on, is stuck, or is cancelled never serves and leaves no process behind.

Each case runs in a fresh interpreter (its own modules, signals and children), as PID 1 would."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = """
import json, os, sys, time
from functools import partial
from entrypoint.pid1 import supervision
from entrypoint.supervisord import standby as standing_by

case = sys.argv[1]
supervision.READY_TIMEOUT_S = 0.5  # a stuck standby, found out quickly
read_end, write_end = os.pipe()
os.set_inheritable(write_end, True)  # kept by the fork, as what an exec keeps


def tell(**seen):
    os.write(write_end, (json.dumps(seen) + "\\n").encode())


def become_user():
    tell(step="become", supervisord_imported="supervisor.supervisord" in sys.modules)
    if case == "stuck":
        time.sleep(30)
    return case != "refused"


def serve(config):
    wanted = ("supervisor.supervisord", "entrypoint.crashguard.plugin")
    imported = [name for name in wanted if name in sys.modules]
    group = os.getpgid(0) == os.getpid()
    tell(step="serve", config=config, env=dict(os.environ), imported=imported, group=group)
    return 4


life = partial(standing_by.stand_by, become_user=become_user, serve=serve)
standby = supervision.Standby.fork(life, frozenset())
if case == "cancelled":
    standby.cancel()
    handed = False
else:
    handed = standby.hand_over({"ONLY": "this"}, "/run/moltbot/supervisord.conf")
try:
    code = os.waitstatus_to_exitcode(os.waitpid(standby.pid, 0)[1])
    reaped_by_standby = False
except ChildProcessError:
    code, reaped_by_standby = None, True
os.close(write_end)
with os.fdopen(read_end) as told:
    steps = [json.loads(line) for line in told]
print(json.dumps({"handed": handed, "code": code, "reaped": reaped_by_standby, "steps": steps}))
"""


def standby(case: str) -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT, case], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""  # not a line: a standby that ends says nothing, PID 1 does
    return json.loads(completed.stdout)


def test_a_standby_becomes_the_user_first_then_serves_its_orders_with_supervisord_loaded() -> None:
    result = standby("ordered")
    become, serve = result["steps"]
    assert become == {"step": "become", "supervisord_imported": False}
    assert result["handed"] is True and result["code"] == 4
    assert serve == {
        "step": "serve",
        "config": "/run/moltbot/supervisord.conf",
        "env": {"ONLY": "this"},  # the orders' environment, nothing of the boot's
        "imported": ["supervisor.supervisord", "entrypoint.crashguard.plugin"],
        "group": True,
    }


@pytest.mark.parametrize("case", ["refused", "stuck", "cancelled"])
def test_a_standby_that_cannot_go_on_is_stuck_or_cancelled_never_serves_and_is_reaped(case: str) -> None:
    result = standby(case)
    assert result["handed"] is False
    assert "serve" not in [step["step"] for step in result["steps"]]
    assert result["reaped"] is True  # no process left behind, no zombie
