"""Bad input for every gate RPC: a specific status and error code, and nothing written."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import pytest
import redis.asyncio as aioredis
from ptf.gate.v1 import gate_pb2

from tests.gate.service_support import (
    ADMIN,
    HEALTHY_FACTS,
    StartGate,
    anonymous_gate_stub,
    error_code,
    error_field,
    gate_stub,
    new_release,
    preflight_request,
    spec_yaml,
)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
SPEC_HASH = "sha256:" + "a" * 64

Call = Callable[[Any, str], Awaitable[Any]]


def _preflight(**changes: Any) -> Callable[[str], gate_pb2.PreflightRequest]:
    def build(release: str) -> gate_pb2.PreflightRequest:
        request = preflight_request(release)
        for name, value in changes.items():
            if name == "facts":
                request.facts.clear()
                request.facts.update(value)
            else:
                setattr(request, name, value(release) if callable(value) else value)
        return request

    return build


PREFLIGHT_CASES = {
    "malformed-yaml": (_preflight(spec_yaml="release: [unclosed\n"), "SPEC_INVALID", "spec"),
    "oversized-spec": (
        _preflight(spec_yaml=lambda r: spec_yaml(r) + "#" * 70_000 + "\n"),
        "SPEC_INVALID",
        "spec",
    ),
    "unknown-spec-field": (
        _preflight(spec_yaml=lambda r: spec_yaml(r, "colour: blue")),
        "SPEC_INVALID",
        "colour",
    ),
    "unknown-fact": (
        _preflight(facts={**HEALTHY_FACTS, "test_passed": "true"}),
        "FACT_INVALID",
        "facts.test_passed",
    ),
    "fact-not-boolean": (
        _preflight(facts={**HEALTHY_FACTS, "smoke_passed": "yes"}),
        "FACT_INVALID",
        "facts.smoke_passed",
    ),
    "required-fact-missing": (
        _preflight(facts={"tests_passed": "true"}),
        "FACT_INVALID",
        "facts.smoke_passed",
    ),
    "bad-request-id": (
        _preflight(request_id="has spaces"),
        "REQUEST_ID_INVALID",
        "request_id",
    ),
    "oversized-token": (
        _preflight(override_token="t" * 600),
        "OVERRIDE_TOKEN_INVALID",
        "override_token",
    ),
}


async def _written(pg: asyncpg.Pool, release: str) -> tuple[int, int]:
    audit = await pg.fetchval("SELECT count(*) FROM gate_audit WHERE release = $1", release)
    escalation = await pg.fetchval(
        "SELECT count(*) FROM gate_escalation WHERE release = $1", release
    )
    return audit, escalation


@pytest.mark.parametrize("case", sorted(PREFLIGHT_CASES))
@pytest.mark.parametrize("method", ["Preflight", "Check"])
async def test_bad_preflight_input_is_invalid_argument_and_writes_nothing(
    start_gate: StartGate, pg: asyncpg.Pool, case: str, method: str
) -> None:
    build, code, field = PREFLIGHT_CASES[case]
    release = new_release()
    async with start_gate() as svc:
        stub = gate_stub(svc)
        request = build(release)
        call = (
            stub.Check(gate_pb2.CheckRequest(preflight=request, operator="ops"))
            if method == "Check"
            else stub.Preflight(request)
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
    assert (caught.value.code(), error_code(caught.value), error_field(caught.value)) == (
        INVALID,
        code,
        field,
    )
    assert await _written(pg, release) == (0, 0)


async def test_check_audits_the_keys_operator_not_the_one_the_request_names(
    start_gate: StartGate, pg: asyncpg.Pool
) -> None:
    release = new_release()
    async with start_gate() as svc:
        await gate_stub(svc).Check(
            gate_pb2.CheckRequest(preflight=preflight_request(release), operator="someone-else")
        )
    operators = await pg.fetch("SELECT operator FROM gate_audit WHERE release = $1", release)
    assert [row["operator"] for row in operators] == ["dev-admin"]


def _override(**changes: Any) -> gate_pb2.RequestOverrideRequest:
    fields: dict[str, Any] = {
        "release": "2026.01.17-rc1",
        "spec_hash": SPEC_HASH,
        "reasons": [gate_pb2.BLOCK_REASON_CODE_S1_RATE_HIGH],
        "justification": "approved",
        "operator": "ops@example",
    }
    fields.update(changes)
    return gate_pb2.RequestOverrideRequest(**fields)


OVERRIDE_CASES: dict[str, tuple[gate_pb2.RequestOverrideRequest, Any, grpc.StatusCode, str]] = {
    "missing-key": (_override(), (), UNAUTHENTICATED, "MISSING_API_KEY"),
    "wrong-key": (_override(), (("x-admin-key", "guess"),), UNAUTHENTICATED, "INVALID_API_KEY"),
    "bad-release": (_override(release="../etc"), ADMIN, INVALID, "RELEASE_INVALID"),
    "bad-spec-hash": (_override(spec_hash="abc"), ADMIN, INVALID, "SPEC_HASH_INVALID"),
    "no-reasons": (_override(reasons=[]), ADMIN, INVALID, "REASONS_REQUIRED"),
    "unspecified-reason": (
        _override(reasons=[gate_pb2.BLOCK_REASON_CODE_UNSPECIFIED]),
        ADMIN,
        INVALID,
        "REASON_INVALID",
    ),
    "no-justification": (_override(justification=""), ADMIN, INVALID, "JUSTIFICATION_INVALID"),
}


@pytest.mark.parametrize("case", sorted(OVERRIDE_CASES))
async def test_bad_override_request_is_refused_and_issues_nothing(
    start_gate: StartGate,
    pg: asyncpg.Pool,
    redis_client: aioredis.Redis,
    redis_prefix: str,
    case: str,
) -> None:
    request, metadata, status, code = OVERRIDE_CASES[case]
    async with start_gate() as svc:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await anonymous_gate_stub(svc).RequestOverride(request, metadata=metadata)
    tokens = [k async for k in redis_client.scan_iter(f"{redis_prefix}:ctok:*")]
    audited = await pg.fetchval(
        "SELECT count(*) FROM gate_audit WHERE release = $1", request.release
    )
    assert (caught.value.code(), error_code(caught.value)) == (status, code)
    assert (tokens, audited) == ([], 0)


@pytest.mark.parametrize(
    ("request_fields", "code", "field"),
    [
        ({"cursor": "not-a-cursor"}, "CURSOR_INVALID", "cursor"),
        ({"limit": -1}, "LIMIT_OUT_OF_RANGE", "limit"),
        ({"limit": 501}, "LIMIT_OUT_OF_RANGE", "limit"),
        ({"release": "bad release"}, "RELEASE_INVALID", "release"),
    ],
    ids=["bad-cursor", "negative-limit", "limit-too-large", "bad-release"],
)
async def test_bad_list_audit_request_is_invalid_argument(
    start_gate: StartGate, request_fields: dict[str, Any], code: str, field: str
) -> None:
    async with start_gate() as svc:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gate_stub(svc).ListAudit(
                gate_pb2.ListAuditRequest(**request_fields), metadata=ADMIN
            )
    assert (caught.value.code(), error_code(caught.value), error_field(caught.value)) == (
        INVALID,
        code,
        field,
    )


@pytest.mark.parametrize(
    ("metadata", "code"),
    [((), "MISSING_API_KEY"), ((("x-admin-key", "wrong"),), "INVALID_API_KEY")],
    ids=["missing-key", "wrong-key"],
)
async def test_audit_trail_needs_an_admin_key(
    start_gate: StartGate, metadata: tuple[tuple[str, str], ...], code: str
) -> None:
    async with start_gate() as svc:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await anonymous_gate_stub(svc).ListAudit(gate_pb2.ListAuditRequest(), metadata=metadata)
    assert (caught.value.code(), error_code(caught.value)) == (UNAUTHENTICATED, code)


async def test_decision_stream_needs_a_key(start_gate: StartGate) -> None:
    async with start_gate() as svc:
        call = anonymous_gate_stub(svc).WatchDecisions(gate_pb2.WatchDecisionsRequest())
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    assert (caught.value.code(), error_code(caught.value)) == (UNAUTHENTICATED, "MISSING_API_KEY")


async def test_bad_watch_filter_is_invalid_argument(start_gate: StartGate) -> None:
    async with start_gate() as svc:
        call = gate_stub(svc).WatchDecisions(
            gate_pb2.WatchDecisionsRequest(release="no spaces"), metadata=ADMIN
        )
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call.read()
    assert (caught.value.code(), error_code(caught.value)) == (INVALID, "RELEASE_INVALID")


@pytest.mark.parametrize(
    ("token_hash", "metadata", "status", "code"),
    [
        ("f" * 64, (), UNAUTHENTICATED, "MISSING_API_KEY"),
        ("not-hex", ADMIN, INVALID, "TOKEN_HASH_INVALID"),
        ("f" * 64, ADMIN, grpc.StatusCode.NOT_FOUND, "OVERRIDE_NOT_FOUND"),
    ],
    ids=["missing-key", "malformed-hash", "unknown-hash"],
)
async def test_bad_describe_override_request_is_refused(
    start_gate: StartGate, token_hash: str, metadata: Any, status: grpc.StatusCode, code: str
) -> None:
    async with start_gate() as svc:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await anonymous_gate_stub(svc).DescribeOverride(
                gate_pb2.DescribeOverrideRequest(token_hash=token_hash), metadata=metadata
            )
    assert (caught.value.code(), error_code(caught.value)) == (status, code)


async def test_audit_pages_are_newest_first_and_continue_without_overlap(
    start_gate: StartGate,
) -> None:
    release = new_release()
    async with start_gate() as svc:
        stub = gate_stub(svc)
        ids = []
        for _ in range(5):
            response = await stub.Check(
                gate_pb2.CheckRequest(preflight=preflight_request(release), operator="ops")
            )
            ids.append(response.audit_id)
        seen: list[int] = []
        cursor = ""
        while True:
            page = await stub.ListAudit(
                gate_pb2.ListAuditRequest(limit=2, cursor=cursor, release=release), metadata=ADMIN
            )
            seen.extend(e.id for e in page.entries)
            cursor = page.next_cursor
            if not cursor:
                break
    assert seen == sorted(ids, reverse=True)
