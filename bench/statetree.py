"""What the copy benchmarks share (bench/migration, bench/upgrade): a gateway-like state dir of a
given size, the page cache dropped between runs, and the machine's description for the report."""

from __future__ import annotations

import os
import platform
import random
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

MIB = 1 << 20
# Share of the total size per kind of file, and their sizes: what a gateway's state dir holds.
SMALL_SHARE, DATABASE_SHARE = 0.10, 0.20
SMALL_SIZES = (200, 32 * 1024)  # session transcripts, JSON configs, auth profiles: log-uniform
DATABASE_SIZES = (1 * MIB, 32 * MIB)
MEDIA_SIZES = (40 * MIB, 160 * MIB)
BLOB = 64 * 1024  # the size of a row in a real SQLite database below


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True)


def write_random(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            chunk = min(remaining, 8 * MIB)
            handle.write(os.urandom(chunk))
            remaining -= chunk


def write_sqlite(path: Path, size: int, in_log: int = 0) -> None:
    """A real WAL-mode SQLite database of about `size` bytes of random rows, closed cleanly (no
    log beside it), or with its last `in_log` bytes of rows committed only in its -wal, as a
    writer killed before its checkpoint leaves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    script = """
import os, sqlite3, sys
path, size, in_log, blob = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA wal_autocheckpoint=0")
db.execute("CREATE TABLE rows (id INTEGER PRIMARY KEY, body BLOB)")
def fill(amount):
    db.execute("BEGIN")
    for _ in range(max(1, amount // blob)):
        db.execute("INSERT INTO rows (body) VALUES (?)", (os.urandom(blob),))
    db.execute("COMMIT")
fill(size - in_log)
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
if in_log:
    fill(in_log)
    os._exit(0)  # killed: the last rows are only in the log
db.close()
"""
    subprocess.run([sys.executable, "-c", script, str(path), str(size), str(in_log), str(BLOB)], check=True)


def build_state(
    root: Path,
    total: int,
    seed: int = 42,
    database: Callable[[Path, int], None] = write_random,
    database_path: Callable[[int], str] = lambda number: f"memory/db{number:03d}.sqlite",
) -> dict[str, int]:
    """The state dir, structure seeded; returns counts per kind. `database` writes each database
    (random bytes by default: a copy benchmark need not tell them apart) at `database_path`."""
    rng = random.Random(seed)
    counts = {"small": 0, "database": 0, "media": 0, "links": 0}
    small_budget, database_budget = int(total * SMALL_SHARE), int(total * DATABASE_SHARE)
    written = 0
    while written < small_budget:
        size = int(SMALL_SIZES[0] * (SMALL_SIZES[1] / SMALL_SIZES[0]) ** rng.random())
        agent = f"agent{counts['small'] % 8}"
        directory = root / "agents" / agent / "sessions" / f"{counts['small'] // 500:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        write_random(directory / f"{counts['small']:06d}.jsonl", size)
        written += size
        counts["small"] += 1
    written = 0
    while written < database_budget:
        size = min(rng.randint(*DATABASE_SIZES), database_budget - written)
        path = root / database_path(counts["database"])
        path.parent.mkdir(parents=True, exist_ok=True)
        database(path, size)
        written += size
        counts["database"] += 1
    remaining = total - int(total * SMALL_SHARE) - written
    (root / "media").mkdir()
    while remaining > 0:
        size = min(rng.randint(*MEDIA_SIZES), remaining)
        write_random(root / "media" / f"clip{counts['media']:03d}.mp4", size)
        remaining -= size
        counts["media"] += 1
    for number in range(8):
        (root / "agents" / f"agent{number}" / "current").symlink_to("sessions")
        counts["links"] += 1
    (root / "credentials").mkdir(mode=0o700)
    write_random(root / "credentials" / "oauth.json", 600)
    os.chmod(root / "credentials" / "oauth.json", 0o600)
    return counts


def drop_caches() -> bool:
    """Flush dirty pages (the previous run's output), then drop the page cache if permitted."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as handle:
            handle.write("3\n")
    except OSError:
        return False
    return True


def machine(directory: Path) -> dict[str, str]:
    model = "unknown"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    fs = run("findmnt", "-n", "-o", "FSTYPE,SOURCE,OPTIONS", "-T", str(directory)).stdout.strip()
    memory = run("free", "-g").stdout.splitlines()[1].split()[1]
    cp_version = run("cp", "--version").stdout.splitlines()[0]
    return {
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "kernel": platform.release(),
        "filesystem": fs,
        "memory": f"{memory} GiB",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "cp": cp_version,
        "load": " ".join(f"{value:.2f}" for value in os.getloadavg()),
    }


CACHE_COLD = (
    "dropped before every run (`sync; echo 3 > /proc/sys/vm/drop_caches`): "
    "every run reads the source from the disk"
)
CACHE_WARM = "not droppable here: every run starts warm (the source read once beforehand)"
