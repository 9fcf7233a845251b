"""Pipeline full path (HTTP intake → stream → worker → Postgres + outbox), SPEC §12.

Throughput: INVOICES distinct documents submitted asynchronously at CONCURRENCY,
timed until the workers have finished them all (`ptf_pipeline_jobs_finished`),
REPETITIONS times; the store traffic counters of the pipeline's processes (API
and worker processes) over those runs give statements and round trips per
invoice. Latency: synchronous submissions open-loop at SYNC_RATE/s; p50/p95/p99
of request → processed answer, and the p95 of its three parts as the answered
job's own timestamps split it (request → stored, stored → commit, commit →
answer; docs/performance.md). Documents carry no invoice period, so no offer
lookup and no incident: the common clean invoice.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import aiohttp
import asyncpg

from bench.cpu import MACHINE, CpuMeter
from bench.http_client import KeepAliveClient
from bench.load import run_closed_loop
from bench.report import BenchRow, median_and_spread
from bench.scrape import counter_total

TENANT = "default"
API_KEY = "dev-tenant-key"
INVOICES = 3000
CONCURRENCY = 32
REPETITIONS = 3
TARGET_RATE = 1500
RAW_RATIO = 0.65
SYNC_RATE = 750
SYNC_P95_LIMIT_MS = 25.0
LATENCY_SECONDS = 3
FINISH_TIMEOUT_SECONDS = 120
TRAFFIC = (
    "ptf_db_statements",
    "ptf_db_transactions",
    "ptf_redis_commands",
    "ptf_redis_round_trips",
)
# (counter, row label, limit per invoice or None for a figure without a target)
PER_INVOICE: tuple[tuple[str, str, float | None], ...] = (
    ("ptf_db_statements", "PostgreSQL statements", 0.6),
    ("ptf_db_transactions", "PostgreSQL transactions", None),
    ("ptf_redis_round_trips", "Redis round trips", 0.5),
    ("ptf_redis_commands", "Redis commands", None),
)
_HEADERS = {"X-API-Key": API_KEY, "Content-Type": "application/json"}


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


async def _finished(session: aiohttp.ClientSession, bases: list[str]) -> float:
    """Jobs finished by any of the pipeline's processes (the worker processes count theirs)."""
    return sum([await counter_total(session, base, "ptf_pipeline_jobs_finished") for base in bases])


async def _traffic(session: aiohttp.ClientSession, bases: list[str]) -> dict[str, float]:
    """The store traffic counters summed over the pipeline's processes (API and workers)."""
    return {
        name: sum([await counter_total(session, base, name) for base in bases]) for name in TRAFFIC
    }


@dataclass(frozen=True)
class _FullPathClient:
    """The throughput runs' clients: metrics scrapes, and the load posted to the API."""

    session: aiohttp.ClientSession
    bases: list[str]
    intake: KeepAliveClient


async def _throughput(client: _FullPathClient) -> float:
    """Invoices/s of INVOICES asynchronous submissions until the workers have finished them.

    The documents are made before the clock starts: the client's own work would
    otherwise be taken from the cores the stack runs on.
    """
    path = f"/full-process?tenant_id={TENANT}&async=true"
    documents = [invoice_document() for _ in range(INVOICES)]

    async def submit(document: bytes) -> None:
        response = await client.intake.post(path, document, _HEADERS)
        if response.status != 202:
            raise RuntimeError(f"intake answered {response.status}")

    before = await _finished(client.session, client.bases)
    started = time.perf_counter()
    await run_closed_loop([partial(submit, document) for document in documents], CONCURRENCY)
    deadline = started + FINISH_TIMEOUT_SECONDS
    while await _finished(client.session, client.bases) - before < INVOICES:
        if time.perf_counter() > deadline:
            raise RuntimeError("the workers did not finish the benchmark's invoices in time")
        await asyncio.sleep(0.05)
    return INVOICES / (time.perf_counter() - started)


SYNC_PARTS = ("request → stored", "stored → commit", "commit → answer")


@dataclass(frozen=True)
class SyncRun:
    """One open-loop run: request → answer latencies and their parts (ms), each sorted."""

    totals: list[float]
    parts: dict[str, list[float]]


def _parts(began: float, answered: float, job: dict[str, Any]) -> tuple[float, float, float]:
    """The job row's `created_at` and `finished_at` (transaction starts of the intake
    INSERT and of the batch commit) split a synchronous call into three parts."""
    stored = datetime.fromisoformat(job["created_at"]).timestamp()
    committed = datetime.fromisoformat(job["finished_at"]).timestamp()
    return (stored - began) * 1000, (committed - stored) * 1000, (answered - committed) * 1000


