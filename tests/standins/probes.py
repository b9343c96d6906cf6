"""Stand-in gateway with openclaw's HTTP probes: /healthz, /startupz, /readyz (see http_gateway.py)."""

import http_gateway

http_gateway.main("probes")
