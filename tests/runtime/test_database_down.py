"""One "database unavailable" exception set (`services.runtime.db.DATABASE_DOWN`) for every store.

It used to be copied six times and a fix (asyncpg's InternalClientError while
PostgreSQL restarts) reached one copy. These tests hold every former site to
the shared tuple: no service module names asyncpg's outage exceptions itself,
and each store answers "unavailable" the same way for every member of the set.

The stores here get a stand-in pool that raises the outage exception on every
call: it returns no rows and fakes no query, it only fails the way a real pool
does while PostgreSQL is down, which a test cannot make a real server do for
every member of the set on demand.
"""

from __future__ import annotations

import ast
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn, cast

import asyncpg
import pytest
from ptf.gate.v1 import gate_pb2

from services.gate.dedup import RequestDedup
from services.gate.escalation import EscalationRepository
from services.pipeline.intake import store_errors
from services.runtime.db import DATABASE_DOWN
from services.runtime.errors import Unavailable
from services.runtime.tokens.errors import TokenError
from services.runtime.tokens.postgres_store import PostgresTokenStore
from services.runtime.tokens.store import TokenStoreUnavailable
from services.telemetry.repository import EventRepository

REPO = Path(__file__).resolve().parents[2]
_OUTAGE_NAMES = frozenset(
    {
        "PostgresConnectionError",
        "InterfaceError",
        "InternalClientError",
        "CannotConnectNowError",
        "OperatorInterventionError",
    }
)


def _outage(kind: type[Exception]) -> Exception:
    return kind("another operation is in progress")


_MEMBERS = pytest.mark.parametrize("kind", DATABASE_DOWN, ids=lambda kind: kind.__name__)


class _DownPool:
    """Raises `error` from every pool call, as a pool does while PostgreSQL is down."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def _fail(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise self._error

    async def _afail(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        raise self._error

    fetch = fetchrow = fetchval = execute = _afail

    def acquire(self) -> AbstractAsyncContextManager[Any]:
        return cast(AbstractAsyncContextManager[Any], _DownAcquire(self._error))


class _DownAcquire:
    def __init__(self, error: Exception) -> None:
        self._error = error

    async def __aenter__(self) -> NoReturn:
        raise self._error

    async def __aexit__(self, *_exc: object) -> None:
        return None


def _down(kind: type[Exception]) -> asyncpg.Pool:
    return cast(asyncpg.Pool, _DownPool(_outage(kind)))


def _outage_references(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(REPO)}:{node.lineno}: {node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in _OUTAGE_NAMES
    ]


def test_only_the_runtime_db_module_names_asyncpg_outage_exceptions() -> None:
    shared = REPO / "services" / "runtime" / "db.py"
    found = [
        hit
        for path in sorted((REPO / "services").rglob("*.py"))
        if path != shared
        for hit in _outage_references(path)
    ]
    assert found == []


def test_the_shared_set_counts_a_restart_s_operation_in_progress_as_down() -> None:
    """Fault: PostgreSQL restarts under a pooled connection (the fix that reached one copy)."""
    assert asyncpg.InternalClientError in DATABASE_DOWN
    assert isinstance(asyncpg.CannotConnectNowError("starting up"), DATABASE_DOWN)


@_MEMBERS
async def test_token_issue_reports_the_store_unavailable(kind: type[Exception]) -> None:
    """Fault: the database is down while a token is issued; the caller gets the store error."""
    store = PostgresTokenStore(_down(kind), retention_seconds=60)
    with pytest.raises(TokenStoreUnavailable):
        await store.issue("test", "params", 60)


@_MEMBERS
async def test_token_consume_fails_closed(kind: type[Exception]) -> None:
    """Fault: the database is down while a token is consumed; it is refused, never granted."""
    result = await PostgresTokenStore(_down(kind), retention_seconds=60).consume("t", "p", "h")
    assert result.error is TokenError.TOKEN_STORE_UNAVAILABLE


@_MEMBERS
async def test_gate_dedup_lookup_is_state_store_unavailable(kind: type[Exception]) -> None:
    """Fault: the database is down during a deduplicated preflight; 503, nothing computed."""
    dedup = RequestDedup(_down(kind), timedelta(minutes=1), lambda: datetime.now(UTC))

    async def compute() -> gate_pb2.PreflightResult:
        raise AssertionError("no verdict without the dedup store")

    with pytest.raises(Unavailable) as caught:
        await dedup.run(
            "Preflight", "r-1", gate_pb2.PreflightRequest(), compute, gate_pb2.PreflightResult
        )
    assert caught.value.error_code == "STATE_STORE_UNAVAILABLE"


@_MEMBERS
async def test_gate_escalation_read_is_state_store_unavailable(kind: type[Exception]) -> None:
    """Fault: the database is down when escalation state is read; 503, no verdict without it."""
    with pytest.raises(Unavailable) as caught:
        await EscalationRepository(_down(kind)).first_seen("release-1")
    assert caught.value.error_code == "STATE_STORE_UNAVAILABLE"


@_MEMBERS
async def test_telemetry_store_is_unavailable_with_retry_after(kind: type[Exception]) -> None:
    """Fault: the database is down when telemetry counts events; 503 with Retry-After."""
    with pytest.raises(Unavailable) as caught:
        await EventRepository(_down(kind)).claim_summary(datetime.now(UTC), "all")
    assert caught.value.error_code == "STORE_UNAVAILABLE"
    assert caught.value.retry_after_seconds == 5


@_MEMBERS
async def test_pipeline_requests_answer_database_unavailable(kind: type[Exception]) -> None:
    """Fault: the database is down while the pipeline serves a request; 503 with Retry-After."""
    with pytest.raises(Unavailable) as caught:
        async with store_errors():
            raise _outage(kind)
    assert caught.value.error_code == "DATABASE_UNAVAILABLE"
    assert caught.value.retry_after_seconds == 5
