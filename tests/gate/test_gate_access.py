"""Who may call which gate RPC (SPEC §11): the one table in `services.gate.auth`.

A tenant key opens no gate RPC; a service (CI) key runs preflight, check and the
decision stream but no operator action; an admin key runs everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import grpc
import pytest
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc

from services.gate.auth import PERMISSIONS
from services.runtime.config import AccessThresholds
from services.runtime.keys import KeyStore, Role
from services.runtime.keys.channels import keyed_channel
from tests.gate.service_support import StartGate, error_code, new_release, preflight_request

Call = Callable[[Any], Awaitable[Any]]
SPEC_HASH = "sha256:" + "a" * 64

CALLS: dict[str, Call] = {
    "Preflight": lambda stub: stub.Preflight(preflight_request(new_release())),
    "Check": lambda stub: stub.Check(
        gate_pb2.CheckRequest(preflight=preflight_request(new_release()))
    ),
    "RequestOverride": lambda stub: stub.RequestOverride(
        gate_pb2.RequestOverrideRequest(
            release=new_release(),
            spec_hash=SPEC_HASH,
            reasons=[gate_pb2.BLOCK_REASON_CODE_S1_RATE_HIGH],
            justification="a test",
        )
    ),
    "ListAudit": lambda stub: stub.ListAudit(gate_pb2.ListAuditRequest(limit=1)),
    "WatchDecisions": lambda stub: _watch(stub),
    "DescribeOverride": lambda stub: stub.DescribeOverride(
        gate_pb2.DescribeOverrideRequest(token_hash="f" * 64)
    ),
}


async def _watch(stub: Any) -> None:
    """Open the stream: an allowed caller gets its initial metadata on a live call; a refused
    one a call that has already ended (read() then raises its status)."""
    call = stub.WatchDecisions(gate_pb2.WatchDecisionsRequest())
    await call.initial_metadata()
    if call.done():
        await call.read()
    call.cancel()


def test_every_rpc_of_the_gate_has_a_permission_and_a_call_here() -> None:
    methods = set(gate_pb2.DESCRIPTOR.services_by_name["GateService"].methods_by_name)
    assert set(PERMISSIONS) == methods == set(CALLS)


async def _outcome(target: str, key: str, method: str) -> str:
    async with keyed_channel(target, (("x-api-key", key),)) as channel:
        try:
            await CALLS[method](gate_pb2_grpc.GateServiceStub(channel))
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                return str(error_code(exc))
    return "allowed"


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_reaches_exactly_the_rpcs_its_permissions_name(
    start_gate: StartGate, pg: asyncpg.Pool, role: Role
) -> None:
    tenants = ["pilot"] if role is Role.TENANT else []
    async with start_gate() as svc:  # started first: it creates the key table
        key = await KeyStore(pg, AccessThresholds()).create(role, tenants, f"{role}-caller")
        seen = {m: await _outcome(svc.running.grpc_target, key, m) for m in sorted(CALLS)}
    expected = {m: "allowed" if role in PERMISSIONS[m] else "ROLE_FORBIDDEN" for m in sorted(CALLS)}
    assert seen == expected
