"""Nothing the gateway writes takes the init down: whatever its bytes (every script, invalid UTF-8,
NULs, escape sequences, a 4 MiB line, a 40 MiB flood), PID 1 stays up and holds, every datagram to
the service manager is valid UTF-8 on one line, every line of the init's is valid JSON, and
supervisord's process stays within its memory."""

from __future__ import annotations

import json
from collections.abc import Callable

import psutil
import pytest

from tests.supervised import NOT_UTF8, Supervised, policy_env, service_manager, standin

pytestmark = pytest.mark.pid1

# supervisord's process, with the crash guard in it, unfrozen (the image's is smaller): what a flood
# may not push it past (it would hold the flood in memory were its backlog unbounded).
SUPERVISORD_PEAK_MAX = 80 << 20


def peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(int(line.split()[1]) << 10 for line in status if line.startswith("VmHWM:"))


@pytest.mark.parametrize("end", ["exits-78", "crashes"])
def test_the_worst_output_leaves_pid_1_up_holding_and_every_line_and_datagram_valid(
    supervised: Callable[..., Supervised], end: str
) -> None:
    received: list[str] = []
    ending = ["--crash"] if end == "crashes" else ["--exit-code", "78"]
    with service_manager(received.append) as notify_socket:
        running = supervised(
            standin("hostile", "--flood-mib", "40", *ending),
            NOTIFY_SOCKET=notify_socket,
            **policy_env(initial=0.1, burst=2, window=300),
        )
        try:
            held = running.wait_for("gateway_held", timeout=120)[0]
            assert running.process.poll() is None  # PID 1 is up, holding
            state = running.guard_state("held")
            health = running.init_command("health")
            status = running.init_command("status", "--json")
            tree = psutil.Process(running.init_pid()).children(recursive=True)
            supervisord = next(process for process in tree if process.name() == "supervisord")
            peak = peak_rss(supervisord.pid)
        finally:
            code = running.terminate()
    assert code == 0
    assert health.returncode == 1 and health.stdout.count("\n") == 1 and "held" in health.stdout
    assert json.loads(status.stdout)["crash_guard"]["state"] == "held"
    assert peak < SUPERVISORD_PEAK_MAX, peak
    # The gateway's last words, as far as they are words, in the line that held it (and, for a
    # configuration it refused, in the state file that health reads).
    refused = held if end == "exits-78" else running.events("crash_loop_refused")[0]
    assert "Config invalid → gateway.bind" in refused["stderr_tail"][-1]
    assert "Config invalid → gateway.bind" in state["held_reason"] or end == "crashes"
    for said in [*refused["stderr_tail"], state["held_reason"]]:
        said.encode("utf-8")
        assert "\x00" not in said and "\x1b" not in said
    # Every datagram is UTF-8 (no NOT_UTF8), one line, and nothing the gateway wrote made a READY.
    assert received and not [message for message in received if message.startswith(NOT_UTF8)]
    assert all("\n" not in message for message in received)
    assert "READY=1" not in received
    # Every line of the init's own is one valid JSON object, in valid UTF-8.
    own = [raw for raw in running.raw_stderr if raw.startswith('{"time"')]
    assert own and len(own) == len(running.lines)
    for raw in own:
        raw.encode("utf-8", "surrogateescape").decode("utf-8")
