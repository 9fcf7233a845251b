"""Best-effort reports to telemetry: each Check decision as a GATE_DECISION event and
the Preflight runs through `RecordPreflights` (telemetry's persisted preflight store).

Fire-and-forget with a deadline: telemetry being slow or down never delays
or changes a decision. Each event carries a fresh UUID, so telemetry's
idempotent ingestion would count a retried send once. Preflight runs are
buffered and sent in batches by one sender at a time, which lingers briefly
before each batch that is not yet full: a busy gate makes a few calls to
telemetry a second instead of one per preflight, and telemetry saves its store
once per batch.
Pending sends are awaited (each bounded by its deadline) at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from collections.abc import Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc

log = logging.getLogger(__name__)

MAX_PENDING = 256
# Telemetry's own bound on a RecordPreflights batch (telemetry.proto: at most 1000 runs).
# Batches as large as telemetry takes: it saves its store once per batch, and that save
# (its last 1000 runs as JSON, ~10 ms here) costs three times validating 500 runs.
MAX_BATCH_RUNS = 1000
# Preflight runs waiting for the sender (two batches); beyond this they are dropped and counted.
MAX_BUFFERED_RUNS = 2 * MAX_BATCH_RUNS


class DecisionReporter:
    """Sends gate decisions (`RecordEvents`) and preflight runs (`RecordPreflight`)."""

    def __init__(
        self,
        stub: telemetry_pb2_grpc.TelemetryServiceAsyncStub,
        *,
        timeout_seconds: float,
        linger_seconds: float,
    ) -> None:
        self._stub = stub
        self._timeout = timeout_seconds
        self._linger = linger_seconds
        self._pending: set[asyncio.Task[None]] = set()
        self._runs: deque[telemetry_pb2.RecordPreflightRequest] = deque()
        self._flush_now = asyncio.Event()
        self._run_sender: asyncio.Task[None] | None = None
        self.dropped = 0

    def report(
        self,
        *,
        occurred_at: datetime,
        tenant_id: str | None,
        release: str,
        allowed: bool,
        reasons: Sequence[str],
        contract_breach: bool,
        breach_kind: str | None,
        audit_write_failed: bool,
    ) -> None:
        """Schedule the send and return at once."""
        payload = {
            "release": release,
            "allowed": allowed,
            "reasons": list(reasons),
            "contract_breach": contract_breach,
            "breach_kind": breach_kind,
            "audit_write_failed": audit_write_failed,
        }
        stamp = Timestamp()
        stamp.FromDatetime(occurred_at.astimezone(UTC))
        event = telemetry_pb2.Event(
            event_id=str(uuid.uuid4()),
            type=telemetry_pb2.EVENT_TYPE_GATE_DECISION,
            tenant_id=tenant_id or "",
            occurred_at=stamp,
            payload_json=json.dumps(payload, sort_keys=True),
        )
        self._schedule(self._send(event), "gate-decision-report")

    def report_preflight(self, run: telemetry_pb2.RecordPreflightRequest) -> None:
        """Buffer one preflight run for telemetry's MetricStore and return at once."""
        if len(self._runs) >= MAX_BUFFERED_RUNS:
            self._drop(f"{MAX_BUFFERED_RUNS} preflight runs already buffered")
            return
        self._runs.append(run)
        if self._run_sender is None or self._run_sender.done():
            self._run_sender = asyncio.create_task(
                self._send_preflights(), name="gate-preflight-report"
            )

    def _drop(self, why: str) -> None:
        self.dropped += 1
        log.warning("telemetry report dropped: %s", why)

    def _schedule(self, send: Coroutine[Any, Any, None], name: str) -> None:
        """Start a send unless MAX_PENDING are already under way (then drop and count it).

        Telemetry being slow must not make the gate pile up tasks without bound.
        """
        if len(self._pending) >= MAX_PENDING:
            send.close()
            self._drop(f"{MAX_PENDING} sends already pending")
            return
        task = asyncio.create_task(send, name=name)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send_preflights(self) -> None:
        """Send what is buffered, a batch at a time, until the buffer is empty."""
        while self._runs:
            # A full batch goes at once: lingering then would only cap the reported
            # rate at MAX_BATCH_RUNS per linger time and drop the rest at the bound.
            if len(self._runs) < MAX_BATCH_RUNS:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_now.wait(), timeout=self._linger)
            batch = [self._runs.popleft() for _ in range(min(MAX_BATCH_RUNS, len(self._runs)))]
            request = telemetry_pb2.RecordPreflightsRequest(runs=batch)
            try:
                await self._stub.RecordPreflights(request, timeout=self._timeout)
            except grpc.aio.AioRpcError as exc:
                log.info("%d preflight runs not reported: %s", len(batch), exc.code().name)
            except Exception:
                log.warning("preflight report failed", exc_info=True)

    async def _send(self, event: telemetry_pb2.Event) -> None:
        try:
            reply = await self._stub.RecordEvents(
                telemetry_pb2.RecordEventsRequest(events=[event]), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            log.info("gate decision not reported to telemetry: %s", exc.code().name)
            return
        except Exception:
            log.warning("gate decision report failed", exc_info=True)
            return
        for rejected in reply.rejected:
            log.warning("telemetry rejected a gate decision event: %s", rejected.error.error_code)

    async def drain(self) -> None:
        """Send what is buffered without lingering; wait for sends under way (each is
        bounded by its deadline)."""
        self._flush_now.set()
        senders = [*self._pending, *([self._run_sender] if self._run_sender else [])]
        if senders:
            await asyncio.gather(*senders, return_exceptions=True)
