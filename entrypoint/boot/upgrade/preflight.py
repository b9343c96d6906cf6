"""The new release's own word on the state before it first runs on it: its CLI's database preflight,
on copies of the checkpoint's consolidated databases, never on the live state.

Where it differs: the CLI runs as a child of PID 1 (as the target user, as PID 1 is by then), in a
session of its own, with its state dir and HOME pointed at a scratch directory (a CLI start runs the
release's own bootstrap, legacy-state steps included, on whatever it is pointed at), for a bounded
time (its cold start takes seconds). The scratch directory is in the record dir (a database may be
large; /tmp may be a small tmpfs) and is removed afterwards.

Verdicts, as the release's docs name them: `exact`, `startup-repairable` and `migration-required`
let it start; `incompatible` and `indeterminate` do not (nor does a CLI that gives no verdict).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
from dataclasses import dataclass

from ...common import text
from ...common.plans import PreflightPlan

STARTS = frozenset({"exact", "startup-repairable", "migration-required"})
SCRATCH = "preflight-scratch"
_SAID_MAX = 300


@dataclass(frozen=True)
class Verdict:
    database: str  # as the checkpoint holds it
    status: str  # the release's word, or `indeterminate` when it gave none
    detail: str  # its issues, or why there is no verdict

    @property
    def starts(self) -> bool:
        return self.status in STARTS


def check(plan: PreflightPlan, state: str, record_dir: str) -> list[Verdict]:
    """The verdict on each database of the state tree `state` (the checkpoint's copy)."""
    scratch = os.path.join(record_dir, SCRATCH)
    shutil.rmtree(scratch, ignore_errors=True)
    try:
        verdicts = []
        shared = os.path.join(state, plan.state_db)
        if os.path.isfile(shared):
            verdicts.append(_run(plan, plan.state_argv, (state, plan.state_db), "", scratch))
        prefix, _, suffix = plan.agent_dbs.partition("*")
        for path in sorted(glob.glob(os.path.join(glob.escape(state), plan.agent_dbs))):
            rel = os.path.relpath(path, state)
            agent = rel[len(prefix) : -len(suffix) or None]
            verdicts.append(_run(plan, plan.agent_argv, (state, rel), agent, scratch))
        return verdicts
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(
    plan: PreflightPlan, argv: tuple[str, ...], located: tuple[str, str], agent: str, scratch: str
) -> Verdict:
    """The verdict on the database at `located` ((the state tree, its path in it): the path names
    the verdict, as each agent's database has the same file name)."""
    import subprocess  # only an upgrade asks the CLI anything

    state, name = located
    database = os.path.join(state, name)

    shutil.rmtree(scratch, ignore_errors=True)
    for directory in ("state", "home"):
        os.makedirs(os.path.join(scratch, directory), 0o700)
    copy = os.path.join(scratch, os.path.basename(database))
    shutil.copyfile(database, copy)  # the release reads a copy of the checkpoint's copy
    env = {**plan.env, "HOME": os.path.join(scratch, "home")}
    env.update({name: os.path.join(scratch, "state") for name in plan.state_dir_env})
    command = [copy if arg == "PATH" else agent if arg == "AGENT" else arg for arg in argv]
    try:
        process = subprocess.Popen(
            command,
            cwd=scratch,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group: killed whole past the timeout
        )
    except OSError as error:
        return Verdict(name, "indeterminate", f"cannot run {command[0]}: {error.strerror}")
    try:
        stdout, stderr = process.communicate(timeout=plan.timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        return Verdict(name, "indeterminate", f"no answer within {plan.timeout_s:g}s")
    return _verdict(name, process.returncode, stdout, stderr)


def _verdict(name: str, code: int, stdout: bytes, stderr: bytes) -> Verdict:
    """The JSON the CLI printed (its `status` and `issues`); `indeterminate` without one."""
    said = text.decoded(stdout)
    answer = None
    with contextlib.suppress(ValueError):
        answer = json.loads(said[said.find("{") :]) if "{" in said else None
    if not isinstance(answer, dict) or not isinstance(answer.get("status"), str):
        last = [line for line in text.decoded(stderr or stdout).splitlines() if line.strip()][-1:]
        why = text.one_line(last[0] if last else "no output", _SAID_MAX)
        return Verdict(name, "indeterminate", f"exit code {code}, no verdict: {why}")
    issues = answer.get("issues")
    detail = json.dumps(issues)[:_SAID_MAX] if issues else ""
    return Verdict(name, text.one_line(answer["status"], 60), text.one_line(detail, _SAID_MAX))