async def _latencies(client: KeepAliveClient, rate: float) -> SyncRun:
    """Synchronous submissions started open-loop at `rate`/s; request → answer, and its parts.

    Documents are made before the run and answers are parsed after it, so the
    client spends its CPU during the run on sending and receiving only.
    """
    path = f"/full-process?tenant_id={TENANT}"
    documents = [invoice_document() for _ in range(int(rate * LATENCY_SECONDS))]
    totals: list[float] = []
    answered: list[tuple[float, float, bytes]] = []

    async def submit(document: bytes) -> None:
        began, began_wall = time.perf_counter(), time.time()
        response = await client.post(path, document, _HEADERS)
        totals.append((time.perf_counter() - began) * 1000)
        if response.status == 200:
            answered.append((began_wall, time.time(), response.body))

    started = time.perf_counter()
    tasks = []
    for i, document in enumerate(documents):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(submit(document)))
    await asyncio.gather(*tasks)
    parts = [_parts(began, done, json.loads(body)) for began, done, body in answered]
    return SyncRun(
        sorted(totals),
        {name: sorted(p[i] for p in parts) for i, name in enumerate(SYNC_PARTS)},
    )


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[int(q * (len(ordered) - 1))]


@dataclass(frozen=True)
class Throughput:
    """Invoices/s of each repetition, and the traffic counters' and CPU's growth over all."""

    rates: list[float]
    traffic: dict[str, float]
    cpu_seconds: dict[str, float]

    def per_invoice(self, name: str) -> float:
        return self.traffic[name] / (INVOICES * len(self.rates))

    def cpu_us_per_invoice(self) -> dict[str, float]:
        invoices = INVOICES * len(self.rates)
        return {name: seconds * 1e6 / invoices for name, seconds in self.cpu_seconds.items()}


@asynccontextmanager
async def _full_path_client(http_ports: list[int]) -> AsyncIterator[_FullPathClient]:
    """The throughput runs' clients for the API (`http_ports[0]`) and its workers."""
    bases = [f"http://127.0.0.1:{port}" for port in http_ports]
    async with (
        aiohttp.ClientSession() as session,
        KeepAliveClient("127.0.0.1", http_ports[0]) as intake,
    ):
        yield _FullPathClient(session, bases, intake)


async def warm_up(http_ports: list[int], database_url: str) -> None:
    """One unmeasured full-path run, then ANALYZE: the measured runs see steady-state plans.

    On a new database the pipeline's statements are planned while its tables are
    empty, and those plans (sequential scans) stay cached until autovacuum's first
    ANALYZE, a minute or more later: longer than the whole throughput measurement
    (docs/performance.md). A long-running deployment has statistics; so do the
    raw baseline's runs, which come later on the same tables.
    """
    async with _full_path_client(http_ports) as client:
        await _throughput(client)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def measure_throughput(http_ports: list[int], cpu: CpuMeter) -> Throughput:
    """REPETITIONS full-path runs against the pipeline API (`http_ports[0]`) and its workers.

    `cpu` names every process of the stack (and the stores): their CPU over the runs,
    per invoice, says where the time goes.
    """
    async with _full_path_client(http_ports) as client:
        before = await _traffic(client.session, client.bases)
        cpu_before = cpu.snapshot()
        rates = [await _throughput(client) for _ in range(REPETITIONS)]
        cpu_after = cpu.snapshot()
        after = await _traffic(client.session, client.bases)
    return Throughput(
        rates,
        {name: after[name] - before[name] for name in TRAFFIC},
        {name: cpu_after[name] - cpu_before[name] for name in cpu_after},
    )


def throughput_rows(
    one: Throughput, two: Throughput | None, raw_rates: list[float], raw_http_rates: list[float]
) -> list[BenchRow]:
    """Invoices/s with 1 (and 2) worker processes against the raw baselines, then traffic/invoice.

    The target ratio is to the raw baseline without HTTP, as the issue sets it; the
    ratio to the raw baseline with a bare HTTP intake is reported beside it.
    """
    rate, spread = median_and_spread(one.rates)
    raw, raw_spread = median_and_spread(raw_rates)
    raw_http, raw_http_spread = median_and_spread(raw_http_rates)
    rows = [
        BenchRow(
            "raw baseline (batched asyncpg + Redis loop)", raw, "/s", None, "-", True, raw_spread
        ),
        BenchRow(
            "raw baseline with a bare aiohttp intake",
            raw_http,
            "/s",
            None,
            "-",
            True,
            raw_http_spread,
        ),
        BenchRow(
            "pipeline full path, 1 worker process",
            rate,
            "/s",
            raw,
            f"≥ {TARGET_RATE:,}/s, ≥ {RAW_RATIO}× raw",
            rate >= TARGET_RATE and rate >= RAW_RATIO * raw,
            spread,
        ),
        BenchRow(
            "pipeline full path vs raw with HTTP intake",
            rate,
            "/s",
            raw_http,
            "(report only)",
            True,
            spread,
        ),
    ]
    if two is not None:
        rate2, spread2 = median_and_spread(two.rates)
        rows.append(
            BenchRow(
                "pipeline full path, 2 worker processes",
                rate2,
                "/s",
                rate,
                "(ratio to 1 worker)",
                True,
                spread2,
            )
        )
    for name, label, limit in PER_INVOICE:
        figure = one.per_invoice(name)
        met = limit is None or figure <= limit
        target = "-" if limit is None else f"≤ {limit}"
        rows.append(BenchRow(f"pipeline {label} per invoice", figure, "", None, target, met))
    return rows + cpu_rows(one)


