"""`LiveService/Subscribe` on real pipeline services over loopback gRPC (docs/SPEC.md §8).

The subscriber is the runtime's client helper (`live_stream`), so every event
a test sees went through the envelope parser; refusals are checked by status
and `ptf-error-code`, the same codes as SSE's `GET /live`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import grpc
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from ptf.gate.v1 import gate_pb2
from ptf.live.v1 import live_pb2, live_pb2_grpc

from services.pipeline.service import make_definition
from services.runtime.errors import ERROR_CODE_METADATA
from services.runtime.live.bus import BACKPRESSURE_DROP, LivePublisher
from services.runtime.live.channels import GATE_DECISIONS
from services.runtime.live.client import LiveStream, envelope_of, live_stream
from services.runtime.live.envelope import Envelope, EnvelopeError
from services.runtime.live.grpc_stream import live_event
from services.runtime.live.metrics import LiveMetrics
from services.runtime.live.streams import MAX_LAST_EVENT_ID
from tests.conftest import StartService
from tests.gate.service_support import (
    gate_starter,
    gate_stub,
    new_release,
    preflight_request,
    signal_servers,
)
from tests.pipeline.service_support import (
    DEV_ADMIN_KEY,
    NO_TELEMETRY,
    document,
    fast_settings,
    load_sample_tables,
    new_tenant,
    submit,
)
from tests.support.polling import eventually
from tests.support.services import ServiceHandle

ADMIN = (("x-admin-key", DEV_ADMIN_KEY),)
# The idle subscriber's HTTP/2 window stays at its initial size (no BDP growth).
_NO_WINDOW_GROWTH = [("grpc.http2.bdp_probe", 0)]


@asynccontextmanager
async def _pipeline(
    start_service: StartService, workers: int = 0, **env: str
) -> AsyncIterator[ServiceHandle]:
    async with start_service(
        make_definition(fast_settings(inprocess_workers=workers)),
        PTF_TELEMETRY_ADDR=NO_TELEMETRY,
        **env,
    ) as svc:
        yield svc


def _publisher(svc: ServiceHandle) -> LivePublisher:
    """Publishes through the service's own Redis connection and keyspace."""
    runtime = svc.running.runtime
    meter = MeterProvider().get_meter("test")
    return LivePublisher(runtime.redis, runtime.keys, runtime.config.live, LiveMetrics(meter))


async def _next(stream: LiveStream) -> Envelope:
    async with asyncio.timeout(20):
        return await anext(aiter(stream))


async def _refusal(
    svc: ServiceHandle, channel: str, metadata: tuple[tuple[str, str], ...], last_event_id: int = 0
) -> tuple[grpc.StatusCode, str | None]:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        async with live_stream(
            svc.channel, channel, metadata=metadata, last_event_id=last_event_id
        ):
            pass
    error = refused.value
    return error.code(), dict(error.trailing_metadata() or ()).get(ERROR_CODE_METADATA)


