"""A generic container init: prepare volumes as root, drop privileges, then supervise or run a program.

Nothing in this package knows which application it runs: `__main__` wires in a profile
(a small package of plain data) that supplies names, paths and the program to run.
"""

__version__ = "0.1.0"
