"""Run the migration phase in a process of its own: `driver.py PLAN_JSON`.

Prints `ready` once imported (the kill test times its SIGKILL from there), then the PhaseResult as
one JSON line on stdout; the phase's own log lines go to stderr as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sys

from entrypoint.boot import migration
from entrypoint.common import log
from entrypoint.common.plans import StopFlag
from tests.boot.migration.helpers import plan_from_json


def main() -> int:
    plan = plan_from_json(sys.argv[1])
    log.configure("json", "info")
    print("ready", flush=True)
    result = migration.run(plan, StopFlag())
    print(json.dumps(dataclasses.asdict(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