async def test_a_processed_job_arrives_on_the_tenants_jobs_channel(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    async with _pipeline(start_service, workers=1) as svc:
        await load_sample_tables(pg)
        tenant = await new_tenant(pg)
        channel = f"jobs.{tenant.tenant_id}"
        async with live_stream(svc.channel, channel, metadata=tenant.metadata) as stream:
            job = await submit(svc, tenant, document())
            event = await _next(stream)
        assert (event.event, event.channel) == ("job.state", channel)
        assert (event.data["job_id"], event.data["state"]) == (job["job_id"], "DONE")


async def test_a_subscriber_on_one_pipeline_receives_a_job_processed_by_the_other(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    """Only `two` runs a worker; the event reaches `one` through Redis pub/sub."""
    async with _pipeline(start_service) as one, _pipeline(start_service, workers=1) as two:
        await load_sample_tables(pg)
        tenant = await new_tenant(pg)
        async with live_stream(
            one.channel, f"jobs.{tenant.tenant_id}", metadata=tenant.metadata
        ) as stream:
            job = await submit(two, tenant, document())
            event = await _next(stream)
        assert (event.data["job_id"], event.data["state"]) == (job["job_id"], "DONE")


async def test_a_gate_check_decision_arrives_on_the_gates_own_live_service(
    start_service: StartService, tmp_path: Path
) -> None:
    release = new_release()
    async with signal_servers() as signals:
        start_gate = gate_starter(start_service, signals, tmp_path / "gate-metrics")
        async with start_gate() as gate, live_stream(gate.admin_channel, GATE_DECISIONS) as stream:
            check = gate_pb2.CheckRequest(preflight=preflight_request(release), operator="ops")
            await gate_stub(gate).Check(check)
            event = await _next(stream)
    assert (event.event, event.channel, event.data["release"]) == (
        "gate.decision",
        GATE_DECISIONS,
        release,
    )


@pytest.mark.parametrize("channel", ["gate.decisions", "health"])
async def test_a_tenant_key_on_an_operators_channel_is_permission_denied(
    start_service: StartService, pg: asyncpg.Pool, channel: str
) -> None:
    async with _pipeline(start_service) as svc:
        tenant = await new_tenant(pg)
        refused = await _refusal(svc, channel, tenant.metadata)
    assert refused == (grpc.StatusCode.PERMISSION_DENIED, "CHANNEL_FORBIDDEN")


async def test_a_tenant_key_on_another_tenants_channel_is_permission_denied(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    async with _pipeline(start_service) as svc:
        tenant, other = await new_tenant(pg), await new_tenant(pg)
        refused = await _refusal(svc, f"incidents.{other.tenant_id}", tenant.metadata)
    assert refused == (grpc.StatusCode.PERMISSION_DENIED, "CHANNEL_FORBIDDEN")


@pytest.mark.parametrize(
    ("metadata", "code"),
    [((), "MISSING_API_KEY"), ((("x-api-key", "not-a-key"),), "INVALID_API_KEY")],
)
async def test_no_or_an_invalid_key_is_unauthenticated(
    start_service: StartService, metadata: tuple[tuple[str, str], ...], code: str
) -> None:
    async with _pipeline(start_service) as svc:
        refused = await _refusal(svc, "health", metadata)
    assert refused == (grpc.StatusCode.UNAUTHENTICATED, code)


@pytest.mark.parametrize(
    ("channel", "status", "code"),
    [
        ("", grpc.StatusCode.INVALID_ARGUMENT, "MISSING_CHANNEL"),
        ("jobs." + "a" * 200, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_CHANNEL"),
        ("jobs.Bad Tenant!", grpc.StatusCode.PERMISSION_DENIED, "CHANNEL_FORBIDDEN"),
        ("nope", grpc.StatusCode.PERMISSION_DENIED, "CHANNEL_FORBIDDEN"),
    ],
)
async def test_a_missing_oversized_or_unknown_channel_is_refused_as_sse_refuses_it(
    start_service: StartService, channel: str, status: grpc.StatusCode, code: str
) -> None:
    async with _pipeline(start_service) as svc:
        refused = await _refusal(svc, channel, ADMIN)
    assert refused == (status, code)


async def test_a_request_that_is_not_a_subscribe_request_is_invalid_argument(
    start_service: StartService,
) -> None:
    """Bytes that do not parse as the message (a truncated field) are the client's error."""
    async with _pipeline(start_service) as svc:
        subscribe = svc.admin_channel.unary_stream("/ptf.live.v1.LiveService/Subscribe")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in subscribe(b"\x0a\x05ab"):
                pass
    trailers = dict(refused.value.trailing_metadata() or ())
    assert (refused.value.code(), trailers.get(ERROR_CODE_METADATA)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "MALFORMED_REQUEST",
    )


async def test_an_out_of_range_last_event_id_is_invalid_argument(
    start_service: StartService,
) -> None:
    async with _pipeline(start_service) as svc:
        refused = await _refusal(svc, "health", ADMIN, last_event_id=MAX_LAST_EVENT_ID + 1)
    assert refused == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_LAST_EVENT_ID")


async def test_last_event_id_delivers_only_later_events(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    async with _pipeline(start_service) as svc:
        tenant = await new_tenant(pg)
        channel = f"incidents.{tenant.tenant_id}"
        publisher = _publisher(svc)
        seqs = [await publisher.publish(channel, "incident.created", {"n": n}) for n in range(5)]
        async with live_stream(
            svc.channel, channel, metadata=tenant.metadata, last_event_id=seqs[2]
        ) as stream:
            resumed = [await _next(stream), await _next(stream)]
            live = await publisher.publish(channel, "incident.created", {"n": 5})
            later = await _next(stream)
    assert [e.data["n"] for e in resumed] == [3, 4]
    assert (later.data["n"], later.seq, stream.last_seq) == (5, live, live)


async def test_a_subscriber_that_reads_nothing_gets_the_newest_200_after_one_drop_count(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    """1,000 events (8 KB each) are published while the subscriber reads nothing.

    The bounded buffer (200) sits between the bus and the gRPC write: the first
    few events leave it before the client's HTTP/2 window (64 KiB, not grown)
    is full, the write of the next then waits, and from there the buffer drops
    its oldest. So the subscriber gets those in-flight events, one
    `backpressure_drop` whose count is exactly what it missed, then the newest
    200; with nothing in flight the count would be 800. Measured here: 9 events
    in flight, count 791 (three runs). A second, reading subscriber on the same
    process shows when the last event has been offered to both.
    """
    async with (
        # Only the buffer matters here; a short retained list keeps 8 MB out of Redis.
        _pipeline(
            start_service, PTF_LIVE_SUBSCRIBER_BUFFER="200", PTF_LIVE_RETAINED_PER_CHANNEL="10"
        ) as svc,
        grpc.aio.insecure_channel(svc.running.grpc_target, options=_NO_WINDOW_GROWTH) as slow,
    ):
        tenant = await new_tenant(pg)
        channel = f"jobs.{tenant.tenant_id}"
        publisher = _publisher(svc)
        padding = "x" * 8000
        async with (
            live_stream(slow, channel, metadata=tenant.metadata) as idle,
            live_stream(svc.admin_channel, channel) as witness,
        ):
            for n in range(1000):
                await publisher.publish(channel, "job.state", {"n": n, "padding": padding})
            while (await _next(witness)).data.get("n") != 999:
                pass
            received: list[Envelope] = []
            while not received or received[-1].data.get("n") != 999:
                received.append(await _next(idle))
    warnings = [i for i, e in enumerate(received) if e.event == BACKPRESSURE_DROP]
    assert len(warnings) == 1, [e.data.get("dropped") for e in received if e.event != "job.state"]
    (at,) = warnings
    numbers = [e.data["n"] for e in received if e.event == "job.state"]
    print(f"{at} events in flight, drop count {received[at].data['dropped']}")
    assert numbers == list(range(at)) + list(range(800, 1000))
    assert received[at].data == {"dropped": 800 - at}


async def test_an_idle_stream_carries_heartbeats(start_service: StartService) -> None:
    async with _pipeline(start_service, PTF_LIVE_HEARTBEAT_SECONDS="0.2") as svc:
        call = live_pb2_grpc.LiveServiceStub(svc.admin_channel).Subscribe(
            live_pb2.SubscribeRequest(channel="health")
        )
        async with asyncio.timeout(20):
            first = await call.read()
        call.cancel()
    assert isinstance(first, live_pb2.SubscribeResponse)
    assert first.WhichOneof("item") == "heartbeat"


async def test_shutdown_ends_an_open_stream_with_ok(start_service: StartService) -> None:
    async with _pipeline(start_service) as svc:
        call = live_pb2_grpc.LiveServiceStub(svc.admin_channel).Subscribe(
            live_pb2.SubscribeRequest(channel="health")
        )
        await call.initial_metadata()
        await svc.running.shutdown()
        async with asyncio.timeout(20):
            code = await call.code()
    assert code == grpc.StatusCode.OK


async def _metrics(svc: ServiceHandle) -> str:
    async with svc.http.get("/metrics") as response:
        return await response.text()


async def test_grpc_and_sse_streams_count_in_one_active_streams_gauge(
    start_service: StartService, pg: asyncpg.Pool
) -> None:
    async with _pipeline(start_service) as svc:
        tenant = await new_tenant(pg)
        channel = f"jobs.{tenant.tenant_id}"
        async with (
            live_stream(svc.channel, channel, metadata=tenant.metadata),
            svc.http.get("/live", params={"channel": channel}, headers=tenant.headers) as sse,
        ):
            async with asyncio.timeout(20):
                assert (await sse.content.readline()).startswith(b": open")
            both_open = await _metrics(svc)

        async def closed() -> bool:
            return 'ptf_live_active_streams{family="jobs"} 0.0' in await _metrics(svc)

        await eventually(closed, within=20)
    assert 'ptf_live_active_streams{family="jobs"} 2.0' in both_open


def _envelope(**overrides: object) -> Envelope:
    fields: dict[str, object] = {
        "event": "job.state",
        "channel": "jobs.acme",
        "seq": 7,
        "ts": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "data": {"job_id": "j", "count": 800},
    }
    fields.update(overrides)
    return Envelope(**fields)  # type: ignore[arg-type]


def test_an_event_carries_its_envelope_field_for_field() -> None:
    envelope = _envelope(ok=False, error_code="BACKPRESSURE_DROP", event=BACKPRESSURE_DROP)
    assert envelope_of(live_event(envelope)) == envelope


def test_the_client_refuses_an_event_that_breaks_the_envelope_contract() -> None:
    event = live_event(_envelope())
    event.error_code = "SET_WHILE_OK"
    with pytest.raises(EnvelopeError, match="error_code"):
        envelope_of(event)


def test_the_client_refuses_an_event_whose_data_is_not_a_json_object() -> None:
    event = live_event(_envelope())
    event.data_json = "[1, 2]"
    with pytest.raises(EnvelopeError, match="data"):
        envelope_of(event)
