"""Stand-in for the gateway's CLI in the crash guard's restart handoffs: it answers
`gateway restart-handoff capabilities --json` and `gateway restart-handoff consume --expected-pid
PID --json` the way openclaw 2026.9 does, from the handoff a stand-in gateway (`requests_restart`)
writes before it exits 0.

    handoff_cli.py --store FILE [--log FILE] [--mode MODE] gateway restart-handoff ...

  --store FILE   the handoff the stand-in gateway wrote (consumed: deleted once accepted)
  --log FILE     append one line per call: `capabilities` or `consume PID`
  --mode ok      (default) protocol 1 with `consume`: the stored handoff is accepted for its pid
                 once, then the answer is `none`/`missing`
  --mode none    an older generation: no such command (exit 1, as commander says it)
  --mode reject  consume answers `rejected`/`pid-mismatch`
  --mode hang    consume never answers
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

PROTOCOL = "openclaw.gateway.restart-handoff"


def answer(payload: dict[str, object], code: int = 0) -> None:
    print(json.dumps({"protocol": PROTOCOL, "protocolVersion": 1, **payload}, indent=2))
    sys.exit(code)


def consume(store: str, expected: int) -> None:
    try:
        with open(store, encoding="utf-8") as handle:
            handoff = json.load(handle)
    except FileNotFoundError:
        answer({"ok": True, "status": "none", "reason": "missing"})
    if handoff["pid"] != expected:
        answer({"ok": True, "status": "rejected", "reason": "pid-mismatch", "handoffPid": handoff["pid"]})
    os.unlink(store)
    if time.time() * 1000 >= handoff["expiresAt"]:
        answer({"ok": True, "status": "rejected", "reason": "expired", "handoffPid": handoff["pid"]})
    full = {
        "kind": "gateway-supervisor-restart-handoff",
        "version": 1,
        "supervisorMode": "external",
        **handoff,
    }
    answer({"ok": True, "status": "accepted", "handoff": full})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True)
    parser.add_argument("--log")
    parser.add_argument("--mode", default="ok", choices=("ok", "none", "reject", "hang"))
    parser.add_argument("--expected-pid")
    options, words = parser.parse_known_args()
    operation = next((word for word in words if word in ("capabilities", "consume")), "?")
    if options.log:
        with open(options.log, "a", encoding="utf-8") as handle:
            handle.write(f"{operation} {options.expected_pid or ''}".strip() + "\n")
    if options.mode == "none":
        print("error: unknown command 'restart-handoff'", file=sys.stderr)
        sys.exit(1)
    if operation == "capabilities":
        answer({"ok": True, "operations": ["consume"]})
    if not (options.expected_pid or "").isdigit():
        answer({"ok": False, "status": "error", "reason": "invalid-expected-pid"}, code=2)
    if options.mode == "hang":
        time.sleep(600)
    if options.mode == "reject":
        answer({"ok": True, "status": "rejected", "reason": "pid-mismatch", "handoffPid": 1})
    consume(options.store, int(options.expected_pid))


if __name__ == "__main__":
    main()
