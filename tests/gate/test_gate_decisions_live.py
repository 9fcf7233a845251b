"""Gate decisions on the runtime live layer (docs/SPEC.md §8): the `gate.decisions` channel.

Real gate processes (in-process services on loopback gRPC) on the real test
Redis; the second subscriber is a runtime LiveBus on its own connection, as
another process of any service would hold it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import grpc
import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider
from ptf.gate.v1 import gate_pb2, gate_pb2_grpc

from services.gate.decisions import DECISION, watched_event
from services.runtime.config.operations import LiveSettings
from services.runtime.live.bus import BACKPRESSURE_DROP, LivePublisher
from services.runtime.live.channels import GATE_DECISIONS
from services.runtime.live.envelope import Envelope, parse_envelope
from services.runtime.live.metrics import LiveMetrics
from services.runtime.redis_client import RedisKeys
from tests.gate.service_support import (
    ADMIN,
    StartGate,
    gate_stub,
    new_release,
    preflight_request,
)
from tests.support.live import running_bus
from tests.support.polling import eventually
from tests.support.services import ServiceHandle

_NO_WINDOW_GROWTH = [("grpc.http2.bdp_probe", 0)]


def _check(release: str) -> gate_pb2.CheckRequest:
    return gate_pb2.CheckRequest(preflight=preflight_request(release), operator="ops@example")


@asynccontextmanager
async def _watch(svc: ServiceHandle, release: str = "") -> AsyncIterator[grpc.aio.Call]:
    call = gate_stub(svc).WatchDecisions(
        gate_pb2.WatchDecisionsRequest(release=release), metadata=ADMIN
    )
    await call.initial_metadata()
    try:
        yield call
    finally:
        call.cancel()


async def _read(call: grpc.aio.Call) -> gate_pb2.DecisionEvent:
    async with asyncio.timeout(15):
        event = await call.read()  # type: ignore[attr-defined]
    assert isinstance(event, gate_pb2.DecisionEvent)
    return event


def _decision_envelope(release: str, seq: int = 1) -> Envelope:
    return Envelope(
        event=DECISION,
        channel=GATE_DECISIONS,
        seq=seq,
        ts=datetime.now(UTC),
        data={
            "evaluated_at": datetime.now(UTC).isoformat(),
            "release": release,
            "verdict": "RELEASE_OK",
            "decision": "ALLOW",
            "reasons": [],
            "override_result": "none",
        },
    )


async def test_a_check_decision_arrives_as_a_gate_decisions_envelope_on_another_live_bus(
    start_gate: StartGate, redis_url: str, redis_prefix: str
) -> None:
    release = new_release()
    async with start_gate() as svc, running_bus(redis_url, redis_prefix) as other:
        with await other.subscribe(GATE_DECISIONS) as subscription:
            await gate_stub(svc).Check(_check(release))
            async with asyncio.timeout(15):
                envelope = await subscription.next()
    assert envelope is not None
    assert (envelope.event, envelope.channel, envelope.ok) == (DECISION, GATE_DECISIONS, True)
    assert envelope.data["release"] == release
    assert (envelope.data["decision"], envelope.data["verdict"]) == ("ALLOW", "RELEASE_OK")


async def test_decisions_of_two_gate_processes_reach_a_watcher_with_increasing_seq(
    start_gate: StartGate,
) -> None:
    release = new_release()
    async with start_gate() as one, start_gate() as two, _watch(two, release) as call:
        for deciding in (one, two, one):
            await gate_stub(deciding).Check(_check(release))
        events = [await _read(call) for _ in range(3)]
    seqs = [event.seq for event in events]
    assert seqs == sorted(set(seqs))
    assert len(seqs) == 3


async def test_each_watched_decision_carries_its_validated_envelope(start_gate: StartGate) -> None:
    release = new_release()
    async with start_gate() as svc, _watch(svc, release) as call:
        await gate_stub(svc).Check(_check(release))
        event = await _read(call)
    envelope = parse_envelope(event.envelope)
    assert (envelope.seq, envelope.event, envelope.data["release"]) == (
        event.seq,
        DECISION,
        release,
    )


async def test_a_check_decision_is_retained_for_resume(
    start_gate: StartGate, redis_url: str, redis_prefix: str
) -> None:
    release = new_release()
    async with start_gate() as svc, running_bus(redis_url, redis_prefix) as other:
        await gate_stub(svc).Check(_check(release))
        retained = await other.retained_after(GATE_DECISIONS, 0)
    assert [e.data["release"] for e in retained] == [release]


async def test_a_watcher_that_reads_nothing_gets_one_backpressure_drop_event(
    start_gate: StartGate, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """The watcher's gRPC stream stops taking events once HTTP/2 flow control is full
    (the client reads nothing and its window does not grow), so the gate's bounded
    buffer of 2 overflows; when the watcher reads, it gets the survivors and one
    drop warning. Published straight into the channel, the events need no Check."""
    release = new_release()
    publisher = LivePublisher(
        redis_client,
        RedisKeys(redis_prefix),
        LiveSettings(),
        LiveMetrics(MeterProvider().get_meter("t")),
    )
    padding = "x" * 2000
    total = 1500
    async with (
        start_gate(PTF_LIVE_SUBSCRIBER_BUFFER="2") as svc,
        grpc.aio.insecure_channel(svc.running.grpc_target, options=_NO_WINDOW_GROWTH) as channel,
    ):
        call = gate_pb2_grpc.GateServiceStub(channel).WatchDecisions(
            gate_pb2.WatchDecisionsRequest(release=release), metadata=ADMIN
        )
        await call.initial_metadata()
        for n in range(total):
            data = {**_decision_envelope(release).data, "n": n, "padding": padding}
            await publisher.publish(GATE_DECISIONS, DECISION, data)
        received: list[Envelope] = []
        while not received or received[-1].data.get("n") != total - 1:
            received.append(parse_envelope((await _read(call)).envelope))
        call.cancel()
    drops = [e.data["dropped"] for e in received if e.event == BACKPRESSURE_DROP]
    assert drops, f"no drop warning among {len(received)} events"
    assert sum(drops) == total - (len(received) - len(drops))


def test_a_drop_warning_reaches_a_watcher_of_any_release() -> None:
    drop = Envelope(
        event=BACKPRESSURE_DROP,
        channel=GATE_DECISIONS,
        seq=7,
        ts=datetime.now(UTC),
        ok=False,
        error_code="BACKPRESSURE_DROP",
        data={"dropped": 3},
    )
    event = watched_event(drop, "some-release")
    assert event is not None
    assert (event.seq, parse_envelope(event.envelope).data) == (7, {"dropped": 3})


def test_a_decision_of_another_release_is_not_streamed_to_a_filtered_watcher() -> None:
    assert watched_event(_decision_envelope("other-release"), "wanted-release") is None


def test_a_decision_whose_data_this_gate_cannot_read_is_skipped() -> None:
    envelope = _decision_envelope("r1")
    broken = Envelope(
        event=DECISION,
        channel=GATE_DECISIONS,
        seq=envelope.seq,
        ts=envelope.ts,
        data={"release": "r1"},
    )
    assert watched_event(broken, None) is None


async def test_published_gate_decisions_are_counted_by_family_on_metrics(
    start_gate: StartGate,
) -> None:
    async with start_gate() as svc:
        await gate_stub(svc).Check(_check(new_release()))
        async with svc.http.get("/metrics") as response:
            text = await response.text()
    assert 'ptf_live_events_published_total{family="gate.decisions"} 1.0' in text


async def test_an_open_watch_is_an_active_gate_decisions_stream_on_metrics(
    start_gate: StartGate,
) -> None:
    async with start_gate() as svc:

        async def streams() -> str:
            async with svc.http.get("/metrics") as response:
                return await response.text()

        async with _watch(svc):
            open_text = await streams()
        closed = 'ptf_live_active_streams{family="gate.decisions"} 0.0'

        async def closed_again() -> bool:
            return closed in await streams()

        await eventually(closed_again, within=10)
    assert 'ptf_live_active_streams{family="gate.decisions"} 1.0' in open_text
