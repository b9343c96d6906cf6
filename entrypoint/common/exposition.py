"""Prometheus' text exposition format (version 0.0.4), written by hand: metric families, each with
its HELP and TYPE lines and its samples, label values escaped.

Who uses it: `metrics` renders what the init knows with it, in whichever process asks (the crash
guard for the textfile, supervisord's process for the listener, `status --prometheus` for an
operator); nothing else writes the format. The rules it keeps are the ones `promtool check metrics`
checks: a counter's name ends in `_total`, every family has its HELP, names and label names are
snake_case, a label value escapes backslash, double quote and newline, and no sample carries a
timestamp (node exporter's textfile collector refuses them).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_NAME = re.compile(r"[a-z_][a-z0-9_]*")
Kind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Sample:
    value: float
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Family:
    """One metric: its name, its type, what it means, and its samples (none: it is left out)."""

    name: str
    # A counter's name ends in `_total`, a gauge's never (`__post_init__`).
    kind: Kind
    help: str
    samples: tuple[Sample, ...]  # none: the family is left out (an unknown value is never a 0)

    def __post_init__(self) -> None:
        # Names are the code's own, never outside text: a wrong one is a bug, refused at once.
        if not _NAME.fullmatch(self.name) or self.name.endswith("_total") != (self.kind == "counter"):
            raise ValueError(f"not a {self.kind}'s name: {self.name!r}")
        for sample in self.samples:
            if not all(_NAME.fullmatch(label) for label, _ in sample.labels):
                raise ValueError(f"not a label name in {self.name}: {sample.labels!r}")


def one(name: str, kind: Kind, help: str, value: float | None) -> Family:
    """A family of one unlabelled sample, or of none when the value is unknown."""
    return Family(name, kind, help, () if value is None else (Sample(value),))


def labelled(name: str, kind: Kind, help: str, label: str, values: Iterable[tuple[str, float]]) -> Family:
    """A family of one sample per value of one label."""
    return Family(name, kind, help, tuple(Sample(value, ((label, text),)) for text, value in values))


def _escaped_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escaped_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if isinstance(value, int):  # a count, a flag: no decimal point
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def render(families: Iterable[Family]) -> str:
    """The exposition of `families`, in their order; families without samples are left out."""
    lines: list[str] = []
    for family in families:
        if not family.samples:
            continue
        lines.append(f"# HELP {family.name} {_escaped_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        for sample in family.samples:
            labels = ",".join(f'{name}="{_escaped_label(value)}"' for name, value in sample.labels)
            selector = f"{family.name}{{{labels}}}" if labels else family.name
            lines.append(f"{selector} {_number(sample.value)}")
    return "".join(line + "\n" for line in lines)
