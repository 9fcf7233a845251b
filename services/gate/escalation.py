"""Escalation state in Postgres: when each reason was first seen for a release (docs/SPEC.md §5.2).

Shared by every gate replica and kept across restarts, so "S1 rate high for
15 minutes" means 15 minutes of wall time whichever replica answers. The
earliest writer wins: two replicas that see a reason appear at the same time
keep one first-seen time, and `record` returns the stored times so the
caller can re-evaluate with them.

Every preflight reads this state, so each process keeps it per release for
`Gate.ESCALATION_CACHE_SECONDS` (the runtime's `TtlCache`: concurrent reads of
one release share one query, and a release read steadily is re-read in the
background before it expires, so no Preflight waits for the query) and folds
its own writes in. A change another replica makes shows up here that much
later at most — seconds against escalation windows of minutes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

import asyncpg

from services.gate.domain.reasons import BlockReasonCode
from services.runtime.cache import TtlCache
from services.runtime.db import DATABASE_DOWN
from services.runtime.errors import Unavailable

FirstSeen = dict[BlockReasonCode, datetime]


def _store_unavailable() -> Unavailable:
    return Unavailable(
        "STATE_STORE_UNAVAILABLE",
        "the gate's state store is unreachable; no verdict without escalation state",
        retry_after_seconds=5,
    )


class EscalationRepository:
    """SQL for `gate_escalation` (migration 0002)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        cache_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._cache: TtlCache[str, FirstSeen] = TtlCache(
            cache_seconds, clock=clock, refresh_ahead=True
        )

    async def first_seen(self, release: str) -> FirstSeen:
        """The first-seen time of every reason currently persisting for `release`."""
        # A copy: the caller may change it, the cached state stays as stored.
        return dict(await self._cache.get(release, lambda: self._load(release)))

    async def _load(self, release: str) -> FirstSeen:
        try:
            rows = await self._pool.fetch(
                "SELECT reason, first_seen_at FROM gate_escalation WHERE release = $1", release
            )
        except DATABASE_DOWN as exc:
            raise _store_unavailable() from exc
        out: dict[BlockReasonCode, datetime] = {}
        for row in rows:
            try:
                out[BlockReasonCode(row["reason"])] = row["first_seen_at"]
            except ValueError:
                continue  # a reason this version does not know: not ours to judge
        return out

    async def record(
        self,
        release: str,
        newly_seen: Iterable[BlockReasonCode],
        cleared: Iterable[BlockReasonCode],
        now: datetime,
    ) -> Mapping[BlockReasonCode, datetime]:
        """Insert newly seen reasons (earliest writer wins), delete cleared ones.

        Returns the stored first-seen time of each newly seen reason, which is
        earlier than `now` when another replica recorded it first.
        """
        seen = sorted(str(code) for code in newly_seen)
        gone = sorted(str(code) for code in cleared)
        if not seen and not gone:
            return {}
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                if gone:
                    await conn.execute(
                        "DELETE FROM gate_escalation"
                        " WHERE release = $1 AND reason = ANY($2::text[])",
                        release,
                        gone,
                    )
                rows = []
                if seen:
                    # DO UPDATE with a no-op assignment so RETURNING also yields the
                    # rows another replica inserted first.
                    rows = await conn.fetch(
                        "INSERT INTO gate_escalation (release, reason, first_seen_at)"
                        " SELECT $1, reason, $3 FROM unnest($2::text[]) AS reason"
                        " ON CONFLICT (release, reason)"
                        " DO UPDATE SET first_seen_at = gate_escalation.first_seen_at"
                        " RETURNING reason, first_seen_at",
                        release,
                        seen,
                        now,
                    )
        except DATABASE_DOWN as exc:
            raise _store_unavailable() from exc
        stored = {BlockReasonCode(row["reason"]): row["first_seen_at"] for row in rows}
        self._fold_in(release, stored, set(gone))
        return stored

    def _fold_in(self, release: str, stored: FirstSeen, gone: set[str]) -> None:
        """This process's own write, applied to its cached state of the release."""

        def fold(cached: FirstSeen) -> FirstSeen:
            state = {code: at for code, at in cached.items() if str(code) not in gone}
            state.update(stored)
            return state

        self._cache.update(release, fold)
