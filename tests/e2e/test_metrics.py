"""The metrics of a real container with the real gateway (openclaw 2026.9.6): `status
--prometheus`, the run dir's textfile and the HTTP listener say the same, promtool accepts each,
and the values move as they should through a kill -9, a hold and an operator's start."""

from __future__ import annotations

import http.client
import os
import signal
from collections.abc import Callable

import pytest

from tests import promtool
from tests.common.test_metrics import parsed
from tests.e2e.harness import Stack
from tests.e2e.test_supervision import gateway_pid

pytestmark = pytest.mark.e2e

METRICS_PORT = 9800
TEXTFILE = "/run/moltbot/metrics.prom"
TOKEN = "/var/lib/moltbot/.moltbot-init/gateway-token"
# What changes between two renders a moment apart, whatever happened.
VOLATILE = ("_resident_memory_bytes", "_backoff_seconds_total")
Samples = dict[str, float]


def scrape(stack: Stack) -> str:
    connection = http.client.HTTPConnection(stack.ip(), METRICS_PORT, timeout=5)
    try:
        connection.request("GET", "/metrics")
        answer = connection.getresponse()
        assert answer.status == 200 and answer.getheader("Content-Type", "").startswith(
            "text/plain; version=0.0.4"
        )
        return answer.read().decode()
    finally:
        connection.close()


def three_ways(stack: Stack) -> tuple[str, str, str]:
    """The metrics as `status --prometheus`, the textfile and the listener give them, each checked."""
    status = stack.exec("moltbot-init", "status", "--prometheus")
    assert status.returncode == 0, status.stderr
    textfile = stack.exec("cat", TEXTFILE)
    assert textfile.returncode == 0, textfile.stderr
    over_http = scrape(stack)
    for text in (status.stdout, textfile.stdout, over_http):
        promtool.check(text)
    return status.stdout, textfile.stdout, over_http


def metrics_when(
    stack: Stack, what: str, condition: Callable[[Samples], bool], timeout: float = 180
) -> Samples:
    """The listener's samples once `condition` holds for them and for the textfile's (the crash
    guard rewrites it at each change and every 5 s)."""

    def holds() -> Samples | None:
        try:
            now = parsed(scrape(stack))
        except OSError:
            return None
        written = stack.exec("cat", TEXTFILE)
        return now if condition(now) and condition(parsed(written.stdout)) else None

    return stack.wait_for(what, holds, timeout, interval=1)


def restarts(samples: Samples) -> dict[str, float]:
    return {
        cause: samples[f'moltbot_gateway_restarts_total{{cause="{cause}"}}']
        for cause in ("crash", "requested", "operator")
    }


def held(samples: Samples) -> dict[str, float]:
    prefix = 'moltbot_gateway_held{reason="'
    return {
        key[len(prefix) : -2]: value for key, value in samples.items() if key.startswith(prefix) and value
    }


def kill_gateway(stack: Stack) -> int:
    pid = gateway_pid(stack)
    assert pid is not None
    on_host = stack.host_pid(pid)
    assert on_host is not None
    os.kill(on_host, signal.SIGKILL)  # from the host, as the OOM killer or an operator would
    return pid


def test_the_three_outputs_agree_and_move_through_a_kill_a_hold_and_an_operator_start(stack: Stack) -> None:
    stack.override(
        {
            "environment": {
                "MOLTBOT_METRICS_ADDRESS": f":{METRICS_PORT}",
                "MOLTBOT_CRASHLOOP_BURST": "2",
                "MOLTBOT_BACKOFF_INITIAL": "2",
            }
        }
    )
    stack.up()
    before = metrics_when(stack, "the gateway up", lambda samples: samples.get("moltbot_gateway_up") == 1)
    outputs = three_ways(stack)
    stable = [
        {k: v for k, v in parsed(text).items() if not any(part in k for part in VOLATILE)} for text in outputs
    ]
    assert stable[0] == stable[1] == stable[2]
    assert restarts(before) == {"crash": 0, "requested": 0, "operator": 0} and held(before) == {}
    assert "moltbot_gateway_last_exit_code" not in before
    assert [value for key, value in before.items() if key.startswith("moltbot_init_info{version=")] == [1]
    assert before['moltbot_init_boot_phase_duration_seconds{phase="ownership"}'] >= 0
    assert before['moltbot_init_resident_memory_bytes{process="pid1"}'] > 0
    assert before['moltbot_init_resident_memory_bytes{process="supervisord"}'] > 0
    assert (
        before["moltbot_gateway_resident_memory_bytes"]
        > before['moltbot_init_resident_memory_bytes{process="pid1"}']
    )
    token = stack.exec("cat", TOKEN).stdout.strip()
    assert token and not any(token in text for text in outputs)

    # kill -9: one crash, restarted after its backoff, a new process with a later start time.
    kill_gateway(stack)
    after_kill = metrics_when(
        stack,
        "the restart after the kill",
        lambda samples: samples.get("moltbot_gateway_up") == 1 and restarts(samples)["crash"] == 1,
    )
    assert after_kill["moltbot_gateway_last_exit_code"] == -1  # killed by a signal
    assert after_kill["moltbot_gateway_start_time_seconds"] > before["moltbot_gateway_start_time_seconds"]
    assert after_kill["moltbot_gateway_backoff_seconds_total"] >= 2 - 0.01
    assert held(after_kill) == {}

    # A second kill within the window: the crash loop is refused and the gateway held.
    kill_gateway(stack)
    holding = metrics_when(stack, "the hold", lambda samples: held(samples) == {"crash_loop": 1})
    assert holding["moltbot_gateway_up"] == 0 and holding['moltbot_gateway_state{state="held"}'] == 1
    assert restarts(holding) == {"crash": 1, "requested": 0, "operator": 0}
    three_ways(stack)

    # An operator's start leaves the hold and counts as theirs.
    started = stack.exec("supervisorctl", "start", "gateway")
    assert started.returncode == 0, started.stdout + started.stderr
    back = metrics_when(stack, "the operator's start", lambda samples: samples.get("moltbot_gateway_up") == 1)
    assert restarts(back) == {"crash": 1, "requested": 0, "operator": 1} and held(back) == {}

    # Orphans left in the container (a `docker exec` shell's background jobs) are reaped by PID 1.
    reaped = back["moltbot_init_zombies_reaped_total"]
    assert stack.exec("sh", "-c", "sleep 0.1 & sleep 0.1 & exit 0").returncode == 0
    metrics_when(
        stack,
        "the orphans reaped",
        lambda samples: samples["moltbot_init_zombies_reaped_total"] >= reaped + 2,
    )
    three_ways(stack)
