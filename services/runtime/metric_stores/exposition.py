"""Prometheus text exposition (format 0.0.4) rendered by hand, deterministically.

The metric stores are also written as `.prom` files for a node-exporter
textfile collector by CLIs that have no HTTP server, so they render the text
themselves: families in the order given, samples in the order given, label
values escaped, one trailing newline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from services.runtime.metric_registry import MetricFamily

Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Sample:
    labels: Labels
    value: float


@dataclass(frozen=True)
class Family:
    """One metric family: name, HELP text, TYPE and its samples in output order."""

    name: str
    help: str
    type: str
    samples: tuple[Sample, ...]


def counter_family(family: MetricFamily, counts: Iterable[tuple[str, int]]) -> Family:
    """A counter with one label: one sample per `(label value, count)` pair, in order.

    Name, HELP and label name come from the registry entry, as on services' `/metrics`.
    """
    (label,) = family.labels
    samples = tuple(Sample(((label, value),), count) for value, count in counts)
    return Family(family.name, family.help, family.kind, samples)


def scalar_family(family: MetricFamily, value: float) -> Family:
    """An unlabelled counter or gauge family with one sample."""
    return Family(family.name, family.help, family.kind, (Sample((), value),))


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _format_value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def render(families: Sequence[Family]) -> str:
    """Text exposition of `families`; identical input gives byte-identical output."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape_help(family.help)}")
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            if sample.labels:
                rendered = ",".join(f'{k}="{_escape_label(v)}"' for k, v in sample.labels)
                lines.append(f"{family.name}{{{rendered}}} {_format_value(sample.value)}")
            else:
                lines.append(f"{family.name} {_format_value(sample.value)}")
    return "\n".join(lines) + "\n"
