"""Signal adapter: readiness, run summary and backtest from the other services over gRPC.

Sources are fetched concurrently, each with a deadline of
`Thresholds.Gate.SIGNAL_TIMEOUT_SECONDS`. Any failure (an RPC error, including
UNIMPLEMENTED, UNAVAILABLE and DEADLINE_EXCEEDED, or a reply that does not
validate) becomes `Unavailable`, which the evaluator turns into
SIGNAL_UNAVAILABLE (HOLD): the gate never answers OK on missing data.

Answers are cached per (source, parameters) for `SIGNAL_CACHE_SECONDS`,
failures included (they are values here), and concurrent requests for the
same key share one in-flight fetch (the runtime's `TtlCache`), so a burst of
preflights costs each source one call. Under steady load an answer is
refetched in the background in the second half of its life, so no Preflight
waits for a refresh (one used to hold every call in flight for the run
summary's ~50 ms every `SIGNAL_CACHE_SECONDS`), and none is older than
`SIGNAL_CACHE_SECONDS`.

Backtest results (pipeline `GetBacktestResult`): `metrics_json` is read as
`{"invoices": N, "old": {"incident_count": a, "severity": {"S1": {"count": s}}},
"new": {...}}` as the pipeline stores it (flat `old_incident_count` /
`new_incident_count` are accepted too); the backtest counts as complete when
its job is DONE.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.common.v1 import common_pb2
from ptf.health.v1 import health_pb2, health_pb2_grpc
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

from services.gate.domain.signals import (
    BacktestSignal,
    LatencyPercentiles,
    Readiness,
    RunCounts,
    RunErrors,
    RunLatency,
    RunQueue,
    RunRates,
    RunSummary,
    Signals,
    SignalSource,
    Unavailable,
)
from services.gate.domain.spec import ReleaseSpec
from services.runtime.cache import TtlCache

log = logging.getLogger(__name__)

T = TypeVar("T")
# (tenant, window seconds) of a run summary.
_SummaryKey = tuple[str | None, int]


@dataclass(frozen=True)
class SignalEndpoints:
    """The async stubs of the three signal sources."""

    health: health_pb2_grpc.HealthServiceAsyncStub
    telemetry: telemetry_pb2_grpc.TelemetryServiceAsyncStub
    pipeline: pipeline_pb2_grpc.PipelineServiceAsyncStub


class SignalSources:
    """Gathers the `Signals` a release spec is judged on."""

    def __init__(
        self,
        endpoints: SignalEndpoints,
        *,
        timeout_seconds: float,
        cache_seconds: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._endpoints = endpoints
        self._timeout = timeout_seconds
        # One cache per source, so each holds one type; readiness has no parameters.
        self._readiness_cache: TtlCache[tuple[()], Readiness | Unavailable] = TtlCache(
            cache_seconds, clock=monotonic, refresh_ahead=True
        )
        self._summaries: TtlCache[_SummaryKey, RunSummary | Unavailable] = TtlCache(
            cache_seconds, clock=monotonic, refresh_ahead=True
        )
        self._backtests: TtlCache[str, BacktestSignal | Unavailable] = TtlCache(
            cache_seconds, clock=monotonic, refresh_ahead=True
        )

    async def gather(self, spec: ReleaseSpec, now: datetime) -> Signals:
        """Fetch every source the spec needs, concurrently; never raises for a source failure."""
        backtest_id = spec.backtest_id
        summary_key = (spec.tenant_id, spec.window_seconds)

        def summary() -> Awaitable[RunSummary | Unavailable]:
            return self._run_summary(spec.tenant_id, spec.window_seconds, now)

        cached = self._all_fresh(summary_key, summary, backtest_id)
        if cached is not None:
            return cached
        readiness, run_summary, backtest = await asyncio.gather(
            self._readiness_cache.get((), self._readiness),
            self._summaries.get(summary_key, summary),
            self._backtest_or_none(backtest_id),
        )
        return Signals(readiness=readiness, run_summary=run_summary, backtest=backtest)

    def _all_fresh(
        self,
        summary_key: _SummaryKey,
        summary: Callable[[], Awaitable[RunSummary | Unavailable]],
        backtest_id: str | None,
    ) -> Signals | None:
        """The signals straight from the cache when every one is fresh: the common case
        under load, answered without starting a task per source (but a refresh ahead)."""
        readiness = self._readiness_cache.fresh((), self._readiness)
        summary_value = self._summaries.fresh(summary_key, summary)
        backtest = (
            None
            if backtest_id is None
            else self._backtests.fresh(backtest_id, lambda: self._backtest(backtest_id))
        )
        if (
            readiness is None
            or summary_value is None
            or (backtest_id is not None and backtest is None)
        ):
            return None
        return Signals(readiness=readiness, run_summary=summary_value, backtest=backtest)

    async def _backtest_or_none(
        self, backtest_id: str | None
    ) -> BacktestSignal | Unavailable | None:
        if backtest_id is None:
            return None
        return await self._backtests.get(backtest_id, lambda: self._backtest(backtest_id))

    async def _readiness(self) -> Readiness | Unavailable:
        return await _fetch(
            SignalSource.READINESS,
            lambda: self._endpoints.health.Ready(health_pb2.ReadyRequest(), timeout=self._timeout),
            readiness_from_proto,
        )

    async def _run_summary(
        self, tenant_id: str | None, window_seconds: int, now: datetime
    ) -> RunSummary | Unavailable:
        request = telemetry_pb2.GetRunSummaryRequest(
            period=common_pb2.TimeWindow(
                start=_timestamp(now - timedelta(seconds=window_seconds)), end=_timestamp(now)
            ),
            tenant_id=tenant_id or "",
        )

        def convert(reply: telemetry_pb2.RunSummary) -> RunSummary:
            summary = run_summary_from_proto(reply)
            if tenant_id and summary.tenant_id and summary.tenant_id != tenant_id:
                raise ValueError(f"summary is for tenant {summary.tenant_id!r}, not {tenant_id!r}")
            return summary

        return await _fetch(
            SignalSource.RUN_SUMMARY,
            lambda: self._endpoints.telemetry.GetRunSummary(request, timeout=self._timeout),
            convert,
        )

    async def _backtest(self, backtest_id: str) -> BacktestSignal | Unavailable:
        request = pipeline_pb2.GetBacktestResultRequest(backtest_id=backtest_id, limit=1)
        return await _fetch(
            SignalSource.BACKTEST,
            lambda: self._endpoints.pipeline.GetBacktestResult(request, timeout=self._timeout),
            lambda reply: backtest_from_proto(backtest_id, reply),
        )


R = TypeVar("R")


async def _fetch(
    source: SignalSource,
    call: Callable[[], Awaitable[R]],
    convert: Callable[[R], T],
) -> T | Unavailable:
    """One RPC and its conversion; every failure is `Unavailable` (logged, never raised)."""
    try:
        reply = await call()
    except grpc.aio.AioRpcError as exc:
        error = f"{exc.code().name}: {exc.details() or 'no details'}"
        log.warning("signal source %s unavailable: %s", source.value, error)
        return Unavailable(source, error)
    except Exception as exc:  # whatever breaks, a source is missing data, never a crash
        log.warning(
            "signal source %s unavailable: %s", source.value, type(exc).__name__, exc_info=True
        )
        return Unavailable(source, type(exc).__name__)
    try:
        return convert(reply)
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("signal source %s sent a malformed reply: %s", source.value, exc)
        return Unavailable(source, f"malformed reply: {exc}")


def _timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def _optional(message: Any, name: str) -> float | None:
    if not message.HasField(name):
        return None
    value = float(getattr(message, name))
    if not math.isfinite(value):
        raise ValueError(f"{name} is not finite")
    return value


_CHECK_ERROR = health_pb2.CHECK_STATUS_ERROR


def readiness_from_proto(reply: health_pb2.ReadyResponse) -> Readiness:
    """The health `ReadyResponse` reduced to what the gate judges."""
    checks = {check.name: check for check in reply.checks}
    config = checks.get("config")
    queue = checks.get("queue")
    queue_stuck = False
    if queue is not None:
        flag = queue.details.get("stuck_detected", "").strip().lower()
        queue_stuck = flag == "true" if flag else queue.status == _CHECK_ERROR
    return Readiness(
        ready=reply.ready,
        config_ok=config is None or config.status != _CHECK_ERROR,
        queue_stuck=queue_stuck,
        failing_checks=tuple(reply.failing_checks),
        build_id=reply.build_id,
        config_hash=reply.config_hash,
    )


def _latency(message: telemetry_pb2.LatencyPercentiles) -> LatencyPercentiles:
    return LatencyPercentiles(
        p50=_optional(message, "p50"),
        p95=_optional(message, "p95"),
        p99=_optional(message, "p99"),
        sample_count=message.sample_count,
    )


def run_summary_from_proto(reply: telemetry_pb2.RunSummary) -> RunSummary:
    """The telemetry `RunSummary`; raises `ValueError` for negative counts or bad numbers."""
    c, r, e, q = reply.counts, reply.rates, reply.errors, reply.queue
    return RunSummary(
        counts=RunCounts(
            total_invoices=c.total_invoices,
            incident_count=c.incident_count,
            s1_count=c.s1_count,
            s2_count=c.s2_count,
            ocr_suspect_count=c.ocr_suspect_count,
            resolved_count=c.resolved_count,
            feedback_count=c.feedback_count,
            accept_rounding_count=c.accept_rounding_count,
        ),
        rates=RunRates(
            mismatch_rate=_optional(r, "mismatch_rate"),
            s1_rate=_optional(r, "s1_rate"),
            ocr_suspect_rate=_optional(r, "ocr_suspect_rate"),
            feedback_coverage=_optional(r, "feedback_coverage"),
            hint_accuracy_rate=_optional(r, "hint_accuracy_rate"),
        ),
        latency=RunLatency(
            pipeline_total_ms=_latency(reply.latency.pipeline_total_ms),
            extraction_ms=_latency(reply.latency.extraction_ms),
        ),
        errors=RunErrors(
            by_code=MappingProxyType(dict(e.by_code)),
            total_4xx=e.total_4xx,
            total_5xx=e.total_5xx,
            total_requests=e.total_requests,
        ),
        queue=RunQueue(
            current_depth=q.current_depth,
            max_depth_in_period=q.max_depth_in_period,
            stuck_detected=q.stuck_detected,
        ),
        tenant_id=reply.tenant_id,
        generated_at=(
            reply.generated_at.ToDatetime(tzinfo=UTC) if reply.HasField("generated_at") else None
        ),
    )


def _count(data: Mapping[str, Any], *path: str) -> int:
    value: Any = data
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise KeyError(".".join(path))
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{'.'.join(path)} must be an integer")
    return value


def _first_count(data: Mapping[str, Any], *paths: tuple[str, ...]) -> int:
    for path in paths[:-1]:
        try:
            return _count(data, *path)
        except KeyError:
            continue
    return _count(data, *paths[-1])


def _s1_count(metrics: Mapping[str, Any], side: str) -> int:
    """`<side>.severity.S1.count` of the pipeline's metrics; 0 for a result without it."""
    try:
        return _count(metrics, side, "severity", "S1", "count")
    except KeyError:
        return 0


