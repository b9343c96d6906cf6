"""The metrics' HTTP listener of supervisord's process: `GET /metrics` answers what the textfile
and `status --prometheus` say, in Prometheus' text format; an address it cannot listen on is one
warning line naming it and the setting, and nothing else stops."""

from __future__ import annotations

import http.client
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from entrypoint.common import exposition, guardstate, metrics
from entrypoint.common.guardplan import MetricsPlan
from entrypoint.common.guardstate import HoldCause, Snapshot, State
from entrypoint.supervisord import listener
from tests import promtool
from tests.supervised import free_port

SETTING = "APP_METRICS_ADDRESS"


def get(port: int, path: str) -> tuple[int, str, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        return answer.status, answer.getheader("Content-Type") or "", answer.read().decode()
    finally:
        connection.close()


def logged(caplog: pytest.LogCaptureFixture, name: str) -> list[dict[str, Any]]:
    return [vars(record)["fields"] for record in caplog.records if vars(record).get("event") == name]


def test_a_scrape_gets_what_the_metrics_module_renders_now(tmp_path: Path) -> None:
    held = Snapshot("gateway", State.HELD, 1000.0, held_reason="crash loop", held_cause=HoldCause.CRASH_LOOP)
    guardstate.write(str(tmp_path), held, 1000.0)
    port = free_port()
    assert listener.start(str(tmp_path), MetricsPlan("app", SETTING, ("127.0.0.1", port)))
    status, content_type, body = get(port, "/metrics")
    assert (status, content_type) == (200, exposition.CONTENT_TYPE)
    assert body == metrics.render(str(tmp_path), "app")
    assert 'app_gateway_held{reason="crash_loop"} 1\n' in body
    promtool.check(body)
    assert get(port, "/metrics?name[]=app_gateway_up")[0] == 200  # a query is no other page
    assert get(port, "/")[0] == 404 and get(port, "/healthz")[0] == 404


def test_an_ipv6_address_is_listened_on_as_one(tmp_path: Path) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    port = free_port()
    try:
        started = listener.start(str(tmp_path), MetricsPlan("app", SETTING, ("::1", port)))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    assert started
    with socket.create_connection(("::1", port), timeout=5) as client:
        client.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
        assert client.recv(64).startswith(b"HTTP/1.0 200")


def test_an_address_in_use_is_one_warning_naming_it_and_the_setting(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert not listener.start(str(tmp_path), MetricsPlan("app", SETTING, ("127.0.0.1", port)))
    [warning] = logged(caplog, "metrics_listener_failed")
    assert (warning["address"], warning["setting"]) == (f"127.0.0.1:{port}", SETTING)
    message = next(record.getMessage() for record in caplog.records if vars(record).get("event"))
    assert f"127.0.0.1:{port}" in message and SETTING in message and "textfile" in message
    assert logged(caplog, "metrics_listening") == []
