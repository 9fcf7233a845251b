"""The pilot guard: kill switch and hourly budgets of the pilot tenant.

See docs/SPEC.md §3.6 and docs/seeds/003.txt §3.

Only the pilot tenant is guarded; every other tenant passes straight through.
The budgets are sliding windows in Redis, so all replicas share them. A budget
that cannot be checked is not granted: with Redis unreachable a pilot
submission is refused with 503 (docs/SPEC.md §11), and an incident waits for its job's
retry instead of being created unchecked.

`PILOT_ENABLED` is read once at start; changing it means restarting the pods
with the new value (`kubectl set env`), which the runbook describes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from opentelemetry.metrics import Counter
from redis.exceptions import RedisError

from services.runtime.config import Thresholds
from services.runtime.errors import RateLimited, Unavailable
from services.runtime.ratelimit import Admission, SlidingWindowLimiter
from services.runtime.redis_client import RedisKeys

log = logging.getLogger(__name__)

# Names of the Redis windows; readiness reports the invoice window's usage.
INVOICE_LIMITER = "pilot-invoices"
INCIDENT_LIMITER = "pilot-incidents"
# Why a job was SKIPPED by the kill switch, as its error code.
PILOT_DISABLED = "PILOT_DISABLED"
_RETRY_AFTER_SECONDS = 5


def pilot_limiter(
    name: str,
    redis: aioredis.Redis,
    keys: RedisKeys,
    thresholds: Thresholds,
    clock: Callable[[], float] = time.time,
) -> SlidingWindowLimiter:
    """The pilot window `name` (`INVOICE_LIMITER` or `INCIDENT_LIMITER`) with its hourly limit.

    Intake and workers take slots from these windows and `GetReadinessStatus`
    reports their usage; building them here keeps the names and limits the same everywhere.
    """
    limits = {
        INVOICE_LIMITER: thresholds.Pilot.MAX_INVOICES_PER_HOUR,
        INCIDENT_LIMITER: thresholds.Pilot.MAX_INCIDENTS_PER_HOUR,
    }
    return SlidingWindowLimiter(
        redis,
        keys,
        name,
        limit=limits[name],
        window_seconds=thresholds.Pilot.WINDOW_SECONDS,
        clock=clock,
    )


class PilotGuard:
    """Decides, for one tenant, whether the pilot's switch and budgets let work through."""

    def __init__(
        self,
        *,
        tenant_id: str,
        enabled: bool,
        invoices: SlidingWindowLimiter,
        incidents: SlidingWindowLimiter,
        incidents_skipped: Counter,
    ) -> None:
        self.tenant_id = tenant_id
        self.enabled = enabled
        self._invoices = invoices
        self._incidents = incidents
        self._incidents_skipped = incidents_skipped

    def guards(self, tenant_id: str) -> bool:
        return tenant_id == self.tenant_id

    def skips_jobs_of(self, tenant_id: str) -> bool:
        """True for the pilot's jobs while the kill switch is off: they are SKIPPED, not run."""
        return not self.enabled and self.guards(tenant_id)

    def check_open(self, tenant_id: str) -> None:
        """503 PILOT_DISABLED for a pilot submission while the kill switch is off."""
        if self.skips_jobs_of(tenant_id):
            raise Unavailable(PILOT_DISABLED, "pilot submissions are switched off (PILOT_ENABLED)")

    async def reserve_invoice(self, tenant_id: str) -> Admission:
        """A slot of the pilot's hourly invoice budget: 429 with Retry-After when it is spent."""
        try:
            admission = await self._invoices.acquire(tenant_id)
        except (RedisError, OSError) as exc:
            log.warning("pilot budget unavailable (%s)", type(exc).__name__)
            raise Unavailable(
                "RATE_LIMIT_UNAVAILABLE",
                "the pilot budget cannot be checked; retry later",
                retry_after_seconds=_RETRY_AFTER_SECONDS,
            ) from exc
        if not admission.admitted:
            usage = admission.usage
            raise RateLimited(
                "PILOT_RATE_LIMITED",
                f"the pilot tenant may submit {usage.limit} invoices per"
                f" {usage.window_seconds} s; retry in {admission.retry_after_seconds} s",
                retry_after_seconds=admission.retry_after_seconds,
            )
        return admission

    async def reserve_incident(self, tenant_id: str) -> Admission | None:
        """A slot of the hourly incident budget (None: not the pilot, no budget applies).

        A refusal is logged as a warning and counted; the caller skips the
        incident. Redis errors propagate, so the job is retried rather than
        opening an incident nobody counted.
        """
        if not self.guards(tenant_id):
            return None
        admission = await self._incidents.acquire(tenant_id)
        if not admission.admitted:
            self._incidents_skipped.add(1)
            log.warning(
                "pilot incident budget spent; incident not created",
                extra={"tenant_id": tenant_id, "limit": admission.usage.limit},
            )
        return admission

    async def release_invoice(self, admission: Admission | None) -> None:
        await self._release(self._invoices, admission)

    async def release_incident(self, admission: Admission | None) -> None:
        await self._release(self._incidents, admission)

    async def _release(self, limiter: SlidingWindowLimiter, admission: Admission | None) -> None:
        """Best effort: a slot that cannot be handed back frees itself when the window slides."""
        if admission is None:
            return
        try:
            await limiter.release(admission)
        except (RedisError, OSError) as exc:
            log.warning("pilot budget slot not released (%s)", type(exc).__name__)
