"""Stand-in gateway that allocates --allocate MiB once started, then runs (see standin.py)."""

import standin

standin.main("allocates")
