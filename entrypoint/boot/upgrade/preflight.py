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

import glob
import json
import os
import shutil
from dataclasses import dataclass

from ...common import cli, text
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
    state, name = located
    database = os.path.join(state, name)
    shutil.rmtree(scratch, ignore_errors=True)
    env = cli.in_scratch(plan.env, plan.state_dir_env, scratch)
    copy = os.path.join(scratch, os.path.basename(database))
    shutil.copyfile(database, copy)  # the release reads a copy of the checkpoint's copy
    command = [copy if arg == "PATH" else agent if arg == "AGENT" else arg for arg in argv]
    return _verdict(name, cli.run(command, plan.timeout_s, env, cwd=scratch))


def _verdict(name: str, ran: cli.Ran) -> Verdict:
    """The JSON the CLI printed (its `status` and `issues`); `indeterminate` without one."""
    answer = cli.answer_of(ran.stdout)
    if not isinstance(answer, dict) or not isinstance(answer.get("status"), str):
        last = cli.last_line(ran.stderr or ran.stdout) or "no output"
        return Verdict(name, "indeterminate", ran.failure or f"exit code {ran.code}, no verdict: {last}")
    issues = answer.get("issues")
    detail = json.dumps(issues)[:_SAID_MAX] if issues else ""
    return Verdict(name, text.one_line(answer["status"], 60), text.one_line(detail, _SAID_MAX))