def backtest_from_proto(
    backtest_id: str, reply: pipeline_pb2.BacktestResult
) -> BacktestSignal | Unavailable:
    """A DONE backtest's counts; a backtest not DONE has no result yet, so its signal is
    unavailable (SIGNAL_UNAVAILABLE, issue 14)."""
    complete = reply.job.state == pipeline_pb2.JOB_STATE_DONE
    result_id = reply.job.backtest_id or backtest_id
    if not complete:
        state = pipeline_pb2.JobState.Name(reply.job.state).removeprefix("JOB_STATE_")
        return Unavailable(SignalSource.BACKTEST, f"backtest {result_id} is {state}, not DONE")
    metrics = json.loads(reply.metrics_json or "{}")
    if not isinstance(metrics, Mapping):
        raise ValueError("metrics_json must be a JSON object")
    return BacktestSignal(
        backtest_id=result_id,
        complete=True,
        invoices=_first_count(metrics, ("invoices",), ("total_invoices",)),
        old_incident_count=_first_count(
            metrics, ("old", "incident_count"), ("old_incident_count",)
        ),
        new_incident_count=_first_count(
            metrics, ("new", "incident_count"), ("new_incident_count",)
        ),
        old_s1_count=_s1_count(metrics, "old"),
        new_s1_count=_s1_count(metrics, "new"),
        result_hash=reply.result_hash,
    )
