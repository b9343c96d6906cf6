"""Run-time hook that does nothing, in place of PyInstaller's own for `inspect` and `pkgutil`.

Who runs it: the frozen moltbot-init, every process (the boot, supervisord, each operator tool),
before our first line. PyInstaller takes the run-time hooks of a module from the first hook
directory that names it (scripts/pyinstaller-hooks/rthooks.dat, before its own), so this file
replaces its two hooks.

Why: its hooks import `inspect` and `pkgutil` at every start, whether the program uses them or
not, and `inspect`'s also reads the whole base_library.zip with `zipfile` to patch
`inspect.getsourcefile`. Together they were about half of the frozen program's imports, paid by
every `health` probe and by PID 1 before its first line. What they patch is for source lookup
(tracebacks with source lines) and for iterating frozen packages with `pkgutil.iter_modules`;
this program shows no traceback and never lists packages at run time. `dataclasses` still
imports `inspect`, but only where it is used.
"""
