"""`checkpoints [--json]`: the checkpoints of the state (id, release, time, size, what each holds)
and the releases that ran on it. It reads; it changes nothing.
"""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from ..common import checkpoints, log, releases
from ..common.exits import Exit


def collect(record_dir: str) -> dict[str, Any]:
    history = releases.read(record_dir) or releases.History()
    return {
        "releases": {
            "current": history.current.to_json() if history.current else None,
            "previous": history.previous.to_json() if history.previous else None,
            "ran": [ran.to_json() for ran in history.ran],
            "rolled_back": [ran.to_json() for ran in history.rolled_back],
        },
        "checkpoints": [manifest.to_json() for manifest in checkpoints.listing(record_dir)],
        "directory": checkpoints.root(record_dir),
    }


def _mib(count: int) -> str:
    return f"{count / 1048576:.1f} MiB"


def render_text(data: dict[str, Any]) -> str:
    lines = []
    found = data["checkpoints"]
    lines.append(f"{len(found)} checkpoint{'s' if len(found) != 1 else ''} in {data['directory']}")
    for item in found:
        release = item["release"] or {}
        label = f"{release.get('package')}@{release.get('version')}" if release else "an unknown release"
        held = ", ".join(tree["name"] for tree in item["trees"] if tree["included"])
        left = [f"{tree['name']} ({tree['reason']})" for tree in item["trees"] if not tree["included"]]
        lines.append(f"  {item['id']}: the state of {label}, taken {item['taken_at']} {item['why']}".rstrip())
        lines.append(
            f"    {_mib(item['bytes'])}, {item['entries']} entries, {len(item['databases'])} databases; "
            f"holds {held or 'nothing'}" + (f"; left out: {', '.join(left)}" if left else "")
        )
    ran = data["releases"]
    for which in ("current", "previous"):
        release = ran[which]
        if release:
            since = log.rfc3339(release["since"])
            lines.append(f"{which} release: {release['package']}@{release['version']} (since {since})")
    return "\n".join(lines)


def main(record_dir: str, as_json: bool, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    data = collect(record_dir)
    out.write(json.dumps(data, indent=2) + "\n" if as_json else render_text(data) + "\n")
    return Exit.OK
