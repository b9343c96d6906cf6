"""Stand-in gateways that speak HTTP on their port, for the health and sd_notify tests: one with
the probes of openclaw >= 2026.8 (`probes.py`), one with only the Control UI's catch-all page of
the older generations (`control_ui.py`). Run by the tests directly, or by the init under
supervisord (as its target user), as `python3 tests/standins/<variant>.py [options]`; standard
library only.

As the gateway does, measured against openclaw 2026.9.6:
  GET /healthz, /health    200 {"ok":true,"status":"live"}
  GET /startupz, /startup  503 {"ok":false,"status":"starting","pendingReason":...} for --starting
                           seconds, then 200 {"ok":true,"status":"started"}; 503 "draining" after
                           SIGTERM (for --term-delay seconds, then it exits 0)
  GET /readyz, /ready      503 {"ready":false,"failing":[...]} while starting, draining or with
                           --failing NAME, else 200 {"ready":true}
  anything else            200 text/html (the Control UI answers every unknown path)
The older generations answer every path, probes included, with that page. A local caller gets the
details (pendingReason, version, uptimeMs, failing), as from the gateway.

Options: --port P (listen on 127.0.0.1:P), --starting S, --failing NAME (repeatable),
--term-delay S, --pidfile PATH, --env-file PATH (its environment, as JSON). Prints
`standin <variant> pid=N port=P` when it listens.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

VERSION = "2026.9.6-standin"
PAGE = b"<!doctype html><html><head><title>Control UI</title></head><body>stand-in</body></html>"
LIVE = ("/healthz", "/health")
STARTUP = ("/startupz", "/startup")
READY = ("/readyz", "/ready")


def _options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--starting", type=float, default=0.0)
    parser.add_argument("--failing", action="append", default=[])
    parser.add_argument("--term-delay", type=float, default=0.0)
    parser.add_argument("--pidfile")
    parser.add_argument("--env-file")
    return parser.parse_args(argv)


class _Gateway:
    def __init__(self, options: argparse.Namespace, with_probes: bool) -> None:
        self.started_at = time.monotonic()
        self.options = options
        self.with_probes = with_probes
        self.draining = False

    def answer(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for GET `path`."""
        if not self.with_probes or path not in LIVE + STARTUP + READY:
            return 200, "text/html; charset=utf-8", PAGE
        uptime_ms = int((time.monotonic() - self.started_at) * 1000)
        starting = time.monotonic() - self.started_at < self.options.starting
        body: dict[str, Any]
        if path in LIVE:
            body = {"ok": True, "status": "live"}
        elif path in STARTUP:
            body = {"ok": False, "status": "starting", "pendingReason": "startup-sidecars"}
            if self.draining:
                body = {"ok": False, "status": "draining"}
            elif not starting:
                body = {"ok": True, "status": "started"}
            body.update(version=VERSION, uptimeMs=uptime_ms)
        else:
            failing = list(self.options.failing)
            if self.draining:
                failing = ["gateway-draining"]
            elif starting:
                failing = ["startup-sidecars"]
            body = {"ready": not failing, "uptimeMs": uptime_ms, **({"failing": failing} if failing else {})}
        passed = body.get("ok", body.get("ready"))
        return 200 if passed else 503, "application/json; charset=utf-8", json.dumps(body).encode()


def _handler(gateway: _Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # as Node: it closes the connection after an HTTP/1.0 request

        def do_GET(self) -> None:
            status, content_type, body = gateway.answer(self.path.split("?", 1)[0])
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


def main(variant: str) -> None:
    options = _options(sys.argv[1:])
    if options.pidfile:
        with open(options.pidfile, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
    if options.env_file:
        with open(options.env_file, "w", encoding="utf-8") as handle:
            json.dump(dict(os.environ), handle)
    gateway = _Gateway(options, with_probes=variant == "probes")
    server = ThreadingHTTPServer(("127.0.0.1", options.port), _handler(gateway))
    server.daemon_threads = True
    stopped = threading.Event()

    def on_term(_signum: int, _frame: object) -> None:
        # Drain as the gateway does: still answering, its startup probe says "draining".
        gateway.draining = True
        threading.Timer(options.term_delay, stopped.set).start()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    print(f"standin {variant} pid={os.getpid()} port={options.port}", flush=True)
    while not stopped.wait(0.1):
        pass
    print(f"standin {variant}: SIGTERM, exiting 0", flush=True)
    server.server_close()
    sys.exit(0)