def cpu_rows(one: Throughput) -> list[BenchRow]:
    """CPU µs per invoice of each process over the 1-worker runs, and their sum.

    Two cores give a ceiling of 2,000,000 / total invoices/s; the largest rows are
    where the next gain is.
    """
    return _cpu_rows("pipeline CPU per invoice", one.cpu_us_per_invoice())


def _cpu_rows(label: str, per_process: dict[str, float]) -> list[BenchRow]:
    """A row per process, their sum, then the whole machine's busy time over the same span."""
    stack = {name: figure for name, figure in per_process.items() if name != MACHINE}
    rows = [
        BenchRow(f"{label}: {name}", figure, "µs", None, "-", True)
        for name, figure in stack.items()
    ]
    rows.append(BenchRow(f"{label}: all processes", sum(stack.values()), "µs", None, "-", True))
    if MACHINE in per_process:
        rows.append(BenchRow(f"{label}: {MACHINE}", per_process[MACHINE], "µs", None, "-", True))
    return rows


async def bench_sync_latency(http_port: int, cpu: CpuMeter) -> list[BenchRow]:
    """p50/p95/p99 of synchronous submissions at SYNC_RATE/s, then the p95 of each of their
    parts, each the median of REPETITIONS, and the CPU the stack spent per submission
    over those runs with the cores it kept busy (report only: where the time goes).

    A synchronous submission costs far more CPU than an asynchronous one at full
    speed: at this rate every batch (intake flush, worker cycle) holds a few
    invoices, so each pays most of a batch's round trips and process wake-ups.
    """
    runs = []
    cpu_before, started = cpu.snapshot(), time.perf_counter()
    async with KeepAliveClient("127.0.0.1", http_port) as client:
        for _ in range(REPETITIONS):
            runs.append(await _latencies(client, SYNC_RATE))
    elapsed, cpu_after = time.perf_counter() - started, cpu.snapshot()
    rows = []
    for q, limit in ((0.5, None), (0.95, SYNC_P95_LIMIT_MS), (0.99, None)):
        figure, spread = median_and_spread([_percentile(run.totals, q) for run in runs])
        target = "-" if limit is None else f"≤ {limit:g} ms"
        rows.append(
            BenchRow(
                f"pipeline sync p{round(q * 100)} at {SYNC_RATE}/s",
                figure,
                "ms",
                None,
                target,
                limit is None or figure <= limit,
                spread,
            )
        )
    for name in SYNC_PARTS:
        answered = [run.parts[name] for run in runs if run.parts[name]]
        if not answered:  # no call was answered 200 within the sync wait: nothing to split
            continue
        figure, spread = median_and_spread([_percentile(part, 0.95) for part in answered])
        rows.append(
            BenchRow(
                f"pipeline sync p95 at {SYNC_RATE}/s, {name}", figure, "ms", None, "-", True, spread
            )
        )
    submissions = sum(len(run.totals) for run in runs)
    seconds = {name: cpu_after[name] - cpu_before[name] for name in cpu_after}
    rows += _cpu_rows(
        "pipeline sync CPU per invoice",
        {name: spent * 1e6 / submissions for name, spent in seconds.items()},
    )
    rows.append(
        BenchRow(
            f"pipeline sync: cores the stack kept busy, of {os.cpu_count()}",
            sum(spent for name, spent in seconds.items() if name != MACHINE) / elapsed,
            "",
            None,
            "-",
            True,
        )
    )
    rows.append(
        BenchRow(
            "pipeline sync: cores the whole machine kept busy",
            seconds[MACHINE] / elapsed,
            "",
            None,
            "-",
            True,
        )
    )
    return rows
