"""The application's CLI, run once and bounded: in a session of its own (past its time limit, or
when its caller is stopped, it is killed with everything it started), its output kept, the JSON
object it answered found in it.

Who uses it: every program that asks the application's CLI something, each in its own process:
the crash guard about restart handoffs (supervisord's process, as the target user, after a clean
exit of the program), the upgrade gate for its preflight (PID 1, after the drop), the operator's
`backup` and `restore` (one-off processes, as the target user). Its cold start takes seconds: the
bound is each caller's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import text

_DETAIL_MAX = 300


@dataclass(frozen=True)
class Ran:
    """One call of the CLI: its exit code (None: it did not finish), what it printed, or why not."""

    code: int | None
    stdout: str
    stderr: str
    failure: str = ""  # why there is no exit code: not runnable, or past the timeout
    started: bool = True  # False: there is no such program to run

    def why(self) -> str:
        """Why it did not answer as hoped, in one bounded line: its failure, or its exit code and
        the last line it printed."""
        if self.failure:
            return self.failure
        last = last_line(self.stderr or self.stdout)
        return f"exit code {self.code}{': ' + last if last else ''}"


def run(
    argv: tuple[str, ...] | list[str],
    timeout_s: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Ran:
    # Imported at the first call: supervisord's process keeps what it imports for its whole life,
    # and most never see a clean exit of the program.
    import subprocess

    try:
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # its own process group: killed whole past the timeout
        )
    except OSError as error:
        return Ran(None, "", "", f"cannot run {argv[0]}: {error.strerror or error}", started=False)
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(process.pid)
        stdout, stderr = process.communicate()
        return Ran(None, stdout, stderr, f"no answer within {timeout_s:g}s")
    except BaseException:  # the caller was stopped (a signal raised in it): the CLI goes with it
        _kill(process.pid)
        process.wait()
        raise
    return Ran(process.returncode, stdout, stderr)


def in_scratch(env: Mapping[str, str], state_dir_env: tuple[str, ...], scratch: str) -> dict[str, str]:
    """`env` with the application's state dir and HOME in `scratch` (made here, empty): a start of
    its CLI runs its own bootstrap (legacy-state steps included) on whatever it is pointed at, so
    a CLI that only reads a file (a copy, an archive) is never pointed at the live state."""
    for directory in ("state", "home"):
        os.makedirs(os.path.join(scratch, directory), 0o700)
    pointed = {**env, "HOME": os.path.join(scratch, "home")}
    pointed.update({name: os.path.join(scratch, "state") for name in state_dir_env})
    return pointed


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def answer_of(said: str) -> dict[str, Any] | None:
    """The JSON object the CLI printed (indented, possibly after other lines), or None."""
    decoder = json.JSONDecoder()
    starts = [
        index for index, char in enumerate(said) if char == "{" and (index == 0 or said[index - 1] == "\n")
    ]
    for start in starts:
        try:
            value, _ = decoder.raw_decode(said, start)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def refusal(ran: Ran) -> str:
    """Why the CLI refused, in its own words: the message of the JSON error it answered
    (`{"ok": false, "error": {"message": ...}}`), else its failure, or exit code and last line."""
    answer = answer_of(ran.stdout) or {}
    error = answer.get("error")
    message = error.get("message") if isinstance(error, dict) else None
    return last_line(message) if isinstance(message, str) and message.strip() else ran.why()


def reap_orphans() -> None:
    """For a one-off command that is its container's PID 1 and has no child of its own left: what
    a CLI it ran left behind is reparented to it, and only it can reap them."""
    if os.getpid() != 1:
        return
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass


def last_line(said: str) -> str:
    """The last line that says something, bounded."""
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    return text.one_line(lines[-1] if lines else "", _DETAIL_MAX)
