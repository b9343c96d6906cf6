"""Stand-in gateway that writes the worst output it can (every script, invalid UTF-8, NULs, escape
sequences, a 4 MiB line, a flood), then exits 78 or crashes (see standin.py)."""

import standin

standin.main("hostile")
