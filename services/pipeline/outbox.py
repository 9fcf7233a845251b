"""Transactional outbox and its relay to telemetry `RecordEvents` (docs/SPEC.md §3.8).

Writers call `write_events(conn, ...)` inside the transaction of the business
change, so an event exists exactly when its change does. The relay takes the
oldest pending rows (`FOR UPDATE SKIP LOCKED`, so relays in several replicas
never send the same row concurrently), sends them as one batch and marks them
delivered in the same transaction. If the RPC fails the transaction rolls back
and the rows stay pending; telemetry deduplicates by event id, so a batch sent
twice (a crash after the RPC, before the commit) is still counted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

import asyncpg
import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.telemetry.v1 import telemetry_pb2

from services.pipeline.errors import STORE_ERRORS, PipelineError
from services.pipeline.events import OutboxEvent, outbox_rows
from services.pipeline.settings import RelaySettings

log = logging.getLogger(__name__)

_INSERT = (
    "INSERT INTO pipeline_outbox (event_id, tenant_id, event_type, occurred_at, payload)"
    " VALUES ($1, $2, $3, $4, $5::jsonb)"
)
_INSERT_MANY = (
    "INSERT INTO pipeline_outbox (event_id, tenant_id, event_type, occurred_at, payload)"
    " SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[])"
)
# Events telemetry took in and refused: kept as the relay keeps its own rejected rows.
_INSERT_REJECTED = (
    "INSERT INTO pipeline_outbox (event_id, tenant_id, event_type, occurred_at, payload,"
    " delivered_at, attempts, rejected, last_error)"
    " SELECT event_id, tenant_id, event_type, occurred_at, payload, now(), 1, true, err"
    " FROM unnest($1::uuid[], $2::text[], $3::text[],"
    " $4::timestamptz[], $5::jsonb[], $6::text[])"
    " AS e(event_id, tenant_id, event_type, occurred_at, payload, err)"
    " ON CONFLICT (event_id) DO NOTHING"
)

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
SendEvents = Callable[
    [Sequence[telemetry_pb2.Event], float], Awaitable[telemetry_pb2.RecordEventsResponse]
]


async def write_events(conn: Connection, events: Sequence[OutboxEvent]) -> None:
    """Add events to the outbox on `conn` (inside the caller's transaction)."""
    rows = outbox_rows(events)
    if len(rows) == 1:
        await conn.execute(_INSERT, *rows[0])
    elif rows:
        columns = list(zip(*rows, strict=True))
        await conn.execute(_INSERT_MANY, *[list(c) for c in columns])


def _events(
    rows: list[asyncpg.Record],
) -> tuple[list[tuple[int, telemetry_pb2.Event]], dict[int, str]]:
    """The rows as telemetry events by seq, and the rows no event can carry (an event
    type telemetry's contract does not know): those are kept as rejected, so one such
    row cannot stop the relay for every row behind it."""
    events: list[tuple[int, telemetry_pb2.Event]] = []
    unsendable: dict[int, str] = {}
    for row in rows:
        try:
            events.append((row["seq"], _to_proto(row)))
        except ValueError as exc:
            unsendable[row["seq"]] = f"UNKNOWN_EVENT_TYPE: {exc}"
    return events, unsendable


def _to_proto(row: asyncpg.Record) -> telemetry_pb2.Event:
    return _event_proto(
        (row["event_id"], row["tenant_id"], row["event_type"], row["occurred_at"], row["payload"])
    )


def _event_proto(row: tuple[UUID, str, str, datetime, str]) -> telemetry_pb2.Event:
    """An outbox row (`outbox_rows`' shape) as telemetry's Event; ValueError for an event
    type telemetry's contract does not know."""
    event_id, tenant_id, event_type, occurred_at, payload = row
    occurred = Timestamp()
    occurred.FromDatetime(occurred_at)
    return telemetry_pb2.Event(
        event_id=str(event_id),
        type="EVENT_TYPE_" + event_type,
        tenant_id=tenant_id,
        occurred_at=occurred,
        payload_json=payload,
    )


async def prune_relayed(pool: asyncpg.Pool, retention_seconds: float) -> int:
    """Delete rows relayed more than `retention_seconds` ago (a housekeeping chore).

    Pending rows are never touched, whatever their age: they are the events
    telemetry has not taken yet. Returns how many rows were removed.
    """
    result = await pool.execute(
        "DELETE FROM pipeline_outbox"
        " WHERE delivered_at IS NOT NULL AND delivered_at < now() - make_interval(secs => $1)",
        retention_seconds,
    )
    return int(result.split()[-1])


@dataclass(frozen=True)
class RelayResult:
    sent: int
    rejected: int


class RelayError(PipelineError):
    """Telemetry could not take the batch; the rows stay pending."""


class OutboxRelay:
    """Delivers pending outbox rows in batches, retrying with backoff while telemetry is down."""

    def __init__(self, pool: asyncpg.Pool, send: SendEvents, settings: RelaySettings) -> None:
        self._pool = pool
        self._send = send
        self._settings = settings
        self._full = asyncio.Event()
        self._committed = 0

    def note_committed(self, events: int = 1) -> None:
        """Count events committed in this process; a full batch flushes before the timer.

        Not a wake per commit: below `batch_size` the rows wait for the timer, so
        one relay statement and RPC carry many commits' events.
        """
        self._committed += events
        if self._committed >= self._settings.batch_size:
            self._full.set()

    async def deliver_once(self) -> RelayResult:
        """Send one batch of pending rows; raise `RelayError` if telemetry refused the call."""
        self._committed = max(0, self._committed - self._settings.batch_size)
        if self._committed < self._settings.batch_size:
            self._full.clear()
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT seq, event_id, tenant_id, event_type, occurred_at, payload::text AS payload"
                " FROM pipeline_outbox WHERE delivered_at IS NULL"
                " ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
                self._settings.batch_size,
            )
            if not rows:
                return RelayResult(0, 0)
            events, unsendable = _events(rows)
            rejected = dict(unsendable)
            if events:
                try:
                    response = await self._send(
                        [event for _, event in events], self._settings.rpc_timeout_seconds
                    )
                except grpc.aio.AioRpcError as exc:
                    raise RelayError(f"{exc.code().name}: {exc.details()}") from exc
                rejected.update(
                    {
                        events[r.index][0]: f"{r.error.error_code}: {r.error.message}"
                        for r in response.rejected
                        if 0 <= r.index < len(events)
                    }
                )
            await conn.execute(
                "UPDATE pipeline_outbox SET delivered_at = now(), attempts = attempts + 1"
                " WHERE seq = ANY($1::bigint[])",
                [r["seq"] for r in rows],
            )
            if rejected:
                await conn.executemany(
                    "UPDATE pipeline_outbox SET rejected = true, last_error = $2 WHERE seq = $1",
                    list(rejected.items()),
                )
                log.warning("telemetry rejected %d event(s); kept as rejected", len(rejected))
            return RelayResult(len(rows), len(rejected))

    async def _note_failure(self, error: str) -> None:
        """Record the failed attempt on the oldest pending rows (for operators), best effort."""
        try:
            await self._pool.execute(
                "UPDATE pipeline_outbox SET attempts = attempts + 1, last_error = $2"
                " WHERE seq IN (SELECT seq FROM pipeline_outbox WHERE delivered_at IS NULL"
                " ORDER BY seq LIMIT $1)",
                self._settings.batch_size,
                error[:500],
            )
        except STORE_ERRORS:
            log.warning("could not record outbox delivery failure")

    async def run(self) -> None:
        """Relay forever: flush every `interval_seconds` or at a full batch, drain while
        batches are full, back off while telemetry fails."""
        delay = self._settings.backoff_base_seconds
        while True:
            try:
                result = await self.deliver_once()
            except RelayError as exc:
                log.warning("telemetry unavailable, outbox delivery retried in %.1f s", delay)
                await self._note_failure(str(exc))
                await self._sleep(delay, wakeable=False)
                delay = min(delay * 2, self._settings.backoff_max_seconds)
                continue
            except STORE_ERRORS as exc:
                log.warning("outbox relay cannot reach the database: %s", type(exc).__name__)
                await self._sleep(delay, wakeable=False)
                delay = min(delay * 2, self._settings.backoff_max_seconds)
                continue
            delay = self._settings.backoff_base_seconds
            if result.sent < self._settings.batch_size:
                await self._sleep(self._settings.interval_seconds, wakeable=True)

    async def _sleep(self, seconds: float, *, wakeable: bool) -> None:
        if not wakeable:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._full.wait(), timeout=seconds)


