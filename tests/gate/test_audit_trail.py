"""Gate audit trail (SPEC §5.4): append-only, hash-chained, paginated, verifiable."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest

from services.gate.audit import (
    AuditRecord,
    AuditRepository,
    decode_cursor,
    encode_cursor,
    verify_chain,
)
from services.gate.service import DEFINITION
from services.runtime.db import apply_migration_sets


@pytest.fixture
async def audit(pg: asyncpg.Pool) -> AuditRepository:
    await apply_migration_sets(pg, DEFINITION.migrations)
    return AuditRepository(pg)


def _record(release: str, verdict: str = "RELEASE_OK", **changes: object) -> AuditRecord:
    fields: dict[str, object] = {
        "created_at": datetime.now(UTC),
        "release": release,
        "build": "git:abc1234",
        "spec_hash": "sha256:" + "a" * 64,
        "verdict": verdict,
        "decision": "ALLOW" if verdict == "RELEASE_OK" else "DENY",
        "reasons": (),
        "signal_snapshot": {"s1_rate": 0.1},
        "override_result": "none",
        "operator": "ops@example",
        "token_hash": None,
        "config_hash": "sha256:0123456789abcdef",
        "request_id": uuid.uuid4().hex,
    }
    fields.update(changes)
    return AuditRecord(**fields)  # type: ignore[arg-type]


async def test_appended_rows_form_a_verifiable_chain(audit: AuditRepository) -> None:
    release = f"r-{uuid.uuid4().hex[:8]}"
    for verdict in ("RELEASE_OK", "RELEASE_HOLD", "RELEASE_BLOCK"):
        await audit.append(_record(release, verdict))
    checked, breaks = await verify_chain(audit.iterate())
    assert checked >= 3
    assert breaks == []


async def test_concurrent_appends_keep_the_chain_linear(audit: AuditRepository) -> None:
    release = f"r-{uuid.uuid4().hex[:8]}"
    await asyncio.gather(*(audit.append(_record(release)) for _ in range(20)))
    _, breaks = await verify_chain(audit.iterate())
    assert breaks == []


async def test_update_is_refused_by_the_database(audit: AuditRepository, pg: asyncpg.Pool) -> None:
    entry = await audit.append(_record(f"r-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pg.execute("UPDATE gate_audit SET verdict = 'RELEASE_OK' WHERE id = $1", entry.id)


async def test_delete_is_refused_by_the_database(audit: AuditRepository, pg: asyncpg.Pool) -> None:
    entry = await audit.append(_record(f"r-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pg.execute("DELETE FROM gate_audit WHERE id = $1", entry.id)


async def test_truncate_is_refused_by_the_database(
    audit: AuditRepository, pg: asyncpg.Pool
) -> None:
    await audit.append(_record(f"r-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await pg.execute("TRUNCATE gate_audit")


async def test_row_modified_by_hand_is_reported_by_verify(
    audit: AuditRepository, pg: asyncpg.Pool
) -> None:
    """Fault: a superuser bypasses the trigger and rewrites a verdict. Verify must name it."""
    release = f"r-{uuid.uuid4().hex[:8]}"
    await audit.append(_record(release))
    tampered = await audit.append(_record(release, "RELEASE_BLOCK"))
    await audit.append(_record(release))
    async with pg.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE gate_audit SET verdict = 'RELEASE_OK', decision = 'ALLOW' WHERE id = $1",
            tampered.id,
        )
    _, breaks = await verify_chain(audit.iterate())
    assert [b.id for b in breaks] == [tampered.id]
    assert "content" in breaks[0].reason
    async with pg.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE gate_audit SET verdict = 'RELEASE_BLOCK', decision = 'DENY' WHERE id = $1",
            tampered.id,
        )


async def test_pages_are_newest_first_and_continue_without_overlap(
    audit: AuditRepository,
) -> None:
    release = f"r-{uuid.uuid4().hex[:8]}"
    ids = [(await audit.append(_record(release))).id for _ in range(5)]
    first, after = await audit.page(limit=2, release=release)
    second, after2 = await audit.page(limit=2, before_id=after, release=release)
    third, end = await audit.page(limit=2, before_id=after2, release=release)
    seen = [e.id for e in (*first, *second, *third)]
    assert seen == sorted(ids, reverse=True)
    assert end is None


def test_cursor_round_trips() -> None:
    assert decode_cursor(encode_cursor(42)) == 42


@pytest.mark.parametrize(
    "bad",
    ["", "xyz", "b3RoZXI6NQ==", "YXVkaXQ6LTE=", "YXVkaXQ6YWJj"],
    ids=["empty", "not-base64", "other-kind", "negative-id", "non-numeric-id"],
)
def test_foreign_cursor_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="malformed cursor"):
        decode_cursor(bad)
