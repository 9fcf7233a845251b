"""Reading a counter's total from a service's `/metrics`, as the benchmarks count work."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def counter_total(session: aiohttp.ClientSession, base: str, name: str) -> float:
    """The sum over every label set of counter `name` (without its `_total` suffix)."""
    async with session.get(f"{base}/metrics") as response:
        text = await response.text()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == name
        for sample in family.samples
        if sample.name == f"{name}_total"
    )
