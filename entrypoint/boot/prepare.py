"""Phase `prepare`: make the directories the program needs exist, owned by the target user, and
the links it expects in a fresh tmpfs.

As root it hands each directory it creates to the target user; started as that user, what it creates
is the user's already. Only missing directories are created; existing contents are the ownership
phase's business, and an existing directory keeps its mode.
"""

from __future__ import annotations

import os

from ..common.plans import PreparePlan
from ..common.report import PhaseRecorder, PhaseResult


def run(plan: PreparePlan) -> PhaseResult:
    recorder = PhaseRecorder("prepare")
    created: list[str] = []
    for directory, mode in plan.directories:
        if os.path.isdir(directory):
            continue
        try:
            os.makedirs(directory, mode=mode, exist_ok=True)
            os.chmod(directory, mode)  # what the umask took away (a private home stays 0700)
            if plan.owner is not None:
                # Only the leaf is handed over: parents such as /home or /run stay root's.
                os.chown(directory, *plan.owner, follow_symlinks=False)
            created.append(directory)
        except OSError as error:
            _failed(recorder, "directory_not_created", f"create {directory}", directory, error)
    recorder.figures["created"] = created
    recorder.figures["linked"] = _link(plan.links, recorder)
    return recorder.result()


def _link(links: tuple[tuple[str, str], ...], recorder: PhaseRecorder) -> list[str]:
    """Make each missing link whose target exists; whatever is at a path already stays as it is."""
    linked: list[str] = []
    for path, target in links:
        if os.path.lexists(path) or not os.path.isdir(target):
            continue
        try:
            os.symlink(target, path)  # never follows what is at the path: EEXIST if anything came
            linked.append(path)
        except OSError as error:
            _failed(recorder, "link_not_created", f"link {path} to {target}", path, error)
    return linked


def _failed(recorder: PhaseRecorder, event: str, what: str, path: str, error: OSError) -> None:
    recorder.warn(event, f"could not {what}: {error.strerror}", path=path, errno=error.errno)
