"""RecordEvents: batched, idempotent by event_id, each event validated, bad ones reported."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import grpc
import pytest
from ptf.telemetry.v1 import telemetry_pb2

from services.runtime.errors import ERROR_CODE_METADATA
from services.telemetry.domain.events import MAX_BATCH_EVENTS
from tests.support.services import ServiceHandle
from tests.telemetry.factories import (
    Slot,
    event,
    incident,
    invoice,
    new_tenant,
    queue_sample,
    record,
    timestamp,
)


async def _stored(pg: asyncpg.Pool, tenant: str) -> int:
    return await pg.fetchval("SELECT count(*) FROM telemetry_events WHERE tenant_id = $1", tenant)


async def test_valid_batch_is_stored_and_counted_as_accepted(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    tenant = new_tenant()
    events = [
        event("INVOICE_PROCESSED", tenant, invoice(), slot.at(1)),
        event("INCIDENT_CREATED", tenant, incident(), slot.at(2)),
    ]
    response = await record(telemetry.service_channel, events)
    assert (response.accepted, response.duplicates, list(response.rejected)) == (2, 0, [])
    assert await _stored(pg, tenant) == 2


async def test_same_batch_twice_is_stored_once(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    tenant = new_tenant()
    events = [event("INVOICE_PROCESSED", tenant, invoice(), slot.at(i)) for i in range(3)]
    await record(telemetry.service_channel, events)
    again = await record(telemetry.service_channel, events)
    assert (again.accepted, again.duplicates) == (0, 3)
    assert await _stored(pg, tenant) == 3


async def test_duplicate_id_inside_one_batch_is_stored_once(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    tenant = new_tenant()
    event_id = str(uuid.uuid4())
    same = event("INVOICE_PROCESSED", tenant, invoice(), slot.at(1), event_id=event_id)
    response = await record(telemetry.service_channel, [same, same])
    assert (response.accepted, response.duplicates) == (1, 1)
    assert await _stored(pg, tenant) == 1


async def test_bad_event_is_rejected_with_its_index_and_good_ones_are_kept(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    tenant = new_tenant()
    bad = invoice(quality_grade="EXCELLENT")
    events = [
        event("INVOICE_PROCESSED", tenant, invoice(), slot.at(1)),
        event("INVOICE_PROCESSED", tenant, bad, slot.at(2)),
        event("INVOICE_PROCESSED", tenant, invoice(), slot.at(3)),
    ]
    response = await record(telemetry.service_channel, events)
    assert response.accepted == 2
    assert [(r.index, r.error.error_code, r.error.field) for r in response.rejected] == [
        (1, "INVALID_FIELD", "payload.quality_grade")
    ]
    assert await _stored(pg, tenant) == 2


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"event_id": "not-a-uuid"}, "INVALID_EVENT_ID", "event_id"),
        ({"type": 0}, "UNKNOWN_EVENT_TYPE", "type"),
        ({"type": 99}, "UNKNOWN_EVENT_TYPE", "type"),
        ({"tenant_id": "Tenant A"}, "INVALID_TENANT_ID", "tenant_id"),
        ({"tenant_id": ""}, "INVALID_TENANT_ID", "tenant_id"),
        ({"payload_json": "{"}, "PAYLOAD_NOT_JSON", "payload_json"),
        ({"payload_json": "[1, 2]"}, "PAYLOAD_NOT_OBJECT", "payload_json"),
        ({"payload_json": '{"x": NaN}'}, "PAYLOAD_NOT_JSON", "payload_json"),
        ({"payload_json": '{"job_id": "a"}'}, "MISSING_FIELD", "payload.invoice_id"),
        ({"payload_json": '{"a": "' + "x" * 20000 + '"}'}, "PAYLOAD_TOO_LARGE", "payload_json"),
    ],
)
async def test_malformed_event_is_rejected_with_a_stable_code_and_not_stored(
    telemetry: ServiceHandle,
    pg: asyncpg.Pool,
    slot: Slot,
    change: dict[str, object],
    code: str,
    field: str,
) -> None:
    tenant = new_tenant()
    message = event("INVOICE_PROCESSED", tenant, invoice(), slot.at(1))
    for name, value in change.items():
        setattr(message, name, value)
    response = await record(telemetry.service_channel, [message])
    assert response.accepted == 0
    assert [(r.index, r.error.error_code, r.error.field) for r in response.rejected] == [
        (0, code, field)
    ]
    assert await _stored(pg, tenant) == 0


async def test_event_without_occurred_at_is_rejected(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    tenant = new_tenant()
    message = event("INVOICE_PROCESSED", tenant, invoice(), slot.at(1))
    message.ClearField("occurred_at")
    response = await record(telemetry.service_channel, [message])
    assert [r.error.error_code for r in response.rejected] == ["MISSING_OCCURRED_AT"]
    assert await _stored(pg, tenant) == 0


async def test_event_from_the_future_is_rejected(
    telemetry: ServiceHandle, pg: asyncpg.Pool
) -> None:
    tenant = new_tenant()
    future = datetime.now(UTC) + timedelta(days=1)
    response = await record(
        telemetry.service_channel, [event("INVOICE_PROCESSED", tenant, invoice(), future)]
    )
    assert [r.error.error_code for r in response.rejected] == ["OCCURRED_AT_IN_FUTURE"]
    assert await _stored(pg, tenant) == 0


async def test_system_wide_event_may_have_no_tenant(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    message = event("QUEUE_SAMPLE", "", queue_sample(3), slot.at(1))
    response = await record(telemetry.service_channel, [message])
    assert response.accepted == 1
    row = await pg.fetchrow(
        "SELECT tenant_id, payload FROM telemetry_events WHERE event_id = $1",
        uuid.UUID(message.event_id),
    )
    assert row is not None
    assert row["tenant_id"] == ""


async def test_batch_over_the_limit_is_refused_whole(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    tenant = new_tenant()
    events = [
        event("QUEUE_SAMPLE", tenant, queue_sample(1), slot.at(0))
        for _ in range(MAX_BATCH_EVENTS + 1)
    ]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(telemetry.service_channel, events)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(caught.value.trailing_metadata() or ())[ERROR_CODE_METADATA] == "BATCH_TOO_LARGE"
    assert await _stored(pg, tenant) == 0


async def test_oversized_request_is_refused_before_anything_is_written(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    tenant = new_tenant()
    big = invoice(provider="p" * 100, flags=["F" * 60] * 60)
    events = [event("INVOICE_PROCESSED", tenant, big, slot.at(0)) for _ in range(1000)]
    request_size = telemetry_pb2.RecordEventsRequest(events=events).ByteSize()
    assert request_size > 4 * 1024 * 1024
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(telemetry.service_channel, events)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert await _stored(pg, tenant) == 0


async def test_empty_batch_is_a_no_op(telemetry: ServiceHandle) -> None:
    response = await record(telemetry.service_channel, [])
    assert (response.accepted, response.duplicates, len(response.rejected)) == (0, 0, 0)


async def test_stored_payload_keeps_contract_fields_only(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    tenant = new_tenant()
    message = event("QUEUE_SAMPLE", tenant, {**queue_sample(4), "extra": "x"}, slot.at(0))
    await record(telemetry.service_channel, [message])
    payload = await pg.fetchval(
        "SELECT payload::text FROM telemetry_events WHERE event_id = $1",
        uuid.UUID(message.event_id),
    )
    assert payload == '{"depth": 4, "stuck": false}'


async def test_occurred_at_is_stored_as_sent(
    telemetry: ServiceHandle, pg: asyncpg.Pool, slot: Slot
) -> None:
    tenant = new_tenant()
    message = event("QUEUE_SAMPLE", tenant, queue_sample(1), slot.at(7))
    message.occurred_at.CopyFrom(timestamp(slot.at(7)))
    await record(telemetry.service_channel, [message])
    stored = await pg.fetchval(
        "SELECT occurred_at FROM telemetry_events WHERE event_id = $1",
        uuid.UUID(message.event_id),
    )
    assert stored == slot.at(7)
