"""Exact continuous percentiles from a value histogram and the values at a few ranks.

PostgreSQL's `percentile_cont(p)` over n ascending values v[0..n-1] is
`v[lo] + (p·(n-1) - lo) · (v[hi] - v[lo])` with `lo = ⌊p·(n-1)⌋`, `hi = ⌈p·(n-1)⌉`.
The run summary keeps that definition (docs/SPEC.md §4.1) without sorting every value
of a window: a histogram whose buckets are ordered like the values (the bucket is a
monotonic function of the value) says which bucket holds rank r and at which position
inside it, so only those few positions are read from the raw rows. The arithmetic is
the same IEEE double arithmetic as PostgreSQL's, so the figures are identical.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from services.telemetry.domain.summary import Percentiles

QUANTILES = (0.5, 0.95, 0.99)

Histogram = Sequence[tuple[int, int]]
"""(bucket, count) pairs in ascending bucket order, counts > 0."""


def _bounds(quantile: float, samples: int) -> tuple[float, int, int]:
    position = quantile * (samples - 1)
    return position, math.floor(position), math.ceil(position)


def wanted_ranks(samples: int) -> list[int]:
    """The 0-based ranks whose values the percentiles of `samples` values need."""
    if samples == 0:
        return []
    ranks: set[int] = set()
    for quantile in QUANTILES:
        _, lo, hi = _bounds(quantile, samples)
        ranks.update((lo, hi))
    return sorted(ranks)


def locate(histogram: Histogram, ranks: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Each rank as (bucket, position inside the bucket); `ranks` ascending."""
    located: dict[int, tuple[int, int]] = {}
    pending = list(ranks)
    before = 0
    for bucket, count in histogram:
        while pending and pending[0] < before + count:
            rank = pending.pop(0)
            located[rank] = (bucket, rank - before)
        before += count
    if pending:
        raise ValueError(f"ranks {pending} beyond the histogram's {before} values")
    return located


def percentiles(values: Mapping[int, float], samples: int) -> Percentiles:
    """p50/p95/p99 from the values at `wanted_ranks(samples)`."""
    if samples == 0:
        return Percentiles()
    results = []
    for quantile in QUANTILES:
        position, lo, hi = _bounds(quantile, samples)
        low = values[lo]
        results.append(low if lo == hi else low + (position - lo) * (values[hi] - low))
    p50, p95, p99 = results
    return Percentiles(p50=p50, p95=p95, p99=p99, sample_count=samples)
