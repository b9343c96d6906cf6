"""Stand-in for the gateway's CLI in the upgrade gate's preflight: it answers `database preflight
PATH --json` and `database preflight-agent PATH --agent-id ID --json` as openclaw 2026.9 does.

    preflight_cli.py [--verdict STATUS] [--agent-verdict STATUS] [--log FILE] database preflight ...

  --verdict STATUS        the shared database's status (default `exact`); `none` prints no JSON,
                          `hang` never answers
  --agent-verdict STATUS  each agent database's (default `exact`)
  --log FILE              append one line per call: the command, the file's SQLite user_version,
                          whether a -wal/-shm/-journal lies beside it, and its state dir and HOME
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--verdict", default="exact")
    parser.add_argument("--agent-verdict", default="exact")
    parser.add_argument("--log")
    options, rest = parser.parse_known_args()
    if rest[:2] != ["database", "preflight"] and rest[:2] != ["database", "preflight-agent"]:
        print(f"error: unknown command '{' '.join(rest[:2])}'", file=sys.stderr)
        return 1
    path = rest[2]
    agent = rest[rest.index("--agent-id") + 1] if "--agent-id" in rest else None
    status = options.agent_verdict if agent else options.verdict
    if options.log:
        version = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True).execute("PRAGMA user_version")
        sidecars = [suffix for suffix in ("-wal", "-shm", "-journal") if os.path.exists(path + suffix)]
        seen = {
            "command": rest[1],
            "agent": agent,
            "user_version": version.fetchone()[0],
            "sidecars": sidecars,
            "state_dir": os.environ.get("OPENCLAW_STATE_DIR"),
            "home": os.environ.get("HOME"),
        }
        with open(options.log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(seen) + "\n")
    if status == "hang":
        time.sleep(600)
    if status == "none":
        print("Preflight crashed: no verdict", file=sys.stderr)
        return 3
    schema = "openclaw.agent-schema-preflight.v1" if agent else "openclaw.state-schema-preflight.v1"
    issues = [] if status == "exact" else [{"code": "schema-newer", "message": "found 19, target 18"}]
    print(json.dumps({"schema": schema, "databasePath": path, "issues": issues, "status": status}, indent=2))
    return 0 if status == "exact" else 2


if __name__ == "__main__":
    sys.exit(main())
