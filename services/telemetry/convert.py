"""Translations between `ptf.telemetry.v1` messages and telemetry domain values."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp
from ptf.common.v1 import common_pb2
from ptf.telemetry.v1 import telemetry_pb2

from services.runtime.metric_stores import (
    OVERRIDE_RESULTS,
    PreflightMetric,
    derive_override_result,
    normalize_verdict,
)
from services.telemetry.domain.errors import TelemetryError
from services.telemetry.domain.events import RawEvent, UnreadableInstant
from services.telemetry.domain.summary import Percentiles, RunSummary
from services.telemetry.domain.window import TimeWindow

_EVENT_TYPE_PREFIX = "EVENT_TYPE_"
_REASON = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
MAX_PREFLIGHT_REASONS = 32
MAX_SPEC_HASH_LENGTH = 128
MAX_PREFLIGHT_BATCH = 1000


def _readable(message: Timestamp) -> datetime | UnreadableInstant:
    """The timestamp as an aware UTC datetime; nanos or seconds out of range are kept as
    an `UnreadableInstant` (the wire allows any int64/int32, a datetime years 1-9999)."""
    try:
        return message.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        return UnreadableInstant(str(exc))


def timestamp_or_none(message: Timestamp, present: bool, field: str) -> datetime | None:
    """The timestamp as an aware UTC datetime, or None when the field is unset.

    A timestamp no datetime can hold is the caller's error (400 INVALID_TIME on `field`).
    """
    if not present:
        return None
    value = _readable(message)
    if isinstance(value, UnreadableInstant):
        raise _bad("INVALID_TIME", f"{field} is not a valid timestamp: {value.reason}", field)
    return value


def to_timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def raw_event(event: telemetry_pb2.Event) -> RawEvent:
    """A proto event as the domain sees it; an unknown enum number becomes an unknown name."""
    try:
        name = telemetry_pb2.EventType.Name(event.type).removeprefix(_EVENT_TYPE_PREFIX)
    except ValueError:
        name = f"#{event.type}"
    return RawEvent(
        event_id=event.event_id,
        event_type=name,
        tenant_id=event.tenant_id,
        occurred_at=_readable(event.occurred_at) if event.HasField("occurred_at") else None,
        payload_json=event.payload_json,
    )


def window_bounds(
    window: common_pb2.TimeWindow, present: bool
) -> tuple[datetime | None, datetime | None]:
    if not present:
        return None, None
    return (
        timestamp_or_none(window.start, window.HasField("start"), "period.start"),
        timestamp_or_none(window.end, window.HasField("end"), "period.end"),
    )


def _bad(code: str, message: str, field: str) -> TelemetryError:
    return TelemetryError(code, message, field=field)


def preflight_metric(
    request: telemetry_pb2.RecordPreflightRequest, now: datetime
) -> PreflightMetric:
    """Validate a `RecordPreflightRequest`; raise `TelemetryError` naming the bad field."""
    if request.verdict == telemetry_pb2.VERDICT_UNSPECIFIED:
        raise _bad("INVALID_VERDICT", "verdict is required", "verdict")
    try:
        verdict = normalize_verdict(telemetry_pb2.Verdict.Name(request.verdict))
    except ValueError:
        raise _bad("INVALID_VERDICT", "verdict is not a known value", "verdict") from None
    if not 0 <= request.exit_code <= 255:
        raise _bad("INVALID_EXIT_CODE", "exit_code must be in 0..255", "exit_code")
    if len(request.reasons) > MAX_PREFLIGHT_REASONS:
        raise _bad("TOO_MANY_REASONS", f"at most {MAX_PREFLIGHT_REASONS} reasons", "reasons")
    reasons = tuple(r.removeprefix("BLOCK_REASON_CODE_") for r in request.reasons)
    if not all(_REASON.fullmatch(r) for r in reasons):
        raise _bad("INVALID_REASON", "reasons are BlockReasonCode names", "reasons")
    if not math.isfinite(request.duration_ms) or request.duration_ms < 0:
        raise _bad("INVALID_DURATION", "duration_ms must be finite and >= 0", "duration_ms")
    if len(request.spec_hash) > MAX_SPEC_HASH_LENGTH:
        raise _bad("INVALID_SPEC_HASH", "spec_hash is too long", "spec_hash")
    result = request.override_result.strip().lower() or derive_override_result(
        override_attempted=request.override_applied,
        override_applied=request.override_applied,
        contract_breach=request.contract_breach,
        verdict_before_override=verdict,
    )
    if result not in OVERRIDE_RESULTS:
        raise _bad(
            "INVALID_OVERRIDE_RESULT",
            f"override_result must be one of {', '.join(OVERRIDE_RESULTS)}",
            "override_result",
        )
    timestamp = timestamp_or_none(request.timestamp, request.HasField("timestamp"), "timestamp")
    try:
        return PreflightMetric(
            timestamp=timestamp or now,
            verdict=verdict,
            exit_code=request.exit_code,
            reasons=reasons,
            override_applied=request.override_applied,
            contract_breach=request.contract_breach,
            override_result=result,
            duration_ms=request.duration_ms,
            spec_hash=request.spec_hash,
        )
    except ValueError as exc:
        raise _bad("INCONSISTENT_PREFLIGHT", str(exc), "override_result") from exc


def preflight_metrics(
    request: telemetry_pb2.RecordPreflightsRequest, now: datetime
) -> list[PreflightMetric]:
    """Validate a batch; the first invalid run refuses it whole, named `runs[i].field`."""
    if len(request.runs) > MAX_PREFLIGHT_BATCH:
        raise _bad("BATCH_TOO_LARGE", f"a batch holds at most {MAX_PREFLIGHT_BATCH} runs", "runs")
    metrics = []
    for index, run in enumerate(request.runs):
        try:
            metrics.append(preflight_metric(run, now))
        except TelemetryError as exc:
            raise _bad(exc.error_code, exc.message, f"runs[{index}].{exc.field}") from exc
    return metrics


def _latency(values: Percentiles) -> telemetry_pb2.LatencyPercentiles:
    return telemetry_pb2.LatencyPercentiles(
        p50=values.p50, p95=values.p95, p99=values.p99, sample_count=values.sample_count
    )


def _window(window: TimeWindow) -> common_pb2.TimeWindow:
    return common_pb2.TimeWindow(start=to_timestamp(window.start), end=to_timestamp(window.end))


def run_summary(summary: RunSummary) -> telemetry_pb2.RunSummary:
    """The typed proto run summary; rates and percentiles stay unset when undefined."""
    c, r, e, q = summary.counts, summary.rates, summary.errors, summary.queue
    return telemetry_pb2.RunSummary(
        generated_at=to_timestamp(summary.generated_at),
        period=_window(summary.window),
        tenant_id=summary.tenant_id or "",
        counts=telemetry_pb2.RunSummaryCounts(
            total_invoices=c.total_invoices,
            incident_count=c.incident_count,
            s1_count=c.s1_count,
            s2_count=c.s2_count,
            ocr_suspect_count=c.ocr_suspect_count,
            resolved_count=c.resolved_count,
            feedback_count=c.feedback_count,
            accept_rounding_count=c.accept_rounding_count,
        ),
        rates=telemetry_pb2.RunSummaryRates(
            mismatch_rate=r.mismatch_rate,
            s1_rate=r.s1_rate,
            ocr_suspect_rate=r.ocr_suspect_rate,
            feedback_coverage=r.feedback_coverage,
            hint_accuracy_rate=r.hint_accuracy_rate,
        ),
        latency=telemetry_pb2.RunSummaryLatency(
            pipeline_total_ms=_latency(summary.pipeline_total_ms),
            extraction_ms=_latency(summary.extraction_ms),
        ),
        errors=telemetry_pb2.RunSummaryErrors(
            by_code={str(code): n for code, n in e.by_code.items()},
            total_4xx=e.total_4xx,
            total_5xx=e.total_5xx,
            total_requests=e.total_requests,
        ),
        queue=telemetry_pb2.RunSummaryQueue(
            current_depth=q.current_depth,
            max_depth_in_period=q.max_depth_in_period,
            stuck_detected=q.stuck_detected,
        ),
    )
