"""Stand-in gateway that exits with --exit-code (default 1) at once (see standin.py)."""

import standin

standin.main("instant_exit")
