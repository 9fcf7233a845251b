"""Hostile HTTP input beyond the contract: each a clear 4xx, no traceback, memory bounded.

The fault of each case is its request (tests/fuzz/hostile_http.py); what must
happen: a 4xx status with an `{error_code, message}` JSON body (a request the
HTTP parser itself refuses: aiohttp's plain-text 4xx; a body cut short by the
client: a 4xx or a closed connection; never a 5xx), and no
exception traceback in the services' logs. The memory test sends every case
five times and bounds the growth of the process (the services run in it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import StartService
from tests.fuzz.conftest import start_named
from tests.fuzz.hostile_http import CASES, Case, Keys, resident_mebibytes, send
from tests.fuzz.logs import tracebacks
from tests.pipeline.service_support import new_tenant
from tests.support.services import ServiceHandle

log = logging.getLogger(__name__)

MEMORY_ROUNDS = 5
MEMORY_GROWTH_LIMIT_MIB = 32.0


class Stack:
    """The HTTP services of the stack, by name, and the keys a request presents."""

    def __init__(self, services: dict[str, ServiceHandle], keys: Keys) -> None:
        self.services = services
        self.keys = keys

    async def send(self, case: Case) -> tuple[int | None, bytes]:
        port = self.services[case.service].running.http_port
        response = await send(port, case.build(self.keys), case.body_cut)
        return (None, b"") if response is None else (response.status, response.body)


@pytest.fixture
async def stack(
    start_service: StartService, pg: asyncpg.Pool, tmp_path: Path
) -> AsyncIterator[Stack]:
    async with AsyncExitStack() as exits:
        services = {
            name: await start_named(name, start_service, exits, tmp_path / name)
            for name in ("gate", "health", "pipeline", "telemetry")
        }
        tenant = await new_tenant(pg)
        admin = services["pipeline"].config.dev_admin_key
        yield Stack(services, Keys(tenant.tenant_id, tenant.api_key, admin))


def _unclear(case: Case, status: int | None, body: bytes) -> str | None:
    """Why this answer is not a clear client error, or None when it is."""
    if status is None:
        # A client that broke its own request may just see the connection closed.
        return None if case.body_cut is not None else "connection closed without an answer"
    if not 400 <= status < 500:
        return f"HTTP {status}: {body[:200]!r}"
    if case.transport:
        return None
    try:
        fields = set(json.loads(body))
    except ValueError:
        return f"HTTP {status} without a JSON body: {body[:200]!r}"
    return None if fields >= {"error_code", "message"} else f"HTTP {status} body {fields}"


async def test_every_hostile_request_gets_a_clear_client_error(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """All cases against one stack (one start instead of one per case); every unclear answer
    is listed by case name."""
    caplog.set_level(logging.WARNING, logger="services")
    unclear = {}
    for case in CASES:
        reason = _unclear(case, *await stack.send(case))
        if reason is not None:
            unclear[case.name] = reason
    assert unclear == {}
    assert tracebacks(caplog.records) == []


async def test_memory_stays_bounded_under_every_hostile_request(stack: Stack) -> None:
    """Figure: resident memory growth over 5 rounds of every case (incl. 11 MiB bodies) < 32 MiB."""
    for case in CASES:  # warm-up: first-use allocations are not growth
        await stack.send(case)
    before = resident_mebibytes()
    for _ in range(MEMORY_ROUNDS):
        for case in CASES:
            await stack.send(case)
    growth = resident_mebibytes() - before
    log.info("resident memory grew %.1f MiB over %d hostile requests", growth, _sent(MEMORY_ROUNDS))
    assert growth < MEMORY_GROWTH_LIMIT_MIB, f"grew {growth:.1f} MiB"


def _sent(rounds: int) -> int:
    return rounds * len(CASES)
