"""The report of `bench/container`: medians, ratios against upstream's way, the goals of issue 22,
as Markdown.

Who runs it: `bench/container`, after its rounds, on the raw figures it also writes with --json
(so a report can be printed again from a saved run: `bench/container --report FILE`).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

MB = 1024  # the figures are in kB, as /proc gives them

# Issue 22's goals that this benchmark measures: (goal, what, target, the measured value from the
# figures, its unit); lower is better for each.
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
    ("1", "`docker start` again to HTTP, ours / upstream's", 0.8, lambda m: m["ours_restart_ratio"], "x"),
    ("2", "fresh container to HTTP, ours / upstream's", 0.7, lambda m: m["ours_fresh_ratio"], "x"),
    ("3", "`docker start` again, compose-built / upstream's", 0.8, lambda m: m["compose_restart_ratio"], "x"),
    ("3", "fresh container, compose-built / upstream's", 0.7, lambda m: m["compose_fresh_ratio"], "x"),
    ("4", "StartedAt to the init's `gateway_running`, ms", 200, lambda m: m["spawn"], "ms"),
    ("5", "first `docker stop` of a fresh container, ours, s", 1.5, lambda m: m["ours_stop"], "s"),
    ("5", "first `docker stop`, compose-built, s", 1.5, lambda m: m["compose_stop"], "s"),
    ("5", "the init's side, summed RSS, MB", 40, lambda m: m["rss"], "MB"),
    ("5", "the init's side, summed PSS, MB", 30, lambda m: m["pss"], "MB"),
    ("5", "the init's side, processes", 2, lambda m: m["processes"], ""),
    ("5", "`moltbot-init status` inside, warm, gateway settled, ms", 150, lambda m: m["status"], "ms"),
    ("5", "`moltbot-init health` inside, warm, gateway settled, ms", 100, lambda m: m["health"], "ms"),
    ("5", "the upgrade gate, unchanged release (`bench/upgrade --quick`), ms", 5, lambda m: m["gate"], "ms"),
)


def side_ratio(rounds: list[dict[str, Any]], side: str, *path: str) -> float | None:
    ours, theirs = med(rounds, side, *path), med(rounds, "upstream", *path)
    return None if ours is None or not theirs else ours / theirs


def goal_figures(results: dict[str, Any]) -> dict[str, float | None]:
    rounds = results["rounds"]
    rss, pss = med(rounds, "ours", "memory", "init_rss_kb"), med(rounds, "ours", "memory", "init_pss_kb")
    figures: dict[str, float | None] = {
        "spawn": med(rounds, "ours", "spawn_ms", "gateway_running"),
        "rss": None if rss is None else rss / MB,
        "pss": None if pss is None else pss / MB,
        "processes": median([len(value or []) for value in pick(rounds, "ours", "memory", "init")]),
        "status": med(rounds, "ours", "tools_ms", "status"),
        "health": med(rounds, "ours", "tools_ms", "health"),
        "gate": results.get("upgrade_gate_ms"),
    }
    for side in ("ours", "compose"):
        figures[f"{side}_restart_ratio"] = side_ratio(rounds, side, "restart_to_http_s")
        figures[f"{side}_fresh_ratio"] = side_ratio(rounds, side, "run_to_http_s")
        figures[f"{side}_stop"] = med(rounds, side, "stop_fresh", "docker_stop_s")
    return figures


def goals(results: dict[str, Any]) -> list[str]:
    figures = goal_figures(results)
    out = ["| goal | figure | target | median | |", "|---|---|---:|---:|---|"]
    for number, what, target, measured, unit in GOALS:
        value = measured(figures)
        verdict = "-" if value is None else ("met" if value <= target else "**not met**")
        out.append(f"| {number} | {what} | <= {target:g}{unit} | {cell(value)}{unit} | {verdict} |")
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
    others = [side for side in sides if side != "upstream"]
    out = [
        "| median of the rounds | "
        + " | ".join(sides)
        + "".join(f" | {side} / upstream" for side in others)
        + " |",
        "|---|" + "---:|" * (len(sides) + len(others)),
    ]
    for what, path, scale in SIDE_BY_SIDE:
        values = {side: med(rounds, side, *path) for side in sides}
        cells = " | ".join(cell(values[side], 2, scale) for side in sides)
        ratios = " | ".join(ratio(values[side], values.get("upstream")) for side in others)
        out.append(f"| {what} | {cells} | {ratios} |")
    codes = {
        side: sorted({code for code in pick(rounds, side, "stop_fresh", "exit_code") if code is not None})
        for side in sides
    }
    exits = " | ".join(str(codes[side]) for side in sides)
    out.append(f"| exit codes of the stops | {exits} |" + " |" * len(others))
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


def phases(found: dict[str, dict[str, list[float]]], most: int = 25) -> list[str]:
    """The gateway's startup trace of each side, fresh and started again, the phases whose time
    started again differs most between ours and upstream's first."""
    ours, theirs = found.get("ours", {}), found.get("upstream", {})
    names = set(ours) | set(theirs)

    def times(side: dict[str, list[float]], name: str) -> tuple[float, float]:
        fresh, again = side.get(name, (0.0, 0.0))
        return fresh, again

    rows = sorted(names, key=lambda name: -abs(times(ours, name)[1] - times(theirs, name)[1]))[:most]
    out = [
        "| phase (the gateway's startup trace) | ours fresh ms | ours again ms | upstream fresh ms "
        "| upstream again ms | again, ours - upstream |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in rows:
        (of, oa), (uf, ua) = times(ours, name), times(theirs, name)
        out.append(f"| `{name}` | {of:.0f} | {oa:.0f} | {uf:.0f} | {ua:.0f} | {oa - ua:+.0f} |")
    return out


def report(results: dict[str, Any]) -> str:
    rounds, sides = results["rounds"], results["sides"]
    out = ["## Machine", "", *(f"- {line}" for line in results["machine"]), "", "## Images", ""]
    out += [f"- {side}: {text}" for side, text in results["images"].items()]
    out += ["", f"## Side by side ({len(rounds)} rounds, interleaved, fresh volumes each)", ""]
    out += side_by_side(rounds, sides)
    out += ["", "## Goals of issue 22", "", *goals(results)]
    out += ["", "## Per round", "", *per_round(rounds, sides)]
    out += ["", "## The init's start, split", "", *spawn_split(rounds)]
    for side in sides:
        out += [
            "",
            f"## Memory of the init's side: {side} (medians, gateway ready)",
            "",
            *processes(rounds, side),
        ]
    if results.get("phases"):
        out += ["", "## The gateway's startup trace, ours and upstream's (one of each)", ""]
        out += phases(results["phases"])
    return "\n".join(out) + "\n"
