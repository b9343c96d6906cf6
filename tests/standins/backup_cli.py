"""Stand-in for the gateway's CLI in `backup` and `restore`: it answers `backup create --verify
--output DIR --json`, `backup verify ARCHIVE --json` and `backup restore ARCHIVE --target DIR --json`
as openclaw 2026.9.6 does (as measured in its image): a `<time>-openclaw-backup.tar.gz` whose root
holds `manifest.json` (`assets`: `state` and `workspace`, each with its `archivePath`) and
`payload/posix/<absolute source path>/`; JSON answers on stdout; a refusal is `{"ok": false,
"error": {"message": ...}}` and exit code 1.

    backup_cli.py [--version V] [--refuse WHAT] [--log FILE] backup ...

  --version V     the release that makes and reads the archives (its `runtimeVersion`)
  --refuse WHAT   `verify` or `restore`: that command refuses every archive; `create`: no archive
  --log FILE      one line per call: the command, and the state dir and HOME it was pointed at
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import time

SUFFIX = "-openclaw-backup.tar.gz"
WARNINGS = [
    "Restoring an archive is time travel: every restored state surface rolls back to the archive timestamp.",
    "Plugin node_modules are not archived; after activation, run `openclaw plugins update <id>`.",
]


def refuse(message: str) -> int:
    print(json.dumps({"ok": False, "error": {"type": "cli_error", "message": message}}, indent=2))
    print(f"[openclaw] Reason: {message}", file=sys.stderr)
    return 1


def create(output: str, version: str) -> int:
    created = time.time()
    root = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime(created)) + f".{time.time_ns() % 10**9:09d}"
    root += SUFFIX.removesuffix(".tar.gz")
    assets = []
    sources = {
        "state": os.environ["OPENCLAW_STATE_DIR"],
        "workspace": os.environ.get("OPENCLAW_WORKSPACE_DIR"),
    }
    for kind, source in sources.items():
        if source and os.path.isdir(source):
            assets.append(
                {"kind": kind, "sourcePath": source, "archivePath": f"{root}/payload/posix{source}"}
            )
    manifest = {"schemaVersion": 1, "archiveRoot": root, "runtimeVersion": version, "assets": assets}
    path = os.path.join(output, root + ".tar.gz")
    with tarfile.open(path, "x:gz") as archive:
        data = json.dumps(manifest, indent=2).encode()
        info = tarfile.TarInfo(f"{root}/manifest.json")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
        for asset in assets:
            archive.add(asset["sourcePath"], asset["archivePath"])
    answer = {"archiveRoot": root, "archivePath": path, "verified": True, "assets": assets}
    print(json.dumps({"createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ"), **answer}, indent=2))
    return 0


def verified(path: str) -> dict[str, object] | str:
    """The archive's manifest, or why it is refused (as the real CLI words it)."""
    if not os.path.exists(path):
        return f"Backup archive verification failed: {path}. Archive does not exist."
    try:
        with tarfile.open(path, "r:gz") as archive:
            manifests = [
                name
                for name in archive.getnames()
                if name.count("/") == 1 and name.endswith("/manifest.json")
            ]
            if len(manifests) != 1:
                found = len(manifests)
                return (
                    f"Backup archive verification failed: {path}. Expected one manifest entry, found {found}."
                )
            handle = archive.extractfile(manifests[0])
            manifest = json.loads(handle.read() if handle else b"{}")
    except (OSError, tarfile.TarError, EOFError, ValueError) as error:
        return f"Backup archive verification failed: {path}. Archive could not be read or parsed. {error}"
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--version", default="2026.9.6")
    parser.add_argument("--refuse", default="")
    parser.add_argument("--log")
    options, rest = parser.parse_known_args()
    if options.log:
        seen = {
            "command": rest[:2],
            "state_dir": os.environ.get("OPENCLAW_STATE_DIR"),
            "home": os.environ.get("HOME"),
        }
        with open(options.log, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(seen) + "\n")
    if rest[:1] != ["backup"]:
        print(f"error: unknown command '{rest[0] if rest else ''}'", file=sys.stderr)
        return 1
    command = rest[1]
    if command == options.refuse:
        return refuse(f"Backup {command} failed: refused by the stand-in")
    if command == "create":
        return create(rest[rest.index("--output") + 1], options.version)
    manifest = verified(rest[2])
    if isinstance(manifest, str):
        return refuse(manifest)
    answer = {
        "ok": True,
        "archivePath": rest[2],
        "archiveRoot": manifest["archiveRoot"],
        "createdAt": "2026-12-06T20:10:20.910Z",
        "runtimeVersion": manifest["runtimeVersion"],
    }
    if command == "restore":
        target = rest[rest.index("--target") + 1]
        if os.path.exists(target) and os.listdir(target):
            return refuse(f"Backup restore target directory must be empty: {target}")
        with tarfile.open(rest[2], "r:gz") as archive:
            archive.extractall(target)
        answer.update(targetPath=target, warnings=WARNINGS)
    print(json.dumps(answer, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
