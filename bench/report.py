"""One table of results: figure, baseline, ratio, spread and the target it is held to.

`render` prints it (a missed target reads MISSED, never hidden) and
`write_results` stores the same rows in `bench/results.json`.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).parent / "results.json"


@dataclass(frozen=True)
class BenchRow:
    name: str
    figure: float
    unit: str
    baseline: float | None
    target: str
    met: bool
    # Largest minus smallest of the repetitions whose median is `figure` (None: one run).
    spread: float | None = None

    @property
    def ratio(self) -> float | None:
        """figure / baseline, or None without a baseline."""
        if not self.baseline:
            return None
        return self.figure / self.baseline

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "figure": self.figure,
            "unit": self.unit,
            "baseline": self.baseline,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
            "spread": self.spread,
        }


def median_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """The median of the repetitions and their spread (max - min)."""
    return statistics.median(values), max(values) - min(values)


def render(rows: list[BenchRow]) -> str:
    header = f"{'benchmark':<48} {'figure':>12} {'spread':>9} {'baseline':>12} {'ratio':>6}  target"
    lines = [header, "-" * len(header)]
    for row in rows:
        baseline = "-" if row.baseline is None else f"{row.baseline:,.1f}"
        spread = "-" if row.spread is None else f"±{row.spread / 2:,.1f}"
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        verdict = "ok" if row.met else "MISSED"
        lines.append(
            f"{row.name:<48} {row.figure:>10,.1f}{row.unit:>2} {spread:>9} {baseline:>12}"
            f" {ratio:>6}  {row.target} [{verdict}]"
        )
    return "\n".join(lines)


def write_results(rows: list[BenchRow], path: Path = RESULTS) -> None:
    """`{"rows": [{name, figure, unit, baseline, ratio, target, met, spread}]}`."""
    path.write_text(json.dumps({"rows": [row.as_json() for row in rows]}, indent=2) + "\n")
