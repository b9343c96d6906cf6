"""The metrics of a whole init as PID 1 supervising a stand-in gateway: the textfile in the run dir,
`status --prometheus` and the HTTP listener in supervisord's process say the same things, promtool
accepts each, and the orphans PID 1 reaps are counted. A listener that cannot listen stops nothing."""

from __future__ import annotations

import http.client
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from entrypoint.common import rundir
from tests import promtool
from tests.common.test_metrics import parsed
from tests.supervised import Supervised, free_port, standin

pytestmark = pytest.mark.pid1

Start = Callable[..., Supervised]
# What changes between two renders a moment apart, whatever happened.
VOLATILE = ("_resident_memory_bytes", "_backoff_seconds_total")


def textfile(
    run: Supervised, want: Callable[[dict[str, float]], bool], timeout: float = 30
) -> dict[str, float]:
    """The textfile's samples once `want` says yes (the crash guard rewrites it at each tick)."""
    path = run.run_dir / rundir.METRICS_TEXTFILE
    deadline = time.monotonic() + timeout
    while True:
        text = path.read_text() if path.exists() else ""
        if text and want(parsed(text)):
            promtool.check(text)
            return parsed(text)
        if time.monotonic() > deadline:
            raise AssertionError(f"the textfile never said it; last:\n{text}\nevents: {run.names()}")
        time.sleep(0.2)


def scrape(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/metrics")
        answer = connection.getresponse()
        assert answer.status == 200
        return answer.read().decode()
    finally:
        connection.close()


def stable(samples: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in samples.items() if not any(part in key for part in VOLATILE)}


def test_the_textfile_the_status_command_and_the_listener_say_the_same(supervised: Start) -> None:
    port, metrics_port = free_port(), free_port()
    run = supervised(
        standin("healthy", "--port", port),
        MOLTBOT_GATEWAY_PORT=str(port),
        MOLTBOT_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
    )
    run.wait_for("gateway_running")
    run.wait_for("metrics_listening")
    from_file = textfile(run, lambda samples: samples.get("moltbot_gateway_up") == 1)
    status = run.init_command("status", "--prometheus")
    assert status.returncode == 0, status.stderr
    promtool.check(status.stdout)
    over_http = scrape(metrics_port)
    promtool.check(over_http)
    assert stable(parsed(status.stdout)) == stable(parsed(over_http)) == stable(from_file)
    assert from_file['moltbot_init_resident_memory_bytes{process="pid1"}'] > 0
    assert from_file['moltbot_init_resident_memory_bytes{process="supervisord"}'] > 0
    assert from_file["moltbot_gateway_resident_memory_bytes"] > 0
    assert (Path(run.run_dir) / rundir.METRICS_TEXTFILE).stat().st_mode & 0o777 == 0o644
    assert run.terminate() == 0
    after = parsed((run.run_dir / rundir.METRICS_TEXTFILE).read_text())
    assert after["moltbot_gateway_up"] == 0 and after['moltbot_gateway_state{state="stopped"}'] == 1


def test_orphans_pid_1_reaps_are_counted(supervised: Start) -> None:
    port = free_port()
    run = supervised(standin("healthy", "--port", port), MOLTBOT_GATEWAY_PORT=str(port))
    run.wait_for("gateway_running")
    textfile(run, lambda samples: samples.get("moltbot_init_zombies_reaped_total") == 0)
    # A shell in the container's PID namespace that leaves three children behind when it exits,
    # as `docker exec` can: the kernel hands them to PID 1.
    enter = ["nsenter", f"--target={run.init_pid()}", "--pid", "--mount", "--"]
    subprocess.run([*enter, "sh", "-c", "sleep 0.1 & sleep 0.1 & sleep 0.1 & exit 0"], check=True, timeout=30)
    textfile(run, lambda samples: samples.get("moltbot_init_zombies_reaped_total") == 3)
    assert run.terminate() == 0


def test_a_metrics_address_in_use_is_one_warning_and_the_gateway_runs(supervised: Start) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        run = supervised(
            standin("healthy", "--port", port),
            MOLTBOT_GATEWAY_PORT=str(port),
            MOLTBOT_METRICS_ADDRESS=address,
        )
        [warning] = run.wait_for("metrics_listener_failed")
        assert warning["level"] == "warning" and warning["address"] == address
        assert warning["setting"] == "MOLTBOT_METRICS_ADDRESS"
        run.wait_for("gateway_running")
        textfile(run, lambda samples: samples.get("moltbot_gateway_up") == 1)
        assert run.terminate() == 0
    assert run.non_json_stderr() == []
