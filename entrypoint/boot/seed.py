"""Phase `config_seed`: the program's first config, copied from a file the deployment provides (a
Kubernetes ConfigMap, a compose config), only when the state holds no config yet.

After the first start the config in the state volume is the program's own (its CLI, its UI and its
doctor change it there): a seed never overwrites it, and a changed seed changes nothing until that
config is gone. Runs after the migration (an old config migrated in wins over the seed) and never
while the boot holds for it (the old state, not yet in place, would then conflict with the seed).

Where it differs: after the drop, as the target user, so that the config it writes is the user's.
"""

from __future__ import annotations

import os

from ..common.plans import SeedPlan
from ..common.report import PhaseRecorder, PhaseResult

# A config is small; a larger seed is a mistake (a wrong file mounted).
_MAX_BYTES = 1024 * 1024


def run(plan: SeedPlan) -> PhaseResult:
    recorder = PhaseRecorder("config_seed")
    target = os.path.join(plan.target_dir, plan.config_names[0])
    existing = [name for name in plan.config_names if os.path.lexists(os.path.join(plan.target_dir, name))]
    if existing:
        recorder.figures.update(seeded=False, kept=os.path.join(plan.target_dir, existing[0]))
        return recorder.result()
    try:
        with open(plan.source, "rb") as source:
            content = source.read(_MAX_BYTES + 1)
        if len(content) > _MAX_BYTES:
            raise OSError(0, f"larger than {_MAX_BYTES} bytes")
        # O_EXCL: a config that appeared meanwhile is never overwritten; O_NOFOLLOW: nor is a link's
        # target. 0600, as the program keeps its config (it holds credentials).
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        recorder.warn(
            "config_seed_failed",
            f"the config was not seeded from {plan.source}: {error.strerror}",
            source=plan.source,
            path=target,
        )
        return recorder.result()
    recorder.figures.update(seeded=True, source=plan.source, path=target, bytes=len(content))
    return recorder.result()
