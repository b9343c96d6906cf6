"""Phase `prepare`: make the directories the program needs exist, owned by the target user.

Only missing directories are created; existing contents are the ownership phase's business.
"""

from __future__ import annotations

import os

from ..common.plans import PreparePlan
from ..common.report import PhaseRecorder, PhaseResult


def run(plan: PreparePlan) -> PhaseResult:
    recorder = PhaseRecorder("prepare")
    created: list[str] = []
    for directory in plan.directories:
        if os.path.isdir(directory):
            continue
        try:
            os.makedirs(directory, mode=0o755, exist_ok=True)
            # Only the leaf is handed over: parents such as /home or /run stay root's.
            os.chown(directory, plan.uid, plan.gid, follow_symlinks=False)
            created.append(directory)
        except OSError as error:
            recorder.warn(
                "directory_not_created",
                f"could not create {directory}: {error.strerror}",
                path=directory,
                errno=error.errno,
            )
    recorder.figures["created"] = created
    return recorder.result()
