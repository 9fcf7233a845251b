"""Periodic `run_summary` log lines: one at the end of each period (default daily).

Periods are aligned to the Unix epoch (daily periods end at 00:00 UTC). With
several replicas, the first to claim a (period end, scope) row in Postgres
logs it; the others skip it. Each period logs one all-tenants line
(`tenant_id: null`) and one line per tenant active in the period.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from services.telemetry.app import Telemetry
from services.telemetry.domain.window import TimeWindow

log = logging.getLogger(__name__)

DEFAULT_PERIOD = timedelta(days=1)
MAX_TENANT_LINES = 100
ALL_TENANTS_SCOPE = "*"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def period_end_after(now: datetime, period: timedelta) -> datetime:
    """The first epoch-aligned period boundary strictly after `now`."""
    elapsed = (now - _EPOCH) // period
    return _EPOCH + (elapsed + 1) * period


async def log_period(telemetry: Telemetry, window: TimeWindow, claim: bool) -> int:
    """Log the all-tenants and per-tenant summaries of `window`; the number of lines written."""
    repository = telemetry.repository
    written = 0
    tenants = await repository.active_tenants(window, MAX_TENANT_LINES + 1)
    if len(tenants) > MAX_TENANT_LINES:
        log.warning(
            "more than %d active tenants; logging the first %d", MAX_TENANT_LINES, MAX_TENANT_LINES
        )
    for tenant in [None, *tenants[:MAX_TENANT_LINES]]:
        scope = tenant if tenant is not None else ALL_TENANTS_SCOPE
        if claim and not await repository.claim_summary(window.end, scope):
            continue
        telemetry.log_run_summary(await telemetry.run_summary(window, tenant))
        written += 1
    return written


async def run_periodic_summaries(telemetry: Telemetry, period: timedelta) -> None:
    """Forever: sleep until the next period boundary, then log that period's summaries."""
    while True:
        now = telemetry.now()
        end = period_end_after(now, period)
        await asyncio.sleep((end - now).total_seconds())
        try:
            await log_period(telemetry, TimeWindow(end - period, end), claim=True)
        except Exception:
            # One failed period (e.g. database down) must not stop the next ones.
            log.exception("run summary for the period ending %s failed", end.isoformat())
