"""The entry point: pick the program by the name the binary was called by, nothing else.

Who runs it: every process of the binary, first thing, as whoever started it. One binary, several
programs (a multicall binary, as busybox): called as `supervisord`, `supervisorctl` or the
application's CLI name through a symlink it is that tool; as the init it boots the container or
answers a subcommand. A name it does not know is refused: falling through to a boot would start a
second init inside a running container. Each subcommand is one row of `SUBCOMMANDS`, its help beside
it; what each one does is in `commands`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from . import __version__, commands, wiring
from .common import log, rundir
from .common.exits import Exit

INIT = wiring.INIT_NAME
_LOG = log.get("main")


@dataclass(frozen=True)
class Subcommand:
    run: Callable[[list[str]], int]
    usage: str  # its arguments, as the help shows them
    summary: str  # what it does, one line or two
    # A short-lived tool that ends without the interpreter's finalization (see _exit_now).
    exits_at_once: bool = False


# The init's subcommands, each with its help. Any other first word boots (see the help's first lines).
SUBCOMMANDS = {
    "status": Subcommand(
        commands.status,
        "[--json | --prometheus]",
        "what the boot did and how the gateway is (--prometheus: as metrics)",
        True,
    ),
    "health": Subcommand(
        commands.health,
        "[--startup | --ready] [--timeout S]",
        "exit 0 when the gateway says it is live (started, ready); 3 s at most by default",
        True,
    ),
    "supervisorctl": Subcommand(
        commands.supervisorctl, "[ARGS...]", "operate the gateway (start, stop, restart, status)"
    ),
    "checkpoints": Subcommand(
        commands.checkpoints, "[--json]", "the state's checkpoints and the releases that ran on it"
    ),
    "checkpoint": Subcommand(commands.checkpoint, "", "take a checkpoint of the state now (gateway stopped)"),
    "rollback": Subcommand(
        commands.rollback, "[ID]", "put a checkpoint back in place of the state (gateway stopped)"
    ),
    "backup": Subcommand(
        commands.backup,
        "[--output DIR] [--keep N] [--every S]",
        "the gateway's own verified archive of the state, beside it; the newest N kept",
    ),
    "restore": Subcommand(
        commands.restore, "ARCHIVE", "put an archive's state in place of the state (gateway stopped)"
    ),
    "supervisord": Subcommand(commands.supervisord, "-c CONFIG", "supervisord's process (PID 1 runs it)"),
}
# Called by these names (argv[0]), the program is that tool.
TOOLS: dict[str, Callable[[list[str]], int]] = {
    "supervisord": commands.supervisord,
    "supervisorctl": commands.supervisorctl,
    wiring.APP_NAME: commands.application_cli,
}
_INIT_NAMES = frozenset({INIT, "__main__.py", "entrypoint"})


def help_text() -> str:
    column = 50
    rows = [
        ("[gateway] [GATEWAY-ARGS...]", "boot and supervise the gateway (the container's PID 1)"),
        ("COMMAND [ARGS...]", "boot, then run COMMAND once (as tini would)"),
        (f"{wiring.APP_NAME} [ARGS...]", "boot, then run the gateway's CLI once"),
        *((f"{name} {command.usage}", command.summary) for name, command in SUBCOMMANDS.items()),
        ("--version | --help", ""),
    ]
    lines = []
    for index, (usage, summary) in enumerate(rows):
        left = f"{'usage:' if index == 0 else '      '} {INIT} {usage}"
        lines.append(f"{left:<{column}} {summary}".rstrip() if len(left) < column else left)
        if len(left) >= column and summary:
            lines.append(f"{'':<{column}} {summary}")
    return "\n".join(lines) + "\n\n" + wiring.ABOUT


def _init(args: list[str]) -> int:
    if args[:1] == [INIT]:  # `docker run IMAGE <init> rollback`: the entrypoint named twice
        args = args[1:]
    head = args[0] if args else None
    if head in ("-h", "--help"):
        print(help_text(), end="")
        return Exit.OK
    if head == "--version":
        print(f"{INIT} {__version__}")
        return Exit.OK
    if head in SUBCOMMANDS:
        subcommand = SUBCOMMANDS[head]
        code = subcommand.run(args[1:])
        if subcommand.exits_at_once:
            _exit_now(code)
        return code
    boot_args = args[1:] if head == "init" else args
    try:
        return commands.boot(boot_args)
    except rundir.InstanceRunning as running:
        return _beside(running, boot_args)


def _beside(running: rundir.InstanceRunning, args: list[str]) -> int:
    """An init already lives in this container (this is a `docker exec`, a probe, a typo): never a
    second boot. The application's CLI is what `<init> <app> ...` asks for; anything else is one
    line naming the tools, and the one meant where the word is a near miss."""
    head = args[0] if args else ""
    if head == wiring.APP_NAME:
        return commands.application_cli(args[1:])
    tools = [*SUBCOMMANDS, wiring.APP_NAME]
    import difflib  # here, not at the top: every process of the init would keep it in its memory

    meant = difflib.get_close_matches(head, tools, n=1)
    said = f"`{INIT} {' '.join(args)}` would boot a second time" if args else "it would boot a second time"
    hint = f"; did you mean `{INIT} {meant[0]}`?" if meant else "; to run a command here, run it directly"
    log.event(
        _LOG,
        "error",
        "init_already_running",
        f"{INIT} already runs in this container (pid {running.pid}): {said}, which it never does. "
        f"Its tools: {', '.join(tools)}{hint}",
        pid=running.pid,
        command=head or None,
        tools=tools,
        did_you_mean=meant[0] if meant else None,
    )
    return Exit.USAGE


def _exit_now(code: int) -> NoReturn:
    """End a probe or `status` now: flush what it printed, then skip the interpreter's finalization,
    which tears every module down and cost a HEALTHCHECK probe a tenth of its time. These tools
    hold no lock, temporary file or child that an exit handler would have to release."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # the reader went away: there is no one left to tell
            stream.flush()
    os._exit(code)


def _dispatch(argv: list[str]) -> int:
    name = os.path.basename(argv[0]) if argv else INIT
    if name in TOOLS:
        return TOOLS[name](argv[1:])
    if name not in _INIT_NAMES:
        log.configure()
        log.event(
            _LOG,
            "error",
            "unknown_program_name",
            f"called as {name!r}: expected {INIT}, " + ", ".join(sorted(TOOLS)),
            name=name,
        )
        return Exit.USAGE
    return _init(argv[1:])


def main(argv: list[str] | None = None) -> int:
    try:
        return _dispatch(list(sys.argv if argv is None else argv))
    except Exception as error:  # never a traceback on the container's stderr, one JSON line instead
        log.event(_LOG, "error", "init_crashed", f"unexpected error: {error}", error=type(error).__name__)
        return Exit.SOFTWARE


if __name__ == "__main__":
    raise SystemExit(main())
