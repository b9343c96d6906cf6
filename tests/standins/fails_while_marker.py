"""Stand-in gateway that exits 1 at once while --marker exists, else runs healthy (see standin.py)."""

import standin

standin.main("fails_while_marker")
