"""supervisord exec'd as `<init> supervisord -c CONFIG`, as PID 1 starts it where a fork is not
safe: the same process as a forked one, the crash guard in it, its last lines written at the end."""

from __future__ import annotations

import json
import signal
import subprocess
import time

from entrypoint.common import guardplan, ledger, rundir
from entrypoint.common.plans import Program
from entrypoint.pid1 import supervision
from entrypoint.supervisord import INTERFACES
from tests.conftest import InitRunner
from tests.supervised import guard_plan, policy


def test_an_exec_d_supervisord_runs_the_crash_guard_in_its_process(init: InitRunner) -> None:
    run_dir = init.box / "run"
    run_dir.mkdir()
    layout = supervision.Layout(str(run_dir))
    ledger_path = str(init.box / "ledger.json")
    ledger.begin_boot(ledger_path, time.time())
    guardplan.write(str(run_dir), guard_plan(ledger_path))
    program = Program("gateway", ("sleep", "300"), {}, "/")
    supervision.write_config(
        layout, supervision.render(program, policy(), layout, INTERFACES, autostart=True)
    )
    process = init.popen("supervisord", "-c", layout.config, pid1=False)
    try:
        state = run_dir / rundir.GUARD_STATE
        deadline = time.monotonic() + 30
        while (rundir.read_json(str(run_dir), rundir.GUARD_STATE) or {}).get("state") != "running":
            assert time.monotonic() < deadline and process.poll() is None, "the guard never said running"
            time.sleep(0.05)
        guard = json.loads(state.read_text())
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    events = [json.loads(line)["event"] for line in stderr.splitlines() if line.startswith("{")]
    assert guard["supervisord_pid"] == process.pid
    assert events[:2] == ["gateway_starting", "gateway_running"]
    # supervisord had stopped before the guard wrote it: finishing, it handled what was queued.
    assert events[-1] == "gateway_stopped" and process.returncode == 0
    assert (rundir.read_json(str(run_dir), rundir.GUARD_STATE) or {})["state"] == "stopped"
    assert not subprocess.run(["pgrep", "-f", "sleep 300"], capture_output=True).stdout
