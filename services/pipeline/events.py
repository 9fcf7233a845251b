"""Telemetry events the pipeline emits and their payloads (the telemetry service's contract).

Each event is written to the outbox in the same transaction as the change it
describes (see `outbox.py`); these builders only shape payloads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid4

from services.pipeline.domain import ProcessingResult

MAX_PROVIDER_LENGTH = 128


class EventType(StrEnum):
    """Names match `ptf.telemetry.v1.EventType` without the `EVENT_TYPE_` prefix."""

    INVOICE_PROCESSED = "INVOICE_PROCESSED"
    INCIDENT_CREATED = "INCIDENT_CREATED"
    INCIDENT_RESOLVED = "INCIDENT_RESOLVED"
    FEEDBACK_SUBMITTED = "FEEDBACK_SUBMITTED"
    HTTP_REQUEST = "HTTP_REQUEST"
    QUEUE_SAMPLE = "QUEUE_SAMPLE"
    JOB_EXHAUSTED = "JOB_EXHAUSTED"


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class OutboxEvent:
    """One telemetry event; `event_id` is its idempotency key all the way to telemetry."""

    event_type: EventType
    tenant_id: str
    payload: Mapping[str, Any]
    event_id: UUID = field(default_factory=uuid4)
    occurred_at: datetime = field(default_factory=_now)


def _json_default(value: object) -> Any:
    if isinstance(value, Decimal):
        return float(value) if value.is_finite() else None
    if isinstance(value, UUID | datetime):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def encode_json(value: object) -> str:
    """Compact JSON for payloads and results; non-finite numbers are refused."""
    return json.dumps(value, default=_json_default, allow_nan=False, separators=(",", ":"))


def _provider(provider: str | None) -> str:
    """Telemetry keeps provider names of at most 128 characters (the domain allows 200)."""
    return (provider or "")[:MAX_PROVIDER_LENGTH]


def invoice_processed(
    tenant_id: str,
    result: ProcessingResult,
    *,
    invoice_id: UUID,
    job_id: UUID,
    pipeline_total_ms: float,
    extraction_ms: float | None,
) -> OutboxEvent:
    """INVOICE_PROCESSED; `mismatch_ratio` is set only for a mismatch with a bounded ratio."""
    mismatch = result.mismatch
    incident = result.incident
    ratio = mismatch.ratio
    return OutboxEvent(
        EventType.INVOICE_PROCESSED,
        tenant_id,
        {
            "invoice_id": str(invoice_id),
            "job_id": str(job_id),
            "provider": _provider(result.extraction.provider),
            "pipeline_total_ms": round(pipeline_total_ms, 3),
            "extraction_ms": None if extraction_ms is None else round(extraction_ms, 3),
            "quality_grade": result.quality.grade.value,
            "flags": [flag.code.value for flag in result.flags],
            "has_mismatch": mismatch.has_mismatch,
            "severity": incident.severity.value if incident else None,
            "ocr_suspect": result.ocr_suspect,
            "accept_rounding": result.accept_rounding,
            "mismatch_ratio": (
                float(ratio) if mismatch.has_mismatch and ratio.is_finite() else None
            ),
            "primary_flag": incident.primary_flag.value if incident else None,
            "action_class": incident.action_hint.action_class.value if incident else None,
        },
    )


def incident_created(
    tenant_id: str, incident_id: UUID, invoice_id: UUID, result: ProcessingResult
) -> OutboxEvent:
    """INCIDENT_CREATED for the incident drafted from `result`."""
    incident = result.incident
    if incident is None:
        raise ValueError("result has no incident")
    return OutboxEvent(
        EventType.INCIDENT_CREATED,
        tenant_id,
        {
            "incident_id": str(incident_id),
            "invoice_id": str(invoice_id),
            "provider": _provider(incident.provider),
            "severity": incident.severity.value,
            "primary_flag": incident.primary_flag.value,
            "action_class": incident.action_hint.action_class.value,
            "ocr_suspect": result.ocr_suspect,
        },
    )


def incident_resolved(tenant_id: str, incident_id: UUID, reason: str) -> OutboxEvent:
    return OutboxEvent(
        EventType.INCIDENT_RESOLVED,
        tenant_id,
        {"incident_id": str(incident_id), "resolution_reason": reason},
    )


def feedback_submitted(
    tenant_id: str, incident_id: UUID, hint_correct: bool, actual_root_cause: str
) -> OutboxEvent:
    return OutboxEvent(
        EventType.FEEDBACK_SUBMITTED,
        tenant_id,
        {
            "incident_id": str(incident_id),
            "hint_correct": hint_correct,
            "actual_root_cause": actual_root_cause,
        },
    )


def job_exhausted(tenant_id: str, job_id: UUID) -> OutboxEvent:
    return OutboxEvent(EventType.JOB_EXHAUSTED, tenant_id, {"job_id": str(job_id)})


def http_request(
    tenant_id: str, route: str, method: str, status: int, duration_ms: float
) -> OutboxEvent:
    """HTTP_REQUEST; `route` is the route template, never the raw path."""
    return OutboxEvent(
        EventType.HTTP_REQUEST,
        tenant_id,
        {
            "route": route,
            "method": method,
            "status": status,
            "duration_ms": round(duration_ms, 3),
        },
    )


def queue_sample(tenant_id: str, depth: int, stuck: bool) -> OutboxEvent:
    return OutboxEvent(EventType.QUEUE_SAMPLE, tenant_id, {"depth": depth, "stuck": stuck})


def outbox_rows(
    events: Sequence[OutboxEvent],
) -> list[tuple[UUID, str, str, datetime, str]]:
    """Rows for `INSERT INTO pipeline_outbox (event_id, tenant_id, event_type, occurred_at,
    payload)`."""
    return [
        (e.event_id, e.tenant_id, e.event_type.value, e.occurred_at, encode_json(e.payload))
        for e in events
    ]
