"""The metrics over HTTP: `GET /metrics` answered with what `common/metrics` renders now, for a
Prometheus that scrapes the container.

Where it differs: a thread of its own (`metrics-listener`), started before supervisord's main loop
only when the init's orders give it an address (this module is imported only then). One request at
a time, each bounded: a scraper that stalls cannot hold it for long, and nothing it sends reaches
supervisord's loop. An address it cannot listen on is one warning, and supervisord runs on.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from ..common import exposition, log, metrics
from ..common.guardplan import MetricsPlan

PATH = "/metrics"
# A scrape renders in milliseconds; a client that sends its request slower than this is dropped.
REQUEST_TIMEOUT_S = 5.0
# serve_forever wakes this often only to look for a shutdown, which never comes (a daemon thread).
_IDLE_WAKEUP_S = 3600.0

_logger = log.get("metrics")


class _Server(socketserver.TCPServer):
    """A TCP server without http.server's reverse lookup of its own address at bind (a DNS query,
    which in a container without a network waits for its timeout)."""

    allow_reuse_address = True  # a restarted container gets its port back at once

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        super().__init__(address, handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A request that failed (a client gone mid-answer): one line, never a traceback on stderr."""
        log.event(
            _logger, "debug", "metrics_request_failed", f"a metrics request from {client_address} failed"
        )


def _handler(run_dir: str, namespace: str) -> type[BaseHTTPRequestHandler]:
    class Scrape(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT_S
        server_version = "metrics"

        def do_GET(self) -> None:
            if self.path.partition("?")[0] != PATH:
                self._answer(404, f"the metrics are at {PATH}\n".encode(), "text/plain; charset=utf-8")
                return
            self._answer(200, metrics.render(run_dir, namespace).encode(), exposition.CONTENT_TYPE)

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: every line the init writes is JSON, and a scrape is no news."""

    return Scrape


def start(run_dir: str, plan: MetricsPlan) -> bool:
    """Listen on the plan's address and serve from a thread; False (said in one warning) when the
    address cannot be listened on."""
    if plan.listen is None:
        return False
    host, port = plan.listen
    shown = f"[{host}]:{port}" if ":" in host else f"{host or '0.0.0.0'}:{port}"
    try:
        server = _Server((host, port), _handler(run_dir, plan.namespace))
    except OSError as error:
        low = " (ports below 1024 need root; the listener runs as the gateway's user)" if port < 1024 else ""
        log.event(
            _logger,
            "warning",
            "metrics_listener_failed",
            f"cannot listen on {shown} for the metrics: {error.strerror or error}{low}. They are not "
            f"served over HTTP (the run dir's textfile and `status --prometheus` still have them): set "
            f"{plan.setting} to a free address, or leave it empty",
            address=shown,
            setting=plan.setting,
            errno=error.errno,
        )
        return False
    serving = threading.Thread(
        target=server.serve_forever, args=(_IDLE_WAKEUP_S,), name="metrics-listener", daemon=True
    )
    serving.start()
    log.event(_logger, "info", "metrics_listening", f"metrics at http://{shown}{PATH}", address=shown)
    return True
