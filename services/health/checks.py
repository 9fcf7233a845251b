"""The individual readiness checks: each measures one dependency and classifies it.

Every check runs under a timeout, so a hanging dependency is reported as an
error instead of hanging the endpoint.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

import asyncpg
import grpc

from services.health.report import CheckResult, CheckStatus, database_status, queue_status
from services.runtime.config import (
    AppConfig,
    ConfigError,
    HealthThresholds,
    config_hash,
    reload_thresholds,
)
from services.runtime.config.validation import find_violations
from services.runtime.healthcheck import health_status

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[CheckResult]]


class CheckFailed(Exception):
    """A dependency could not be asked; the message says why and becomes the check's message."""


async def bounded(check: Check, timeout_seconds: float) -> CheckResult:
    """Run a check; a timeout or a crash becomes an error result, never an exception."""
    try:
        return await asyncio.wait_for(check(), timeout_seconds)
    except TimeoutError:
        return CheckResult(CheckStatus.ERROR, message=f"timed out after {timeout_seconds:g}s")
    except CheckFailed as exc:
        return CheckResult(CheckStatus.ERROR, message=str(exc))
    except Exception as exc:
        log.warning("readiness check failed: %s", type(exc).__name__)
        return CheckResult(CheckStatus.ERROR, message=f"check failed ({type(exc).__name__})")


def config_check(config: AppConfig) -> Check:
    """Re-validate the deployed thresholds source; warn when it differs from what runs."""

    async def check() -> CheckResult:
        try:
            thresholds = reload_thresholds(config)
        except ConfigError as exc:
            return CheckResult(CheckStatus.ERROR, {"validated": False}, "; ".join(exc.problems))
        violations = find_violations(thresholds)
        if violations:
            return CheckResult(
                CheckStatus.ERROR, {"validated": False}, "; ".join(str(v) for v in violations)
            )
        deployed_hash = config_hash(replace(config, thresholds=thresholds))
        if deployed_hash != config.config_hash:
            return CheckResult(
                CheckStatus.WARNING,
                {"validated": True, "deployed_config_hash": deployed_hash},
                "thresholds source changed since start; restart pods to apply it",
            )
        return CheckResult(CheckStatus.OK, {"validated": True})

    return check


def database_check(pool: asyncpg.Pool, bands: HealthThresholds) -> Check:
    """`SELECT 1` round trip (including pool acquisition) against the ok/warning/error bands."""

    async def check() -> CheckResult:
        started = time.perf_counter()
        await pool.fetchval("SELECT 1")
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        status = database_status(latency_ms, bands)
        message = "" if status is CheckStatus.OK else "slow database"
        return CheckResult(status, {"latency_ms": latency_ms}, message)

    return check


@dataclass(frozen=True)
class QueueSnapshot:
    """Jobs not finished yet and whether the pipeline has stopped making progress."""

    depth: int
    stuck: bool


def queue_check(snapshot: Callable[[], Awaitable[QueueSnapshot]]) -> Check:
    async def check() -> CheckResult:
        queue = await snapshot()
        status = queue_status(queue.depth, queue.stuck)
        message = {
            CheckStatus.OK: "",
            CheckStatus.WARNING: "Queue backlog",
            CheckStatus.ERROR: "Queue stuck: nothing finished recently",
        }[status]
        return CheckResult(status, {"depth": queue.depth, "stuck_detected": queue.stuck}, message)

    return check


@dataclass(frozen=True)
class ExtractorView:
    """The pipeline's extractor as it reports it: mode, model, key present, rate limited."""

    mode: str
    model: str
    key_configured: bool
    rate_limited: bool


def openai_check(extractor: Callable[[], Awaitable[ExtractorView]]) -> Check:
    """The pipeline's extractor: json mode reports the mode and passes; openai mode needs
    the pipeline to hold a key and not be rate limited."""

    async def check() -> CheckResult:
        state = await extractor()
        if state.mode == "json":
            return CheckResult(CheckStatus.OK, {"mode": "json"})
        values: dict[str, object] = {
            "mode": state.mode,
            "model": state.model,
            "key_configured": state.key_configured,
        }
        if not state.key_configured:
            return CheckResult(CheckStatus.ERROR, values, "OPENAI_API_KEY is not set")
        if state.rate_limited:
            return CheckResult(CheckStatus.ERROR, values, "rate_limited")
        return CheckResult(CheckStatus.OK, values)

    return check


def services_check(targets: Mapping[str, grpc.aio.Channel], rpc_timeout: float) -> Check:
    """grpc.health.v1 of each named service, asked concurrently."""

    async def status_of(channel: grpc.aio.Channel) -> str:
        try:
            status = await health_status(channel, rpc_timeout=rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            return f"unreachable ({exc.code().name})"
        return "SERVING" if status == 1 else "NOT_SERVING"

    async def check() -> CheckResult:
        names = list(targets)
        statuses = await asyncio.gather(*(status_of(targets[n]) for n in names))
        values = dict(zip(names, statuses, strict=True))
        down = [n for n, s in values.items() if s != "SERVING"]
        if down:
            return CheckResult(CheckStatus.ERROR, values, "not serving: " + ", ".join(down))
        return CheckResult(CheckStatus.OK, values)

    return check
