"""A container init: prepare volumes as root, drop privileges, then supervise or run a program.

Who runs it: every process of the binary, as whoever started it; each program has its folder,
which says who runs it, as whom and after what: `boot/` (PID 1, once, root until the drop),
`pid1/` (PID 1 afterwards), `supervisord/` (supervisord's process), `crashguard/` (inside it),
`tools/` (operators and probes); `common/` holds the contracts between them. Nothing in these
folders knows which application it runs: `wiring` reads the profile (a small package of plain
data) that supplies names, paths and the program to run.
"""

__version__ = "0.1.0"
