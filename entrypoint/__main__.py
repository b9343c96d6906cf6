"""The entry point: pick the program by the name the binary was called by, nothing else.

One binary, several programs (a multicall binary, as busybox): called as `supervisord`,
`supervisorctl` or the application's CLI name through a symlink it is that tool; as the init it
boots the container or answers a subcommand. A name it does not know is refused: falling through to a boot
would start a second init inside a running container. What each program does is in `wiring`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from . import __version__, wiring
from .common import log

EX_USAGE = 64
EX_SOFTWARE = 70
_INIT_NAMES = frozenset({wiring.INIT_NAME, "__main__.py", "entrypoint"})
_LOG = log.get("main")

# Called by these names (argv[0]), the program is that tool.
_TOOLS: dict[str, Callable[[list[str]], int]] = {
    "supervisord": wiring.supervisord,
    "supervisorctl": wiring.supervisorctl,
    wiring.APP_NAME: wiring.application_cli,
}
# Subcommands of the init itself; anything else is a boot (supervise or one-off).
_SUBCOMMANDS: dict[str, Callable[[list[str]], int]] = {
    "supervisord": wiring.supervisord,
    "supervisorctl": wiring.supervisorctl,
    "health": wiring.health,
    "status": wiring.status,
}
# Short-lived tools that end without the interpreter's finalization (see _exit_now).
_EXIT_AT_ONCE = frozenset({"health", "status"})


def _init(args: list[str]) -> int:
    head = args[0] if args else None
    if head in ("-h", "--help"):
        print(wiring.HELP, end="")
        return 0
    if head == "--version":
        print(f"{wiring.INIT_NAME} {__version__}")
        return 0
    if head == "init":
        return wiring.boot(tuple(args[1:]))
    if head in _SUBCOMMANDS:
        code = _SUBCOMMANDS[head](args[1:])
        if head in _EXIT_AT_ONCE:
            _exit_now(code)
        return code
    return wiring.boot(tuple(args))


def _exit_now(code: int) -> NoReturn:
    """End a probe or `status` now: flush what it printed, then skip the interpreter's finalization,
    which tears every module down and cost a HEALTHCHECK probe a tenth of its time. These tools
    hold no lock, temporary file or child that an exit handler would have to release."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # the reader went away: there is no one left to tell
            stream.flush()
    os._exit(code)


def _dispatch(argv: list[str]) -> int:
    name = os.path.basename(argv[0]) if argv else wiring.INIT_NAME
    if name in _TOOLS:
        return _TOOLS[name](argv[1:])
    if name not in _INIT_NAMES:
        log.configure()
        log.event(
            _LOG,
            "error",
            "unknown_program_name",
            f"called as {name!r}: expected {wiring.INIT_NAME}, " + ", ".join(sorted(_TOOLS)),
            name=name,
        )
        return EX_USAGE
    return _init(argv[1:])


def main(argv: list[str] | None = None) -> int:
    try:
        return _dispatch(list(sys.argv if argv is None else argv))
    except Exception as error:  # never a traceback on the container's stderr, one JSON line instead
        log.event(_LOG, "error", "init_crashed", f"unexpected error: {error}", error=type(error).__name__)
        return EX_SOFTWARE


if __name__ == "__main__":
    raise SystemExit(main())
