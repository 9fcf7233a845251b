"""The events outbox and its relay to telemetry `RecordEvents` (SPEC §3.8)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from ptf.telemetry.v1 import telemetry_pb2

from services.pipeline.events import EventType, OutboxEvent, http_request, job_exhausted
from services.pipeline.outbox import EventBuffer, OutboxRelay, RelayError, write_events
from services.pipeline.service import make_definition, migrate
from services.pipeline.settings import RelaySettings
from services.pipeline.telemetry_client import TelemetryClient
from services.runtime.devservers import free_port
from services.telemetry.service import DEFINITION as TELEMETRY
from tests.conftest import StartService
from tests.pipeline.fakes import FakeTelemetry
from tests.pipeline.service_support import (
    Tenant,
    document,
    fast_settings,
    load_sample_tables,
    new_tenant,
    s2_document,
)
from tests.support.polling import eventually
from tests.support.services import ServiceHandle


async def _submit_three(svc: ServiceHandle, tenant: Tenant) -> None:
    for doc in (document(), document(), s2_document()):
        async with svc.http.post(
            f"/full-process?tenant_id={tenant.tenant_id}", json=doc, headers=tenant.headers
        ) as response:
            assert response.status == 200


async def _tenant_rows(pg: asyncpg.Pool, tenant_id: str) -> list[asyncpg.Record]:
    return await pg.fetch(
        "SELECT event_id, event_type, attempts, delivered_at FROM pipeline_outbox"
        " WHERE tenant_id = $1 AND event_type <> 'HTTP_REQUEST'",
        tenant_id,
    )


def _telemetry_on(
    start_service: StartService, port: int, metrics_dir: Path
) -> AbstractAsyncContextManager[ServiceHandle]:
    return start_service(TELEMETRY, PTF_GRPC_PORT=str(port), PTF_METRICS_DIR=str(metrics_dir))


@pytest.mark.slow
async def test_events_stay_pending_while_telemetry_is_down_and_are_delivered_once_it_returns(
    start_service: StartService, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    """Fault: the telemetry service is down while invoices are processed. Must: their events
    stay pending in the outbox while the relay keeps failing, and once a real telemetry
    service is back on its address every event is stored there exactly once."""
    port = free_port()
    async with start_service(
        make_definition(fast_settings()), PTF_TELEMETRY_ADDR=f"127.0.0.1:{port}"
    ) as pipeline:
        await load_sample_tables(pg)

        async def drained() -> bool:
            pending = await pg.fetchval(
                "SELECT count(*) FROM pipeline_outbox WHERE delivered_at IS NULL"
            )
            return bool(pending == 0)

        # Drain what earlier tests left pending, so this test's rows are the next batch.
        async with _telemetry_on(start_service, port, tmp_path):
            await eventually(drained, within=30)

        tenant = await new_tenant(pg)
        await _submit_three(pipeline, tenant)

        async def attempted_and_pending() -> bool:
            rows = await _tenant_rows(pg, tenant.tenant_id)
            return len(rows) == 4 and all(
                r["attempts"] >= 1 and r["delivered_at"] is None for r in rows
            )

        await eventually(attempted_and_pending, within=20)

        async with _telemetry_on(start_service, port, tmp_path):

            async def delivered() -> list[asyncpg.Record] | None:
                rows = await _tenant_rows(pg, tenant.tenant_id)
                return rows if all(r["delivered_at"] is not None for r in rows) else None

            rows = await eventually(delivered, within=30)
            stored = await pg.fetch(
                "SELECT event_id, event_type FROM telemetry_events"
                " WHERE tenant_id = $1 AND event_type <> 'HTTP_REQUEST'",
                tenant.tenant_id,
            )
    assert sorted(str(r["event_id"]) for r in stored) == sorted(str(r["event_id"]) for r in rows)
    types = sorted(r["event_type"] for r in stored)
    assert types == ["INCIDENT_CREATED", *["INVOICE_PROCESSED"] * 3]


async def test_each_event_reaches_telemetry_exactly_once(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    port = free_port()
    fake = FakeTelemetry()
    async with (
        fake.serving(port),
        start_service(
            make_definition(fast_settings()), PTF_TELEMETRY_ADDR=f"127.0.0.1:{port}"
        ) as pipeline,
    ):
        await load_sample_tables(pg)
        tenant = await new_tenant(pg)
        await _submit_three(pipeline, tenant)

        async def all_delivered() -> list[asyncpg.Record] | None:
            rows = await _tenant_rows(pg, tenant.tenant_id)
            return rows if rows and all(r["delivered_at"] for r in rows) else None

        rows = await eventually(all_delivered, within=30)
    assert [fake.received[str(r["event_id"])] for r in rows] == [1] * len(rows)


class _RecordingSender:
    """A RecordEvents stand-in that fails the first call after seeing the batch."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    async def __call__(
        self, events: Sequence[telemetry_pb2.Event], deadline_seconds: float
    ) -> telemetry_pb2.RecordEventsResponse:
        self.batches.append([e.event_id for e in events])
        if len(self.batches) == 1:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="telemetry restarting",
            )
        return telemetry_pb2.RecordEventsResponse(accepted=len(events))


