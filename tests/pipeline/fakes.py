"""Real servers on loopback standing in for external systems in pipeline tests.

`FakeOpenAI` speaks the OpenAI chat-completions API over HTTP (aiohttp);
`FakeTelemetry` is a gRPC server implementing `TelemetryService.RecordEvents`,
idempotent by event id like the real one.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from ptf.telemetry.v1 import telemetry_pb2, telemetry_pb2_grpc


@dataclass
class Reply:
    """One scripted answer: an HTTP status and a body (a dict is sent as JSON)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hold: bool = False


def completion(document: dict[str, Any]) -> Reply:
    """A chat-completions reply whose message content is the extraction document."""
    return Reply(
        body={
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": json.dumps(document)},
                    "finish_reason": "stop",
                }
            ],
        }
    )


class FakeOpenAI:
    """Answers `POST /v1/chat/completions` from a script; the last reply repeats."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.release = asyncio.Event()
        self.base_url = ""

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        if reply.hold:
            await self.release.wait()
        if isinstance(reply.body, dict):
            return web.json_response(reply.body, status=reply.status, headers=reply.headers)
        return web.Response(text=str(reply.body or ""), status=reply.status, headers=reply.headers)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeOpenAI]:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
        try:
            yield self
        finally:
            self.release.set()
            await runner.cleanup()


class FakeTelemetry(telemetry_pb2_grpc.TelemetryServiceServicer):
    """RecordEvents only; counts how often each event id arrived."""

    def __init__(self) -> None:
        self.received: Counter[str] = Counter()
        self.events: dict[str, telemetry_pb2.Event] = {}
        self.reject_types: set[int] = set()

    async def RecordEvents(
        self, request: telemetry_pb2.RecordEventsRequest, context: Any
    ) -> telemetry_pb2.RecordEventsResponse:
        accepted = duplicates = 0
        rejected = []
        for index, event in enumerate(request.events):
            self.received[event.event_id] += 1
            if event.type in self.reject_types:
                rejected.append(
                    telemetry_pb2.RejectedEvent(
                        index=index,
                        error={"error_code": "INVALID_EVENT", "message": "rejected by test"},
                    )
                )
            elif event.event_id in self.events:
                duplicates += 1
            else:
                self.events[event.event_id] = event
                accepted += 1
        return telemetry_pb2.RecordEventsResponse(
            accepted=accepted, duplicates=duplicates, rejected=rejected
        )

    def RecordPreflight(self, request: Any, context: Any) -> Any:
        raise NotImplementedError

    def GetRunSummary(self, request: Any, context: Any) -> Any:
        raise NotImplementedError

    async def GetSystemHealth(
        self, request: telemetry_pb2.GetSystemHealthRequest, context: Any
    ) -> telemetry_pb2.SystemHealthReport:
        return telemetry_pb2.SystemHealthReport(
            report_json=json.dumps({"tenant_id": request.tenant_id, "fake": True})
        )

    @asynccontextmanager
    async def serving(self, port: int) -> AsyncIterator[FakeTelemetry]:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        telemetry_pb2_grpc.add_TelemetryServiceServicer_to_server(self, server)
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        try:
            yield self
        finally:
            await server.stop(0)

    def tenant_events(self, tenant_id: str) -> list[telemetry_pb2.Event]:
        return [e for e in self.events.values() if e.tenant_id == tenant_id]
