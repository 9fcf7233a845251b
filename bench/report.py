"""One table of results: figure, baseline, ratio and the target it is held to."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BenchRow:
    name: str
    figure: float
    unit: str
    baseline: float | None
    target: str
    met: bool

    @property
    def ratio(self) -> str:
        if not self.baseline:
            return "-"
        return f"{self.figure / self.baseline:.2f}"


def render(rows: list[BenchRow]) -> str:
    header = f"{'benchmark':<44} {'figure':>12} {'baseline':>12} {'ratio':>6}  target"
    lines = [header, "-" * len(header)]
    for row in rows:
        baseline = "-" if row.baseline is None else f"{row.baseline:,.1f}"
        verdict = "ok" if row.met else "MISSED"
        lines.append(
            f"{row.name:<44} {row.figure:>10,.1f}{row.unit:>2} {baseline:>12} {row.ratio:>6}"
            f"  {row.target} [{verdict}]"
        )
    return "\n".join(lines)
