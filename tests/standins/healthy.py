"""Stand-in gateway that listens on --port and exits 0 on SIGTERM (see standin.py)."""

import standin

standin.main("healthy")