@pytest.fixture
async def migrated(pg: asyncpg.Pool) -> asyncpg.Pool:
    await migrate(pg)
    return pg


async def test_a_failed_batch_is_resent_with_the_same_event_ids(
    migrated: asyncpg.Pool,
) -> None:
    """Fault: telemetry fails the call after receiving a batch. Must: the rows stay pending
    and the retry carries the same event ids, so telemetry deduplicates them."""
    pg = migrated
    tenant_id = f"outbox-{uuid.uuid4().hex[:12]}"
    events = [job_exhausted(tenant_id, uuid.uuid4()) for _ in range(3)]
    async with pg.acquire() as conn:
        await write_events(conn, events)
    sender = _RecordingSender()
    relay = OutboxRelay(pg, sender, RelaySettings(batch_size=1000))
    with pytest.raises(RelayError):
        await relay.deliver_once()
    await relay.deliver_once()
    ours = {str(e.event_id) for e in events}
    first, second = ({i for i in batch if i in ours} for batch in sender.batches)
    assert first == second == ours
    pending = await pg.fetchval(
        "SELECT count(*) FROM pipeline_outbox WHERE tenant_id = $1 AND delivered_at IS NULL",
        tenant_id,
    )
    assert pending == 0


async def _relay_until_delivered(pg: asyncpg.Pool, fake: FakeTelemetry, tenant_id: str) -> None:
    """Relay batches to `fake` until none of the tenant's rows is pending, then once more."""
    port = free_port()
    async with (
        fake.serving(port),
        grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        relay = OutboxRelay(
            pg, TelemetryClient(channel).record_events, RelaySettings(batch_size=1000)
        )
        while await pg.fetchval(
            "SELECT count(*) FROM pipeline_outbox WHERE tenant_id = $1 AND delivered_at IS NULL",
            tenant_id,
        ):
            await relay.deliver_once()
        await relay.deliver_once()


async def test_events_rejected_by_telemetry_are_kept_as_rejected_and_not_resent(
    migrated: asyncpg.Pool,
) -> None:
    """Fault: telemetry rejects an event as invalid. Must: the row is marked rejected with
    telemetry's error and is not sent again; the valid events of the batch are delivered."""
    pg = migrated
    fake = FakeTelemetry()
    fake.reject_types = {telemetry_pb2.EVENT_TYPE_HTTP_REQUEST}
    tenant_id = f"outbox-{uuid.uuid4().hex[:12]}"
    bad: OutboxEvent = http_request(tenant_id, "/full-process", "POST", 200, 1.0)
    good: OutboxEvent = job_exhausted(tenant_id, uuid.uuid4())
    async with pg.acquire() as conn:
        await write_events(conn, [bad, good])
    await _relay_until_delivered(pg, fake, tenant_id)
    rows: dict[str, Any] = {
        r["event_type"]: r
        for r in await pg.fetch(
            "SELECT event_type, rejected, last_error FROM pipeline_outbox WHERE tenant_id = $1",
            tenant_id,
        )
    }
    assert rows[EventType.HTTP_REQUEST.value]["rejected"] is True
    assert rows[EventType.HTTP_REQUEST.value]["last_error"].startswith("INVALID_EVENT")
    assert rows[EventType.JOB_EXHAUSTED.value]["rejected"] is False
    assert fake.received[str(bad.event_id)] == 1


async def test_a_row_no_event_can_carry_is_kept_as_rejected_and_the_rest_are_delivered(
    migrated: asyncpg.Pool,
) -> None:
    """Fault: an outbox row whose event type telemetry's contract does not know (a row from
    a newer release read by an older relay, or written by hand). Must: that row is marked
    rejected without being sent and the relay keeps delivering the rows around it; before,
    the relay task crashed on it, and on it again after every restart."""
    pg = migrated
    fake = FakeTelemetry()
    tenant_id = f"outbox-{uuid.uuid4().hex[:12]}"
    good: OutboxEvent = job_exhausted(tenant_id, uuid.uuid4())
    async with pg.acquire() as conn:
        await conn.execute(
            "INSERT INTO pipeline_outbox (event_id, tenant_id, event_type, occurred_at, payload)"
            " VALUES ($1, $2, 'FROM_THE_FUTURE', now(), '{}')",
            uuid.uuid4(),
            tenant_id,
        )
        await write_events(conn, [good])
    await _relay_until_delivered(pg, fake, tenant_id)
    rows = {
        r["event_type"]: (r["rejected"], (r["last_error"] or "").split(":")[0])
        for r in await pg.fetch(
            "SELECT event_type, rejected, last_error FROM pipeline_outbox WHERE tenant_id = $1",
            tenant_id,
        )
    }
    assert rows == {
        "FROM_THE_FUTURE": (True, "UNKNOWN_EVENT_TYPE"),
        EventType.JOB_EXHAUSTED.value: (False, ""),
    }
    assert fake.received[str(good.event_id)] == 1


async def _pending(pg: asyncpg.Pool, tenant_id: str) -> int:
    count = await pg.fetchval(
        "SELECT count(*) FROM pipeline_outbox WHERE tenant_id = $1 AND delivered_at IS NULL",
        tenant_id,
    )
    return int(count)


async def _running(relay: OutboxRelay) -> asyncio.Task[None]:
    task = asyncio.create_task(relay.run())
    await asyncio.sleep(0)
    return task


async def test_the_relay_delivers_committed_rows_on_its_timer_without_being_woken(
    migrated: asyncpg.Pool,
) -> None:
    """Must: rows committed with no call into the relay (no per-commit wake) are delivered
    by its timer flush."""
    pg = migrated
    tenant_id = f"outbox-{uuid.uuid4().hex[:12]}"
    fake = FakeTelemetry()
    port = free_port()
    async with fake.serving(port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        relay = OutboxRelay(
            pg, TelemetryClient(channel).record_events, RelaySettings(interval_seconds=0.1)
        )
        task = await _running(relay)
        try:
            events = [job_exhausted(tenant_id, uuid.uuid4()) for _ in range(3)]
            async with pg.acquire() as conn:
                await write_events(conn, events)
            await eventually(lambda: _zero(_pending(pg, tenant_id)), within=30)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [fake.received[str(e.event_id)] for e in events] == [1, 1, 1]


async def _zero(count: Awaitable[int]) -> bool:
    return await count == 0


async def test_the_relay_flushes_a_full_batch_before_its_timer(
    migrated: asyncpg.Pool,
) -> None:
    """Must: once a batch size of events was committed in this process the relay flushes
    them at once, though its timer would wait far longer (an hour here)."""
    pg = migrated
    tenant_id = f"outbox-{uuid.uuid4().hex[:12]}"
    fake = FakeTelemetry()
    port = free_port()
    settings = RelaySettings(batch_size=3, interval_seconds=3600.0)
    async with fake.serving(port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        relay = OutboxRelay(pg, TelemetryClient(channel).record_events, settings)
        task = await _running(relay)
        try:
            # The first pass drains what other tests left pending; then the relay sleeps.
            await eventually(lambda: _zero(_all_pending(pg)), within=60)
            events = [job_exhausted(tenant_id, uuid.uuid4()) for _ in range(3)]
            async with pg.acquire() as conn:
                await write_events(conn, events)
            relay.note_committed(len(events))
            await eventually(lambda: _zero(_pending(pg, tenant_id)), within=30)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [fake.received[str(e.event_id)] for e in events] == [1, 1, 1]


async def _all_pending(pg: asyncpg.Pool) -> int:
    count = await pg.fetchval("SELECT count(*) FROM pipeline_outbox WHERE delivered_at IS NULL")
    return int(count)


def _request_events(tenant_id: str, count: int) -> list[OutboxEvent]:
    return [http_request(tenant_id, "/full-process", "POST", 202, 1.0) for _ in range(count)]


async def _outbox_rows(pg: asyncpg.Pool, tenant_id: str) -> list[asyncpg.Record]:
    return await pg.fetch(
        "SELECT event_id, delivered_at, rejected, last_error FROM pipeline_outbox"
        " WHERE tenant_id = $1",
        tenant_id,
    )


async def test_buffered_request_events_reach_telemetry_directly_without_an_outbox_row(
    migrated: asyncpg.Pool,
) -> None:
    fake = FakeTelemetry()
    tenant_id = f"outbox-{uuid.uuid4().hex[:12]}"
    port = free_port()
    async with fake.serving(port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        buffer = EventBuffer(migrated, TelemetryClient(channel).record_events, RelaySettings())
        events = _request_events(tenant_id, 3)
        for event in events:
            buffer.add(event)
        assert await buffer.flush() == 3
    assert {e.event_id for e in fake.tenant_events(tenant_id)} == {str(e.event_id) for e in events}
    assert await _outbox_rows(migrated, tenant_id) == []


async def test_buffered_request_events_wait_in_the_outbox_while_telemetry_is_down(
    migrated: asyncpg.Pool,
) -> None:
    """Fault: nothing listens where telemetry should be. Must: the batch becomes pending
    outbox rows, which the relay delivers once telemetry is back, each event once."""
    fake = FakeTelemetry()
    tenant_id = f"outbox-{uuid.uuid4().hex[:12]}"
    port = free_port()
    events = _request_events(tenant_id, 4)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        settings = RelaySettings(rpc_timeout_seconds=1.0)
        buffer = EventBuffer(migrated, TelemetryClient(channel).record_events, settings)
        for event in events:
            buffer.add(event)
        assert await buffer.flush() == 4
    pending = await _outbox_rows(migrated, tenant_id)
    assert sorted(r["event_id"] for r in pending) == sorted(e.event_id for e in events)
    assert all(r["delivered_at"] is None for r in pending)
    await _relay_until_delivered(migrated, fake, tenant_id)
    assert sorted(fake.received.values()) == [1, 1, 1, 1]


async def test_buffered_request_events_telemetry_rejects_are_kept_as_rejected(
    migrated: asyncpg.Pool,
) -> None:
    fake = FakeTelemetry()
    fake.reject_types = {telemetry_pb2.EVENT_TYPE_HTTP_REQUEST}
    tenant_id = f"outbox-{uuid.uuid4().hex[:12]}"
    port = free_port()
    async with fake.serving(port), grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        buffer = EventBuffer(migrated, TelemetryClient(channel).record_events, RelaySettings())
        for event in _request_events(tenant_id, 2):
            buffer.add(event)
        await buffer.flush()
    rows = await _outbox_rows(migrated, tenant_id)
    assert len(rows) == 2
    assert all(r["rejected"] and r["delivered_at"] is not None for r in rows)
    assert all(r["last_error"].startswith("INVALID_EVENT") for r in rows)
