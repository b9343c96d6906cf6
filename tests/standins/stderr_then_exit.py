"""Stand-in gateway that writes --stderr-lines lines (default 30) to stderr, then exits (see standin.py)."""

import standin

standin.main("stderr_then_exit")
