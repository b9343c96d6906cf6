"""Stand-in gateway that exits 0 with a restart handoff in --handoff after --run seconds, on
its first --times starts (see standin.py)."""

import standin

standin.main("requests_restart")
