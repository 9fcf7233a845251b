"""The job stream: a Redis Stream read by one consumer group shared by every worker.

A message only says "job X of tenant T may be runnable"; the job row in
Postgres is the truth and decides who runs it. So a duplicate message is
harmless, and a lost one is re-sent by the sweeper. Messages are acknowledged
(and deleted, which keeps the stream short) only after the job's outcome is
committed; XAUTOCLAIM hands messages idle longer than the visibility timeout
to a live worker.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from services.runtime.redis_client import RedisKeys

log = logging.getLogger(__name__)

GROUP = "pipeline-workers"


@dataclass(frozen=True)
class QueueMessage:
    message_id: str
    job_id: UUID | None
    tenant_id: str


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _message(message_id: Any, fields: Any) -> QueueMessage:
    """A stream entry; malformed or deleted entries get job_id None (acknowledged, skipped)."""
    data = {_text(k): _text(v) for k, v in (fields or {}).items()}
    try:
        job_id: UUID | None = UUID(data["job_id"])
    except (KeyError, ValueError):
        job_id = None
    return QueueMessage(_text(message_id), job_id, data.get("tenant_id", ""))


class JobQueue:
    """XADD / XREADGROUP / XAUTOCLAIM / XACK on the pipeline's job stream."""

    def __init__(self, redis: aioredis.Redis, keys: RedisKeys) -> None:
        self._redis = redis
        self.stream = keys.key("pipeline", "jobs")

    async def ensure_group(self) -> None:
        """Create the consumer group (and stream) once; an existing group is fine."""
        try:
            await self._redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, jobs: Sequence[tuple[UUID, str]]) -> None:
        """One message per (job_id, tenant_id)."""
        if not jobs:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for job_id, tenant_id in jobs:
                pipe.xadd(self.stream, {"job_id": str(job_id), "tenant_id": tenant_id})
            await pipe.execute()

    async def read(self, consumer: str, count: int, block_ms: int) -> list[QueueMessage]:
        """New messages for this consumer; recreates the group if Redis lost it."""
        try:
            reply = await self._redis.xreadgroup(
                GROUP, consumer, {self.stream: ">"}, count=count, block=block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("job stream consumer group missing; recreating it")
            await self.ensure_group()
            return []
        messages: list[QueueMessage] = []
        streams: list[Any] = reply or []  # type: ignore[assignment]
        for _stream, entries in streams:
            messages.extend(_message(mid, fields) for mid, fields in entries)
        return messages

    async def reclaim(self, consumer: str, min_idle_ms: int, count: int) -> list[QueueMessage]:
        """Messages pending on any consumer for at least `min_idle_ms`, now owned by `consumer`."""
        try:
            reply = await self._redis.xautoclaim(
                self.stream, GROUP, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            await self.ensure_group()
            return []
        entries = reply[1] if len(reply) > 1 else []
        return [_message(mid, fields) for mid, fields in entries if mid is not None]

    def pipeline(self) -> Pipeline:
        """A non-transactional pipeline, to send a batch's acknowledgements in one round trip."""
        return self._redis.pipeline(transaction=False)

    def stage_ack(self, pipe: Pipeline, message_ids: Sequence[str]) -> None:
        """Acknowledge and delete `message_ids` (one XACK and one XDEL) when `pipe` runs."""
        if message_ids:
            pipe.xack(self.stream, GROUP, *message_ids)
            pipe.xdel(self.stream, *message_ids)

    async def ack(self, message_id: str) -> None:
        """Acknowledge and delete: the outcome is committed, the message has no further use."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xack(self.stream, GROUP, message_id)
            pipe.xdel(self.stream, message_id)
            await pipe.execute()

    async def prune_consumers(self, idle_ms: int) -> int:
        """Forget consumers of exited workers: nothing pending and idle for `idle_ms`.

        Every worker process registers new consumer names, so without pruning
        the group's consumer list grows with every restart.
        """
        try:
            consumers = await self._redis.xinfo_consumers(self.stream, GROUP)
        except ResponseError:
            return 0
        removed = 0
        for consumer in consumers:
            if int(consumer["pending"]) == 0 and int(consumer["idle"]) >= idle_ms:
                await self._redis.xgroup_delconsumer(self.stream, GROUP, consumer["name"])
                removed += 1
        return removed

    async def trim_acknowledged(self) -> int:
        """Drop entries every reader is done with (a housekeeping chore); returns how many.

        `ack` deletes its entry, but one acknowledged by a worker that died before
        its XDEL, or by an older release, would stay forever. An entry must stay
        while it is pending (delivered, not acknowledged) or not yet delivered to
        the group, so the stream is cut just below the oldest of those.
        """
        try:
            groups = await self._redis.xinfo_groups(self.stream)
        except ResponseError:
            return 0  # no stream yet
        group = next((g for g in groups if _text(g["name"]) == GROUP), None)
        if group is None:
            return 0  # without the group nothing says what was read; keep everything
        summary = await self._redis.xpending(self.stream, GROUP)
        if summary and int(summary["pending"]):
            keep_from = _text(summary["min"])
        else:
            millis, sequence = _text(group["last-delivered-id"]).split("-")
            keep_from = f"{millis}-{int(sequence) + 1}"
        return int(await self._redis.xtrim(self.stream, minid=keep_from, approximate=False))

    async def pending(self) -> int:
        """Messages delivered but not yet acknowledged."""
        summary = await self._redis.xpending(self.stream, GROUP)
        return int(summary["pending"]) if summary else 0
