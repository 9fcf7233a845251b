"""A backtest over 100,000 stored invoices (issue 14): invoices/s replayed, peak RSS of the worker.

The invoices are planted with one SQL statement (processing them through intake
would take the bench far longer than the backtest it measures), then the
backtest goes through the pipeline's HTTP API like an operator's: start,
confirm, poll until DONE. The process that ran it is the one named by the
backtest's lease (`backtest-<host>-<pid>`); its VmHWM is read from /proc.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from bench.report import BenchRow
from services.runtime.stack import ChildService

INVOICES = 100_000
_ADMIN = {"X-Admin-Key": "dev-admin-key"}
_POLL_SECONDS = 0.5
_TIMEOUT_SECONDS = 1800.0
# 10000 kWh × 3.5 TL (+20 % VAT) = 42000 TL; totals 0-29 % over it: clean, S2 and S1.
_PLANT = """
INSERT INTO pipeline_invoices (invoice_id, tenant_id, content_hash, source_kind, document,
                               provider, invoice_period, processed_at)
SELECT gen_random_uuid(), $1, md5($1 || i::text), 'json',
       jsonb_build_object(
           'consumption_kwh', jsonb_build_object('value', 10000, 'confidence', 0.95),
           'current_active_unit_price_tl_per_kwh',
               jsonb_build_object('value', 3.5, 'confidence', 0.95),
           'invoice_total_with_vat_tl',
               jsonb_build_object('value', 42000 + 420 * (i % 30), 'confidence', 0.95),
           'provider', 'Bench Elektrik', 'invoice_period', '2026-01',
           'tariff_group', 'ticarethane_ag'),
       'Bench Elektrik', '2026-01', now()
  FROM generate_series(1, $2) AS i
"""


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


async def _json(response: aiohttp.ClientResponse) -> dict[str, object]:
    body: dict[str, object] = await response.json()
    if response.status >= 300:
        raise RuntimeError(f"{response.url}: {response.status} {body}")
    return body


async def bench_backtest(stack: dict[str, ChildService], env: dict[str, str]) -> list[BenchRow]:
    tenant = f"bench-bt-{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(env["DATABASE_URL"])
    try:
        await conn.execute(_PLANT, tenant, INVOICES)
        base = f"http://127.0.0.1:{stack['pipeline'].http_port}"
        async with aiohttp.ClientSession(base_url=base, headers=_ADMIN) as http:
            params = {
                "tenant_id": tenant,
                "since": "2026-01",
                "until": "2026-01",
                "thresholds": {"Mismatch": {"SEVERE_RATIO": 0.10}},
            }
            async with http.post("/admin/backtests", json=params) as response:
                token = (await _json(response))["confirmation_token"]
            started = time.perf_counter()
            async with http.post(
                "/admin/backtests/confirm", json={"confirmation_token": token}
            ) as response:
                backtest_id = (await _json(response))["backtest_id"]
            while True:
                async with http.get(f"/admin/backtests/{backtest_id}") as response:
                    state = (await _json(response))["state"]
                if state in ("DONE", "FAILED"):
                    break
                if time.perf_counter() - started > _TIMEOUT_SECONDS:
                    raise RuntimeError("the backtest did not finish in time")
                await asyncio.sleep(_POLL_SECONDS)
            elapsed = time.perf_counter() - started
        if state != "DONE":
            raise RuntimeError(f"backtest {backtest_id} ended {state}")
        owner = await conn.fetchval(
            "SELECT lease_owner FROM pipeline_backtests WHERE backtest_id = $1::uuid",
            backtest_id,
        )
        rss_mib = _peak_rss_kib(int(str(owner).rsplit("-", 1)[1])) / 1024
    finally:
        await conn.execute("DELETE FROM pipeline_invoices WHERE tenant_id = $1", tenant)
        await conn.close()
    rate = INVOICES / elapsed
    return [
        BenchRow("backtest replay, 100k stored invoices", rate, " invoices/s", None, "-", True),
        BenchRow("backtest worker peak RSS (VmHWM)", rss_mib, " MiB", None, "-", True),
    ]