class EventBuffer:
    """Buffers high-volume events (HTTP request outcomes) and hands them to telemetry in
    batches.

    These events describe requests, not business changes, so they need no outbox
    row written with a change, and losing at most one flush interval of them in a
    crash is acceptable. A flush sends its batch straight to telemetry; only a
    batch telemetry cannot take (down, too slow, the call failed) goes to the
    outbox, for the relay to deliver once telemetry is back, so none is lost
    while telemetry is down and, by event id, none is counted twice. Events
    telemetry refuses are kept in the outbox as rejected, as the relay keeps its
    own. Through the outbox every request cost an insert, the relay's read and its
    delivered mark, and a row kept for the outbox retention. A full buffer drops
    the oldest event and counts it.
    """

    def __init__(
        self,
        pool: asyncpg.Pool,
        send: SendEvents,
        settings: RelaySettings,
        *,
        flush_interval_seconds: float = 1.0,
        max_events: int = 20_000,
    ) -> None:
        self._pool = pool
        self._send = send
        self._settings = settings
        self._interval = flush_interval_seconds
        self._max = max_events
        self._events: list[OutboxEvent] = []
        self.dropped = 0

    def add(self, event: OutboxEvent) -> None:
        if len(self._events) >= self._max:
            self._events.pop(0)
            self.dropped += 1
        self._events.append(event)

    async def flush(self) -> int:
        """Hand everything buffered to telemetry (or the outbox); what neither could take is
        kept for the next try. Returns how many events were handed on."""
        batch, self._events = self._events, []
        size = self._settings.batch_size
        for start in range(0, len(batch), size):
            try:
                await self._hand_on(batch[start : start + size])
            except STORE_ERRORS:
                log.warning("could not write %d buffered event(s); will retry", len(batch) - start)
                self._events = batch[start:] + self._events
                del self._events[: max(0, len(self._events) - self._max)]
                return start
        return len(batch)

    async def _hand_on(self, chunk: Sequence[OutboxEvent]) -> None:
        """One RecordEvents call for `chunk`; the outbox when telemetry cannot take it."""
        rows = outbox_rows(chunk)
        try:
            response = await self._send(
                [_event_proto(row) for row in rows], self._settings.rpc_timeout_seconds
            )
        except grpc.aio.AioRpcError as exc:
            log.info("telemetry did not take %d event(s) (%s): outbox", len(rows), exc.code().name)
            async with self._pool.acquire() as conn:
                await write_events(conn, chunk)
            return
        rejected = [
            (*rows[r.index], f"{r.error.error_code}: {r.error.message}")
            for r in response.rejected
            if 0 <= r.index < len(rows)
        ]
        if rejected:
            columns = [list(column) for column in zip(*rejected, strict=True)]
            await self._pool.execute(_INSERT_REJECTED, *columns)
            log.warning("telemetry rejected %d event(s); kept as rejected", len(rejected))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.flush()
