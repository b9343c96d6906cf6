"""Stand-in gateway that runs --run seconds (listening on --port), then exits 1 (see standin.py)."""

import standin

standin.main("flapping")
