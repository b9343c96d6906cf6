"""Stand-in gateway of an older generation: the Control UI's page on every path, probes included
(see http_gateway.py)."""

import http_gateway

http_gateway.main("control_ui")
