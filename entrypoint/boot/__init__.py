"""The boot: runs once per container start, in PID 1, as root when started as root, in the order
`pipeline.py` states (prepare, ownership, migration, privileges, credentials). It ends with the
privilege drop and hands the program to `pid1/`. Nothing here imports the programs that run after.
"""
