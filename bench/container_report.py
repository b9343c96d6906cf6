"""The report of `bench/container`: medians, ratios against upstream's way, the goals of issue 13,
as Markdown.

Who runs it: `bench/container`, after its rounds, on the raw figures it also writes with --json
(so a report can be printed again from a saved run: `bench/container --report FILE`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

MB = 1024  # the figures are in kB, as /proc gives them

# Issue 13's goals that this benchmark measures: (goal, what, target, the measured value from the
# medians, lower is better).
Goal = tuple[str, str, float, Callable[[dict[str, Any]], float | None], str]


def median(values: list[Any]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def pick(rounds: list[dict[str, Any]], side: str, *path: str) -> list[Any]:
    """The value at `path` in each round's figures of `side` (None where absent)."""
    found = []
    for item in rounds:
        value: Any = item.get(side)
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        found.append(value)
    return found


def med(rounds: list[dict[str, Any]], side: str, *path: str) -> float | None:
    return median(pick(rounds, side, *path))


def ratio(a: float | None, b: float | None) -> str:
    return "" if a is None or not b else f"{a / b:.2f}x"


def cell(value: float | None, digits: int = 2, scale: float = 1) -> str:
    return "-" if value is None else f"{value / scale:.{digits}f}"


GOALS: tuple[Goal, ...] = (
    ("1", "fresh container to HTTP, ours / upstream's", 0.70, lambda m: m["http_ratio"], "x"),
    ("1", "first `docker stop` of a fresh container, s", 1.5, lambda m: m["stop"], "s"),
    ("2", "StartedAt to the init's `gateway_running`, ms", 120, lambda m: m["spawn"], "ms"),
    ("3", "the init's side, summed RSS, MB", 40, lambda m: m["rss"], "MB"),
    ("3", "the init's side, summed PSS, MB", 30, lambda m: m["pss"], "MB"),
    ("3", "the init's side, processes", 3, lambda m: m["processes"], ""),
    ("4", "`moltbot-init status` inside, warm, gateway settled, ms", 150, lambda m: m["status"], "ms"),
    ("4", "`moltbot-init health` inside, warm, gateway settled, ms", 100, lambda m: m["health"], "ms"),
)


def goal_figures(rounds: list[dict[str, Any]]) -> dict[str, float | None]:
    ours_http, theirs_http = med(rounds, "ours", "run_to_http_s"), med(rounds, "upstream", "run_to_http_s")
    rss, pss = med(rounds, "ours", "memory", "init_rss_kb"), med(rounds, "ours", "memory", "init_pss_kb")
    return {
        "http_ratio": None if ours_http is None or not theirs_http else ours_http / theirs_http,
        "stop": med(rounds, "ours", "stop_fresh", "docker_stop_s"),
        "spawn": med(rounds, "ours", "spawn_ms", "gateway_running"),
        "rss": None if rss is None else rss / MB,
        "pss": None if pss is None else pss / MB,
        "processes": median([len(value or []) for value in pick(rounds, "ours", "memory", "init")]),
        "status": med(rounds, "ours", "tools_ms", "status"),
        "health": med(rounds, "ours", "tools_ms", "health"),
    }


def goals(rounds: list[dict[str, Any]]) -> list[str]:
    figures = goal_figures(rounds)
    out = ["| goal | figure | target | median | |", "|---|---|---:|---:|---|"]
    for number, what, target, measured, unit in GOALS:
        value = measured(figures)
        verdict = "-" if value is None else ("met" if value <= target else "**not met**")
        out.append(f"| {number} | {what} | <= {target:g}{unit} | {cell(value)}{unit} | {verdict} |")
    out.append("| 5 | ownership on a loaded machine | | | `bench/ownership` |")
    return out


SIDE_BY_SIDE = (
    ("`docker run` to the gateway answering `/healthz`, s", ("run_to_http_s",), 1),
    ("Docker's StartedAt to `/healthz`, s", ("start_to_http_s",), 1),
    ("first `docker stop` of a fresh container, s", ("stop_fresh", "docker_stop_s"), 1),
    ("  its gateway's own part (SIGTERM line to exit), s", ("stop_fresh", "gateway_own_s"), 1),
    ("`docker start` again to `/healthz`, s", ("restart_to_http_s",), 1),
    ("`docker stop` after that start, s", ("stop_restarted", "docker_stop_s"), 1),
    ("PID 1's start to the gateway's process, ms (10 ms ticks)", ("pid1_to_gateway_ms",), 1),
    ("the init's side, summed RSS, MB", ("memory", "init_rss_kb"), MB),
    ("the init's side, summed PSS, MB", ("memory", "init_pss_kb"), MB),
    ("the gateway and its workers, summed RSS, MB", ("memory", "gateway_rss_kb"), MB),
)


