"""Stand-in gateway that ignores SIGTERM (and SIGINT): only SIGKILL ends it (see standin.py)."""

import standin

standin.main("ignores_sigterm")
