"""Stand-in gateway refused by another owner's lease (exit 1) on its first --times starts, then
healthy (see standin.py)."""

import standin

standin.main("lease_held")
