"""Stand-in gateways for the tests: small programs that behave like a gateway, or misbehave.

Every variant is a script in this directory (`python3 tests/standins/<variant>.py [options]`); they
share this module. Options, all optional:

  --port P          listen on 127.0.0.1:P (and 0.0.0.0 with --any) once started (default: $STANDIN_PORT)
  --ready-after S   wait S seconds before listening
  --pidfile PATH    write the pid there at start
  --children N      start N child processes (sleepers) in the same process group
  --term-delay S    on SIGTERM, wait S seconds before exiting 0
  --stderr-lines N  write N numbered lines to stderr at start
  --exit-code C     the code of a voluntary exit (default 1)
  --run S           how long to run before a voluntary exit (flapping)
  --marker PATH     the fault marker (fails_while_marker)
  --counter PATH    append one line per start to this file (to count starts from a test)
  --env-file PATH   write the environment it was given there, as JSON
  --say TEXT        write TEXT to stderr at start, `$NAME` replaced from the environment (repeatable)
  --times N         requests_restart, lease_held: misbehave on the first N starts (with --counter)
  --handoff PATH    requests_restart: where to write its restart handoff before exiting 0
  --allocate MIB    allocates: allocate and touch this much memory once started
  --flood-mib N     hostile: write N MiB to stdout at start, after its other hostile output
  --crash           hostile: end by SIGSEGV instead of --exit-code

Each prints one line to stdout when it starts (`standin <variant> pid=N ...`), so a test can see
that the program's stdout reaches the container's stdout unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time


def _options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=True)
    default_port = os.environ.get("STANDIN_PORT")
    parser.add_argument("--port", type=int, default=int(default_port) if default_port else None)
    parser.add_argument("--any", action="store_true")
    parser.add_argument("--ready-after", type=float, default=0.0)
    parser.add_argument("--pidfile")
    parser.add_argument("--children", type=int, default=0)
    parser.add_argument("--term-delay", type=float, default=0.0)
    parser.add_argument("--stderr-lines", type=int, default=0)
    parser.add_argument("--exit-code", type=int, default=1)
    parser.add_argument("--run", type=float, default=3.0)
    parser.add_argument("--marker")
    parser.add_argument("--counter")
    parser.add_argument("--env-file")
    parser.add_argument("--say", action="append", default=[])
    parser.add_argument("--times", type=int, default=1)
    parser.add_argument("--handoff")
    parser.add_argument("--allocate", type=int, default=0)
    parser.add_argument("--flood-mib", type=int, default=0)
    parser.add_argument("--crash", action="store_true")
    return parser.parse_args(argv)


# What the gateway says when another container's owner lease on its state dir is still active.
LEASE_REFUSAL = (
    "Gateway failed to start: Another Gateway owner lease is still active for this state directory. "
    "Run openclaw gateway status --deep for diagnostics."
)


class _Terminated(Exception):
    pass


def _on_term(_signum: int, _frame: object) -> None:
    raise _Terminated


def _listen(port: int, anywhere: bool) -> socket.socket:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0" if anywhere else "127.0.0.1", port))
    server.listen(64)
    server.settimeout(0.2)
    return server


def _serve(server: socket.socket | None, until: float | None) -> None:
    """Accept (and close) connections until `until` (forever when None)."""
    while until is None or time.monotonic() < until:
        if server is None:
            time.sleep(0.1 if until is None else max(0.0, min(0.1, until - time.monotonic())))
            continue
        try:
            connection, _ = server.accept()
        except TimeoutError:
            continue
        except OSError:
            continue
        connection.close()


def _starts(options: argparse.Namespace) -> int:
    """How many times this stand-in has started, this start included (by its --counter)."""
    if not options.counter:
        return 1
    with open(options.counter, encoding="ascii") as handle:
        return len(handle.read().splitlines())


def _request_restart(path: str) -> None:
    """Write a restart handoff as the gateway does before a clean exit (tests/standins/handoff_cli.py
    answers from it)."""
    now_ms = int(time.time() * 1000)
    handoff = {
        "pid": os.getpid(),
        "reason": "gateway.restart",
        "source": "operator-restart",
        "restartKind": "full-process",
        "createdAt": now_ms,
        "expiresAt": now_ms + 60000,
    }
    with open(path + ".tmp", "w", encoding="utf-8") as handle:
        json.dump(handoff, handle)
    os.replace(path + ".tmp", path)


# What a gateway may write, at its worst: every script, right-to-left marks, bytes that are not
# UTF-8, NULs, escape sequences, a line of megabytes without a newline.
HOSTILE_LINES = (
    "启动 → 🚀 שלום\u200f عربي ✗".encode(),
    b"bytes \xff\xfe\x80 NUL \x00 and \x1b[31mred\x1b[0m \x1b]0;title\x07",
    b"README=1\nREADY=1",
)
HOSTILE_LAST_WORDS = (
    b"Config invalid \xe2\x86\x92 gateway.bind \xff\xfe\x00 \xf0\x9f\x9a\x80 \xe9\x85\x8d\xe7\xbd\xae\n"
)


def _hostile(options: argparse.Namespace) -> None:
    """Write the worst output, then end as asked (`--exit-code`, or a crash by SIGSEGV)."""
    err, out = sys.stderr.buffer, sys.stdout.buffer
    for line in HOSTILE_LINES:
        err.write(line + b"\n")
    out.write(b"L" * (4 << 20))  # a 4 MiB line without a newline
    out.write(b"\n")
    chunk = (b"flood \xff " * 8192)[:65536]
    for _ in range(options.flood_mib * 16):
        out.write(chunk)
    out.flush()
    err.write(HOSTILE_LAST_WORDS)
    err.flush()
    if options.crash:
        os.kill(os.getpid(), signal.SIGSEGV)
    sys.exit(options.exit_code)


def _say(options: argparse.Namespace) -> None:
    for text in options.say:
        print(os.path.expandvars(text), file=sys.stderr, flush=True)


def _start(variant: str, options: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    if options.counter:
        with open(options.counter, "a", encoding="ascii") as handle:
            handle.write(f"{time.time():.3f} {os.getpid()}\n")
    _say(options)
    if options.env_file:
        with open(options.env_file, "w", encoding="utf-8") as handle:
            json.dump(dict(os.environ), handle)
    if options.pidfile:
        with open(options.pidfile, "w", encoding="ascii") as handle:
            handle.write(f"{os.getpid()}\n")
    for number in range(options.stderr_lines):
        print(f"standin stderr {variant} line {number + 1}", file=sys.stderr, flush=True)
    children = [
        subprocess.Popen([sys.executable, "-c", "import time\nwhile True: time.sleep(60)"])
        for _ in range(options.children)
    ]
    print(f"standin {variant} pid={os.getpid()} port={options.port}", flush=True)
    return children


def _finish(children: list[subprocess.Popen[bytes]], code: int) -> None:
    for child in children:
        if child.poll() is None:
            child.terminate()
    sys.exit(code)


def main(variant: str, argv: list[str] | None = None) -> None:
    options = _options(sys.argv[1:] if argv is None else argv)
    if variant == "ignores_sigterm":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term if variant != "ignores_sigterm" else signal.SIG_IGN)
    if variant == "fails_while_marker" and options.marker and os.path.exists(options.marker):
        _say(options)
        print(
            f"fails_while_marker: fault marker {options.marker} present, exiting {options.exit_code}",
            file=sys.stderr,
        )
        sys.exit(options.exit_code)
    if variant == "instant_exit":
        _start(variant, options)
        print(f"instant_exit: exiting with code {options.exit_code}", file=sys.stderr, flush=True)
        sys.exit(options.exit_code)
    if variant == "hostile":
        _start(variant, options)
        _hostile(options)
    if variant == "stderr_then_exit":
        options.stderr_lines = options.stderr_lines or 30
        _start(variant, options)
        sys.exit(options.exit_code)
    children = _start(variant, options)
    if variant == "lease_held" and _starts(options) <= options.times:
        print(LEASE_REFUSAL, file=sys.stderr, flush=True)
        sys.exit(1)
    server = None
    try:
        if options.ready_after:
            time.sleep(options.ready_after)
        if options.port:
            server = _listen(options.port, options.any)
        if variant == "allocates":
            memory = bytearray(options.allocate << 20)
            memory[::4096] = b"x" * (len(memory) // 4096)  # touch every page: it is really used
        if variant == "flapping":
            _serve(server, time.monotonic() + options.run)
            print(f"flapping: ran {options.run}s, exiting {options.exit_code}", file=sys.stderr, flush=True)
            _finish(children, options.exit_code)
        if variant == "requests_restart" and _starts(options) <= options.times:
            _serve(server, time.monotonic() + options.run)
            _request_restart(options.handoff)
            print("restart mode: full process restart (supervisor restart)", flush=True)
            _finish(children, 0)
        _serve(server, None)
    except _Terminated:
        if options.term_delay:
            print(f"standin {variant}: draining active work for {options.term_delay:g}s", flush=True)
            time.sleep(options.term_delay)
        print(f"standin {variant}: SIGTERM, exiting 0", flush=True)
        _finish(children, 0)
