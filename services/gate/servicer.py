"""The `ptf.gate.v1.GateService` gRPC servicer: parse → engine/repository → map.

Errors are raised as `PtfError`s and mapped to status codes and the
`ptf-error-code` trailer by the runtime's `ErrorMappingServer`, which wraps
every method handler when the servicer is registered; nothing here builds an
error response by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import grpc
from ptf.common.v1 import common_pb2
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc

from services.gate.audit import AuditRepository, encode_cursor
from services.gate.auth import GateAccess
from services.gate.decisions import DecisionBus, watched_event
from services.gate.dedup import RequestDedup
from services.gate.engine import GateEngine
from services.gate.mapping import (
    audit_entry,
    check_response,
    override_info,
    timestamp,
)
from services.gate.requests import (
    PreflightInput,
    PreflightInputs,
    audit_query,
    override_input,
    release_filter,
    token_hash_input,
)
from services.runtime.db import DATABASE_DOWN
from services.runtime.errors import Unavailable
from services.runtime.logs import request_id_var

Context = grpc.aio.ServicerContext[Any, Any]


class GateServicer(gate_pb2_grpc.GateServiceServicer):
    """Thin gRPC layer over `GateEngine`."""

    def __init__(
        self,
        engine: GateEngine,
        dedup: RequestDedup,
        auth: GateAccess,
        bus: DecisionBus,
        audit: AuditRepository,
        inputs: PreflightInputs,
    ) -> None:
        self._engine = engine
        self._dedup = dedup
        self._auth = auth
        self._bus = bus
        self._audit = audit
        self._inputs = inputs

    async def Preflight(
        self, request: gate_pb2.PreflightRequest, context: Context
    ) -> gate_pb2.PreflightResult:
        """Evaluate a release spec; the same request_id replays the first answer."""
        await self._auth.authorize("Preflight", context.invocation_metadata())
        inp = self._inputs.parse(request)
        return await self._dedup.run(
            "Preflight",
            inp.request_id,
            request,
            lambda: self._preflight(inp),
            gate_pb2.PreflightResult,
        )

    async def _preflight(self, inp: PreflightInput) -> gate_pb2.PreflightResult:
        run = await self._engine.preflight(inp, inp.request_id or request_id_var.get())
        self._engine.report_preflight(run)
        return self._engine.replies.result(run)

    async def Check(
        self, request: gate_pb2.CheckRequest, context: Context
    ) -> gate_pb2.CheckResponse:
        """Enforcement: ALLOW only for an OK verdict; audited under the key's operator."""
        caller = await self._auth.authorize("Check", context.invocation_metadata())
        inp = self._inputs.parse(request.preflight)
        operator = caller.operator
        return await self._dedup.run(
            "Check",
            inp.request_id,
            request,
            lambda: self._check(inp, operator),
            gate_pb2.CheckResponse,
        )

    async def _check(self, inp: PreflightInput, operator: str) -> gate_pb2.CheckResponse:
        done = await self._engine.check(inp, operator, inp.request_id or request_id_var.get())
        return check_response(
            done.run,
            str(done.decision.decision),
            done.decision.audit_written,
            done.audit_id,
        )

    async def RequestOverride(
        self, request: gate_pb2.RequestOverrideRequest, context: Context
    ) -> gate_pb2.RequestOverrideResponse:
        """Admin only: issue a one-time override token (returned once) and audit it."""
        caller = await self._auth.authorize("RequestOverride", context.invocation_metadata())
        issued = await self._engine.request_override(
            override_input(request, caller.operator), request_id_var.get()
        )
        expires_at = datetime.fromtimestamp(issued.expires_at, UTC)
        return gate_pb2.RequestOverrideResponse(
            token=common_pb2.ConfirmationToken(token=issued.raw, expires_at=timestamp(expires_at)),
            token_hash=issued.hash,
        )

    async def ListAudit(
        self, request: gate_pb2.ListAuditRequest, context: Context
    ) -> gate_pb2.ListAuditResponse:
        """Admin only: audit rows newest first, keyset-paginated by an opaque cursor."""
        await self._auth.authorize("ListAudit", context.invocation_metadata())
        query = audit_query(request)
        try:
            entries, last_id = await self._audit.page(
                limit=query.limit, before_id=query.before_id, release=query.release
            )
        except DATABASE_DOWN as exc:
            raise Unavailable(
                "AUDIT_UNAVAILABLE", "the audit trail is unreachable", retry_after_seconds=5
            ) from exc
        return gate_pb2.ListAuditResponse(
            entries=[audit_entry(e) for e in entries],
            next_cursor=encode_cursor(last_id) if last_id is not None else "",
        )

    async def WatchDecisions(
        self, request: gate_pb2.WatchDecisionsRequest, context: Context
    ) -> AsyncIterator[gate_pb2.DecisionEvent]:
        """Every Check decision of every replica (and drop warnings) until the gate shuts down."""
        await self._auth.authorize("WatchDecisions", context.invocation_metadata())
        release = release_filter(request.release)
        with await self._bus.subscribe() as subscription:
            # Initial metadata tells the client its subscription is live.
            await context.send_initial_metadata(())
            while (envelope := await subscription.next()) is not None:
                event = watched_event(envelope, release)
                if event is not None:
                    yield event

    async def DescribeOverride(
        self, request: gate_pb2.DescribeOverrideRequest, context: Context
    ) -> gate_pb2.OverrideInfo:
        """Admin only: an override token's state and audit rows, by its hash."""
        await self._auth.authorize("DescribeOverride", context.invocation_metadata())
        description = await self._engine.describe_override(token_hash_input(request.token_hash))
        return override_info(description)
