"""Builders of telemetry events and windows for the telemetry tests.

Every test works in its own time slot (`TimeSlots`), ten days apart, and its
own tenant, so tests sharing the run's database never see each other's
events, even in all-tenant queries.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.common.v1 import common_pb2
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

FIRST_SLOT = datetime(2001, 1, 1, tzinfo=UTC)
SLOT_SPACING = timedelta(days=10)


@dataclass(frozen=True)
class Slot:
    """A test's private time range: a 7-day baseline then the 1-day report window."""

    baseline_start: datetime

    @property
    def start(self) -> datetime:
        return self.baseline_start + timedelta(days=7)

    @property
    def end(self) -> datetime:
        return self.start + timedelta(days=1)

    def at(self, minutes: float = 0) -> datetime:
        """An instant `minutes` into the report window."""
        return self.start + timedelta(minutes=minutes)

    def in_baseline(self, minutes: float = 0) -> datetime:
        return self.baseline_start + timedelta(minutes=minutes)

    def query(self, **extra: str) -> dict[str, str]:
        return {"since": iso(self.start), "until": iso(self.end), **extra}

    def proto_window(self) -> common_pb2.TimeWindow:
        return common_pb2.TimeWindow(start=timestamp(self.start), end=timestamp(self.end))


class TimeSlots:
    """Hands out disjoint slots for one test session."""

    def __init__(self) -> None:
        self._numbers: Iterator[int] = itertools.count()

    def next(self) -> Slot:
        return Slot(FIRST_SLOT + next(self._numbers) * SLOT_SPACING)


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


def iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def timestamp(value: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def event(
    kind: str,
    tenant: str,
    payload: Mapping[str, Any],
    at: datetime,
    *,
    event_id: str | None = None,
) -> telemetry_pb2.Event:
    return telemetry_pb2.Event(
        event_id=event_id or str(uuid.uuid4()),
        type=telemetry_pb2.EventType.Value(f"EVENT_TYPE_{kind}"),
        tenant_id=tenant,
        occurred_at=timestamp(at),
        payload_json=json.dumps(payload),
    )


def invoice(**changes: Any) -> dict[str, Any]:
    payload = {
        "invoice_id": f"inv-{uuid.uuid4().hex[:8]}",
        "job_id": f"job-{uuid.uuid4().hex[:8]}",
        "provider": "ck-bogazici",
        "pipeline_total_ms": 2100.0,
        "extraction_ms": None,
        "quality_grade": "OK",
        "flags": [],
        "has_mismatch": False,
        "severity": None,
        "ocr_suspect": False,
        "accept_rounding": False,
        "mismatch_ratio": None,
        "primary_flag": None,
        "action_class": None,
    }
    payload.update(changes)
    return payload


def mismatch_invoice(ratio: float, severity: str = "S2", **changes: Any) -> dict[str, Any]:
    return invoice(
        quality_grade="BAD",
        flags=["INVOICE_TOTAL_MISMATCH"],
        has_mismatch=True,
        severity=severity,
        mismatch_ratio=ratio,
        primary_flag="INVOICE_TOTAL_MISMATCH",
        action_class="VERIFY_INVOICE_LOGIC",
        **changes,
    )


def incident(
    severity: str = "S2",
    *,
    ocr_suspect: bool = False,
    provider: str = "ck-bogazici",
    **changes: Any,
) -> dict[str, Any]:
    payload = {
        "incident_id": f"inc-{uuid.uuid4().hex[:8]}",
        "invoice_id": f"inv-{uuid.uuid4().hex[:8]}",
        "provider": provider,
        "severity": severity,
        "primary_flag": "INVOICE_TOTAL_MISMATCH",
        "action_class": "VERIFY_OCR" if ocr_suspect else "VERIFY_INVOICE_LOGIC",
        "ocr_suspect": ocr_suspect,
    }
    payload.update(changes)
    return payload


def resolved() -> dict[str, Any]:
    return {"incident_id": f"inc-{uuid.uuid4().hex[:8]}", "resolution_reason": "fixed"}


def feedback(hint_correct: bool) -> dict[str, Any]:
    return {
        "incident_id": f"inc-{uuid.uuid4().hex[:8]}",
        "hint_correct": hint_correct,
        "actual_root_cause": None,
    }


def http_request(status: int, route: str = "/full-process") -> dict[str, Any]:
    return {"route": route, "method": "POST", "status": status, "duration_ms": 12.0}


def queue_sample(depth: int, stuck: bool = False) -> dict[str, Any]:
    return {"depth": depth, "stuck": stuck}


def gate_decision(
    allowed: bool,
    reasons: Iterable[str] = (),
    *,
    contract_breach: bool = False,
    audit_write_failed: bool = False,
) -> dict[str, Any]:
    return {
        "release": "rel-1",
        "allowed": allowed,
        "reasons": list(reasons),
        "contract_breach": contract_breach,
        "audit_write_failed": audit_write_failed,
    }


# The dev service key every test stack seeds: what the gate presents for its signal reads.
SERVICE_HEADERS = {"X-API-Key": "dev-service-key"}


def stub(channel: grpc.aio.Channel) -> telemetry_pb2_grpc.TelemetryServiceStub:
    return telemetry_pb2_grpc.TelemetryServiceStub(channel)


async def record(
    channel: grpc.aio.Channel, events: Iterable[telemetry_pb2.Event]
) -> telemetry_pb2.RecordEventsResponse:
    request = telemetry_pb2.RecordEventsRequest(events=list(events))
    return await stub(channel).RecordEvents(request)


async def record_all(channel: grpc.aio.Channel, events: list[telemetry_pb2.Event]) -> None:
    """Record in batches and check that every event was accepted."""
    for first in range(0, len(events), 500):
        batch = events[first : first + 500]
        response = await record(channel, batch)
        assert list(response.rejected) == []
        assert response.accepted == len(batch)