def side_by_side(rounds: list[dict[str, Any]], sides: list[str]) -> list[str]:
    out = [
        "| median of the rounds | " + " | ".join(sides) + " | ours / upstream |",
        "|---|" + "---:|" * (len(sides) + 1),
    ]
    for what, path, scale in SIDE_BY_SIDE:
        values = {side: med(rounds, side, *path) for side in sides}
        cells = " | ".join(cell(values[side], 2, scale) for side in sides)
        out.append(f"| {what} | {cells} | {ratio(values.get('ours'), values.get('upstream'))} |")
    codes = {
        side: sorted({code for code in pick(rounds, side, "stop_fresh", "exit_code") if code is not None})
        for side in sides
    }
    out.append("| exit codes of the stops | " + " | ".join(str(codes[side]) for side in sides) + " | |")
    return out


def per_round(rounds: list[dict[str, Any]], sides: list[str]) -> list[str]:
    columns = [(f"{side} to HTTP s", (side, "run_to_http_s")) for side in sides]
    columns += [(f"{side} 1st stop s", (side, "stop_fresh", "docker_stop_s")) for side in sides]
    columns += [
        ("ours spawn ms", ("ours", "spawn_ms", "gateway_running")),
        ("status ms", ("ours", "tools_ms", "status")),
        ("health ms", ("ours", "tools_ms", "health")),
        ("status ms, gateway busy", ("ours", "tools_busy_ms", "status")),
        ("health ms, gateway busy", ("ours", "tools_busy_ms", "health")),
        ("settled after s", ("ours", "settled_s")),
    ]
    out = [
        "| round | order | load | others' CPUs | " + " | ".join(name for name, _ in columns) + " |",
        "|---|---|---|---|" + "---:|" * len(columns),
    ]
    for item in rounds:
        loads = [value for side in sides for value in (item[side]["load_before"], item[side]["load_after"])]
        others = "/".join(cell(item[side].get("others_cpus"), 1) for side in sides)
        cells = " | ".join(cell(pick([item], *path)[0], 2) for _, path in columns)
        line = (
            f"| {item['round']} | {', '.join(item['order'])} | {min(loads):.1f}-{max(loads):.1f} | {others} |"
        )
        out.append(f"{line} {cells} |")
    return out


def spawn_split(rounds: list[dict[str, Any]]) -> list[str]:
    steps = list(next((item["ours"]["spawn_ms"] for item in rounds if item["ours"].get("spawn_ms")), {}))
    out = ["| step (ms after Docker's StartedAt) | median | range |", "|---|---:|---:|"]
    for step in steps:
        values = [value for value in pick(rounds, "ours", "spawn_ms", step) if value is not None]
        span = f"{min(values):.0f}-{max(values):.0f}" if values else "-"
        out.append(f"| {step} | {cell(median(values), 0)} | {span} |")
    return out


def processes(rounds: list[dict[str, Any]], side: str) -> list[str]:
    out = ["| process | RSS MB | anon MB | file MB | PSS MB |", "|---|---:|---:|---:|---:|"]
    names = list(dict.fromkeys(p["process"] for item in rounds for p in item[side]["memory"]["init"]))
    for name in names:
        rows = [p for item in rounds for p in item[side]["memory"]["init"] if p["process"] == name]
        cells = [
            cell(median([p[key] for p in rows]), 1, MB) for key in ("rss_kb", "anon_kb", "file_kb", "pss_kb")
        ]
        out.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return out


def phases(found: dict[str, list[float]], most: int = 20) -> list[str]:
    rows = sorted(found.items(), key=lambda item: item[1][1] - item[1][0])[:most]
    out = [
        "| phase (the gateway's startup trace) | fresh ms | restart ms | fresh - restart |",
        "|---|---:|---:|---:|",
    ]
    out += [
        f"| `{name}` | {fresh:.0f} | {again:.0f} | {fresh - again:.0f} |" for name, (fresh, again) in rows
    ]
    return out


def report(results: dict[str, Any]) -> str:
    rounds, sides = results["rounds"], results["sides"]
    out = ["## Machine", "", *(f"- {line}" for line in results["machine"]), "", "## Images", ""]
    out += [f"- {side}: {text}" for side, text in results["images"].items()]
    out += ["", f"## Side by side ({len(rounds)} rounds, interleaved, fresh volumes each)", ""]
    out += side_by_side(rounds, sides)
    out += ["", "## Goals of issue 13", "", *goals(rounds), "", "## Per round", "", *per_round(rounds, sides)]
    out += ["", "## The init's start, split", "", *spawn_split(rounds)]
    for side in sides:
        out += [
            "",
            f"## Memory of the init's side: {side} (medians, gateway ready)",
            "",
            *processes(rounds, side),
        ]
    if results.get("phases"):
        out += ["", "## What a first start pays that a restart does not (ours, one of each)", ""]
        out += phases(results["phases"])
    return "\n".join(out) + "\n"
