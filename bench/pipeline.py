"""Pipeline full path (HTTP intake → stream → worker → Postgres + outbox), SPEC §12.

Throughput: INVOICES distinct documents submitted asynchronously at CONCURRENCY,
timed until the workers have finished them all (`ptf_pipeline_jobs_finished`).
Latency: synchronous submissions open-loop at half the 1,000/s target; p95 of
request → processed answer. Documents carry no invoice period, so no offer
lookup and no incident: the common clean invoice.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp

from bench.load import run_closed_loop
from bench.report import BenchRow
from bench.scrape import counter_total

TENANT = "default"
API_KEY = "dev-tenant-key"
INVOICES = 3000
CONCURRENCY = 32
TARGET_RATE = 1000
LATENCY_SECONDS = 4
FINISH_TIMEOUT_SECONDS = 120


def invoice_document() -> bytes:
    """A clean invoice made unique by an `invoice_number` the pipeline ignores (bench, soak)."""

    def field(value: float) -> dict[str, float]:
        return {"value": value, "confidence": 0.95}

    doc: dict[str, Any] = {
        "consumption_kwh": field(10000),
        "current_active_unit_price_tl_per_kwh": field(3.5),
        "invoice_total_with_vat_tl": field(42000),
        "provider": "Bench Elektrik",
        "invoice_number": uuid.uuid4().hex,
    }
    return json.dumps(doc).encode()


async def _finished(session: aiohttp.ClientSession, base: str) -> float:
    return await counter_total(session, base, "ptf_pipeline_jobs_finished")


async def _throughput(session: aiohttp.ClientSession, base: str) -> float:
    url = f"{base}/full-process?tenant_id={TENANT}&async=true"
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}

    async def submit() -> None:
        async with session.post(url, data=invoice_document(), headers=headers) as response:
            await response.read()
            if response.status != 202:
                raise RuntimeError(f"intake answered {response.status}")

    before = await _finished(session, base)
    started = time.perf_counter()
    await run_closed_loop([submit] * INVOICES, CONCURRENCY)
    deadline = started + FINISH_TIMEOUT_SECONDS
    while await _finished(session, base) - before < INVOICES:
        if time.perf_counter() > deadline:
            raise RuntimeError("the workers did not finish the benchmark's invoices in time")
        await asyncio.sleep(0.05)
    return INVOICES / (time.perf_counter() - started)


async def _latency_p95(session: aiohttp.ClientSession, base: str, rate: float) -> float:
    url = f"{base}/full-process?tenant_id={TENANT}"
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    latencies: list[float] = []

    async def submit() -> None:
        began = time.perf_counter()
        async with session.post(url, data=invoice_document(), headers=headers) as response:
            await response.read()
        latencies.append((time.perf_counter() - began) * 1000)

    started = time.perf_counter()
    tasks = []
    for i in range(int(rate * LATENCY_SECONDS)):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(submit()))
    await asyncio.gather(*tasks)
    latencies.sort()
    return latencies[int(0.95 * (len(latencies) - 1))]


async def bench_pipeline(http_port: int) -> list[BenchRow]:
    base = f"http://127.0.0.1:{http_port}"
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector) as session:
        rate = await _throughput(session, base)
        p95 = await _latency_p95(session, base, TARGET_RATE / 2)
    return [
        BenchRow(
            "pipeline full path (async intake → DONE)",
            rate,
            "/s",
            None,
            f"≥ {TARGET_RATE:,}/s",
            rate >= TARGET_RATE,
        ),
        BenchRow(
            f"pipeline sync p95 at {TARGET_RATE // 2}/s", p95, "ms", None, "≤ 50 ms", p95 <= 50
        ),
    ]
