"""PyInstaller's entry script for the frozen moltbot-init (see scripts/build-binary).

A file, not `-m entrypoint`: PyInstaller freezes a script. Kept to one import so that the
frozen program starts exactly as `python -m entrypoint` / the `moltbot-init` console script.
"""

from entrypoint.__main__ import main

raise SystemExit(main())
