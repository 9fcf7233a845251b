"""Request-id deduplication: the same request id within the window gets the first answer.

A client that retries a Preflight or Check after a timeout must not consume a
second token or write a second decision, so the serialized answer is kept in
Postgres under (method, request_id) for `Thresholds.Gate.REQUEST_DEDUP_MINUTES`.
Each row also holds a fingerprint of the request: an id reused for a
different request is refused (`REQUEST_ID_REUSED`) rather than answered with
an unrelated result. Concurrent duplicates within one replica share a single
evaluation; across replicas the first stored answer wins and is the one
every duplicate returns.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TypeVar

import asyncpg
from google.protobuf.message import Message

from services.runtime.db import DATABASE_DOWN
from services.runtime.errors import Conflict, Unavailable

log = logging.getLogger(__name__)

AnswerT = TypeVar("AnswerT", bound=Message)


def fingerprint(method: str, request: Message) -> str:
    """SHA-256 of the method and the deterministic serialization of the request."""
    serialized = request.SerializeToString(deterministic=True)
    return hashlib.sha256(method.encode() + b"\n" + serialized).hexdigest()


def _reused() -> Conflict:
    return Conflict(
        "REQUEST_ID_REUSED",
        "this request_id was already used for a different request",
        field="request_id",
    )


class RequestDedup:
    """Replays first answers by (method, request_id); SQL on `gate_request_dedup`."""

    def __init__(
        self, pool: asyncpg.Pool, window: timedelta, clock: Callable[[], datetime]
    ) -> None:
        self._pool = pool
        self._window = window
        self._clock = clock
        self._inflight: dict[tuple[str, str], tuple[str, asyncio.Task[bytes]]] = {}

    async def run(
        self,
        method: str,
        request_id: str,
        request: Message,
        compute: Callable[[], Awaitable[AnswerT]],
        answer_type: type[AnswerT],
    ) -> AnswerT:
        """The stored answer for this id, or `compute()`'s answer, stored as the first one.

        Without a request id there is nothing to replay: `compute()` answers directly.
        """
        if not request_id:
            return await compute()
        request_fingerprint = fingerprint(method, request)

        async def serialized() -> bytes:
            return (await compute()).SerializeToString(deterministic=True)

        key = (method, request_id)
        running = self._inflight.get(key)
        if running is not None:
            if running[0] != request_fingerprint:
                raise _reused()
            return answer_type.FromString(await asyncio.shield(running[1]))
        task = asyncio.create_task(self._first_answer(key, request_fingerprint, serialized))
        self._inflight[key] = (request_fingerprint, task)
        try:
            return answer_type.FromString(await asyncio.shield(task))
        finally:
            if task.done():
                self._inflight.pop(key, None)
            else:
                task.add_done_callback(lambda _: self._inflight.pop(key, None))

    async def _first_answer(
        self,
        key: tuple[str, str],
        request_fingerprint: str,
        compute: Callable[[], Awaitable[bytes]],
    ) -> bytes:
        stored = await self._lookup(key, request_fingerprint)
        if stored is not None:
            return stored
        answer = await compute()
        return await self._remember(key, request_fingerprint, answer)

    async def _lookup(self, key: tuple[str, str], request_fingerprint: str) -> bytes | None:
        try:
            row = await self._pool.fetchrow(
                "SELECT fingerprint, response FROM gate_request_dedup"
                " WHERE method = $1 AND request_id = $2 AND created_at > $3",
                key[0],
                key[1],
                self._clock() - self._window,
            )
        except DATABASE_DOWN as exc:
            raise Unavailable(
                "STATE_STORE_UNAVAILABLE",
                "the gate's state store is unreachable",
                retry_after_seconds=5,
            ) from exc
        if row is None:
            return None
        if row["fingerprint"] != request_fingerprint:
            raise _reused()
        return bytes(row["response"])

    async def _remember(
        self, key: tuple[str, str], request_fingerprint: str, answer: bytes
    ) -> bytes:
        """Store `answer` unless a live answer exists; return the answer that stands."""
        now = self._clock()
        try:
            stored = await self._pool.fetchval(
                "INSERT INTO gate_request_dedup"
                " (method, request_id, fingerprint, response, created_at)"
                " VALUES ($1, $2, $3, $4, $5)"
                " ON CONFLICT (method, request_id) DO UPDATE SET"
                " fingerprint = EXCLUDED.fingerprint, response = EXCLUDED.response,"
                " created_at = EXCLUDED.created_at"
                " WHERE gate_request_dedup.created_at <= $6"
                " RETURNING true",
                key[0],
                key[1],
                request_fingerprint,
                answer,
                now,
                now - self._window,
            )
            if stored:
                return answer
            # Another replica answered the same id first: its answer stands.
            existing = await self._lookup(key, request_fingerprint)
        except DATABASE_DOWN:
            log.warning("could not store the answer for a request id; a retry will re-evaluate")
            return answer
        return existing if existing is not None else answer

    async def expire(self) -> int:
        """Delete answers older than the window (a housekeeping chore); returns the count."""
        result = await self._pool.execute(
            "DELETE FROM gate_request_dedup WHERE created_at <= $1", self._clock() - self._window
        )
        return int(result.split()[-1])
