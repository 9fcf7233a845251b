"""The gate's append-only, hash-chained audit trail (docs/SPEC.md §5.4).

Each row carries the hash of the previous row, so editing or deleting a row
(by someone able to bypass the append-only trigger) breaks the chain and
`verify_chain` names the first row that no longer matches. Appends serialize
on an advisory lock so the chain stays linear across gate replicas.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import asyncpg

GENESIS_HASH = "0" * 64
_APPEND_LOCK_KEY = int.from_bytes(
    hashlib.sha256(b"ptf-gate-audit").digest()[:8], "big", signed=True
)
_COLUMNS = (
    "created_at, release, build, spec_hash, verdict, decision, reasons, signal_snapshot,"
    " override_result, operator, token_hash, config_hash, request_id"
)


@dataclass(frozen=True)
class AuditRecord:
    """What the gate decided and why; `token_hash` only, never a token."""

    created_at: datetime
    release: str
    build: str
    spec_hash: str
    verdict: str
    decision: str
    reasons: tuple[str, ...]
    signal_snapshot: dict[str, Any]
    override_result: str
    operator: str
    token_hash: str | None
    config_hash: str
    request_id: str


@dataclass(frozen=True)
class AuditEntry:
    id: int
    record: AuditRecord
    prev_hash: str
    row_hash: str


@dataclass(frozen=True)
class ChainBreak:
    """A row whose stored hash does not match its content and predecessor."""

    id: int
    reason: str


def row_hash(prev_hash: str, record: AuditRecord) -> str:
    """SHA-256 over the previous hash and the canonical JSON of the record."""
    content = asdict(record)
    content["created_at"] = record.created_at.isoformat()
    content["reasons"] = list(record.reasons)
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


def _record(row: asyncpg.Record) -> AuditRecord:
    return AuditRecord(
        created_at=row["created_at"],
        release=row["release"],
        build=row["build"],
        spec_hash=row["spec_hash"],
        verdict=row["verdict"],
        decision=row["decision"],
        reasons=tuple(row["reasons"]),
        signal_snapshot=json.loads(row["signal_snapshot"]),
        override_result=row["override_result"],
        operator=row["operator"],
        token_hash=row["token_hash"],
        config_hash=row["config_hash"],
        request_id=row["request_id"],
    )


def _entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        id=row["id"], record=_record(row), prev_hash=row["prev_hash"], row_hash=row["row_hash"]
    )


# Audit ids are PostgreSQL bigint: a larger forged id would fail in the query, not here.
_MAX_ID = 2**63 - 1


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"audit:{last_id}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    """The id a page continues below; ValueError for anything we did not issue."""
    try:
        kind, _, value = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        last_id = int(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError("malformed cursor") from exc
    if kind != "audit" or not 1 <= last_id <= _MAX_ID:
        raise ValueError("malformed cursor")
    return last_id


class AuditRepository:
    """SQL for the audit trail; the only writer is `append`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def append(self, record: AuditRecord) -> AuditEntry:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPEND_LOCK_KEY)
            prev = await conn.fetchval("SELECT row_hash FROM gate_audit ORDER BY id DESC LIMIT 1")
            prev_hash = prev or GENESIS_HASH
            digest = row_hash(prev_hash, record)
            row_id = await conn.fetchval(
                f"INSERT INTO gate_audit ({_COLUMNS}, prev_hash, row_hash)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
                " RETURNING id",
                record.created_at,
                record.release,
                record.build,
                record.spec_hash,
                record.verdict,
                record.decision,
                list(record.reasons),
                json.dumps(record.signal_snapshot, sort_keys=True),
                record.override_result,
                record.operator,
                record.token_hash,
                record.config_hash,
                record.request_id,
                prev_hash,
                digest,
            )
        return AuditEntry(id=row_id, record=record, prev_hash=prev_hash, row_hash=digest)

    async def page(
        self, *, limit: int, before_id: int | None = None, release: str | None = None
    ) -> tuple[Sequence[AuditEntry], int | None]:
        """Newest first; returns the entries and the id to continue below (None at the end)."""
        rows = await self._pool.fetch(
            f"SELECT id, {_COLUMNS}, prev_hash, row_hash FROM gate_audit"
            " WHERE ($1::bigint IS NULL OR id < $1) AND ($2::text IS NULL OR release = $2)"
            " ORDER BY id DESC LIMIT $3",
            before_id,
            release,
            limit + 1,
        )
        entries = [_entry(r) for r in rows[:limit]]
        more = len(rows) > limit
        return entries, (entries[-1].id if more and entries else None)

    async def by_token_hash(self, token_hash: str, *, limit: int) -> Sequence[AuditEntry]:
        """Newest first: the rows carrying `token_hash` (an override's issuance and uses)."""
        rows = await self._pool.fetch(
            f"SELECT id, {_COLUMNS}, prev_hash, row_hash FROM gate_audit"
            " WHERE token_hash = $1 ORDER BY id DESC LIMIT $2",
            token_hash,
            limit,
        )
        return [_entry(r) for r in rows]

    async def iterate(self, batch: int = 1000) -> AsyncIterator[AuditEntry]:
        """All entries in chain order, fetched in batches."""
        last_id = 0
        while True:
            rows = await self._pool.fetch(
                f"SELECT id, {_COLUMNS}, prev_hash, row_hash FROM gate_audit"
                " WHERE id > $1 ORDER BY id LIMIT $2",
                last_id,
                batch,
            )
            for row in rows:
                yield _entry(row)
            if len(rows) < batch:
                return
            last_id = rows[-1]["id"]


async def verify_chain(entries: AsyncIterator[AuditEntry]) -> tuple[int, list[ChainBreak]]:
    """(rows checked, breaks): a break is a row whose content or link no longer matches."""
    expected_prev = GENESIS_HASH
    checked = 0
    breaks: list[ChainBreak] = []
    async for entry in entries:
        checked += 1
        if entry.prev_hash != expected_prev:
            breaks.append(ChainBreak(entry.id, "prev_hash does not match the previous row"))
        if row_hash(entry.prev_hash, entry.record) != entry.row_hash:
            breaks.append(ChainBreak(entry.id, "row content does not match its hash"))
        expected_prev = entry.row_hash
    return checked, breaks
