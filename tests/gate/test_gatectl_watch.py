"""`gatectl watch` against a real gate: every printed event is a live envelope (SPEC §5.5, §8)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis
from opentelemetry.sdk.metrics import MeterProvider
from ptf.gate.v1 import gate_pb2

from services.gate.decisions import DECISION
from services.runtime.config.operations import LiveSettings
from services.runtime.live.bus import BACKPRESSURE_DROP, LivePublisher
from services.runtime.live.channels import GATE_DECISIONS
from services.runtime.live.envelope import Envelope, parse_envelope
from services.runtime.live.metrics import LiveMetrics
from services.runtime.redis_client import RedisKeys
from tests.gate.service_support import (
    ADMIN_KEY,
    StartGate,
    gate_stub,
    new_release,
    preflight_request,
)
from tests.support.services import ServiceHandle

GATECTL = str(Path(sys.executable).parent / "gatectl")


@asynccontextmanager
async def _watching(svc: ServiceHandle, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """`gatectl watch ARGS` once it has said its stream is open; killed if still running."""
    process = await asyncio.create_subprocess_exec(
        GATECTL,
        "watch",
        *args,
        "--gate",
        svc.running.grpc_target,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "GATECTL_KEY": ADMIN_KEY},
        limit=1 << 20,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(30):
            assert (await process.stderr.readline()).startswith(b"watching gate decisions")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _check(svc: ServiceHandle, release: str) -> None:
    await gate_stub(svc).Check(
        gate_pb2.CheckRequest(preflight=preflight_request(release), operator="ops")
    )


async def _finish(process: asyncio.subprocess.Process) -> list[str]:
    async with asyncio.timeout(30):
        out, _ = await process.communicate()
    assert process.returncode == 0
    return out.decode().splitlines()


async def test_watch_json_prints_each_decision_as_a_valid_live_envelope(
    start_gate: StartGate,
) -> None:
    release = new_release()
    async with (
        start_gate() as svc,
        _watching(svc, "--release", release, "--count", "2", "--json") as process,
    ):
        await _check(svc, release)
        await _check(svc, release)
        lines = await _finish(process)
    envelopes = [parse_envelope(line) for line in lines]
    assert [(e.event, e.channel) for e in envelopes] == [(DECISION, GATE_DECISIONS)] * 2
    assert [e.data["release"] for e in envelopes] == [release, release]
    assert envelopes[0].seq < envelopes[1].seq


async def test_watch_prints_a_readable_line_per_decision(start_gate: StartGate) -> None:
    release = new_release()
    async with start_gate() as svc, _watching(svc, "--release", release, "--count", "1") as process:
        await _check(svc, release)
        lines = await _finish(process)
    assert len(lines) == 1
    assert f" {release} ALLOW RELEASE_OK override=none reasons=-" in lines[0]
    assert lines[0].startswith("#")


async def test_watch_prints_a_backpressure_drop_envelope_when_it_falls_behind(
    start_gate: StartGate, redis_client: aioredis.Redis, redis_prefix: str
) -> None:
    """Nobody reads gatectl's stdout while 400 events of 100 kB are published: once the
    pipe is full its prints block, it stops reading the stream, HTTP/2 flow control
    fills (40 MB is past any window the client grows) and the gate's buffer of 2
    overflows. Read afterwards, the output holds drop warning envelopes whose counts
    add up to every event missing, and the newest event."""
    release = new_release()
    total = 400
    publisher = LivePublisher(
        redis_client,
        RedisKeys(redis_prefix),
        LiveSettings(retained_per_channel=1),
        LiveMetrics(MeterProvider().get_meter("t")),
    )
    data = {
        "evaluated_at": "2026-01-01T00:00:00+00:00",
        "release": release,
        "verdict": "RELEASE_OK",
        "decision": "ALLOW",
        "reasons": [],
        "override_result": "none",
        "padding": "x" * 100_000,
    }
    async with (
        start_gate(PTF_LIVE_SUBSCRIBER_BUFFER="2") as svc,
        _watching(svc, "--release", release, "--json") as process,
    ):
        for n in range(total):
            await publisher.publish(GATE_DECISIONS, DECISION, {**data, "n": n})
        received = await _until_last(process, total - 1)
    drops = [e.data["dropped"] for e in received if e.event == BACKPRESSURE_DROP]
    assert drops, f"no drop warning among {len(received)} printed events"
    assert sum(drops) == total - (len(received) - len(drops))


async def _until_last(process: asyncio.subprocess.Process, last: int) -> list[Envelope]:
    """Printed envelopes up to the decision with data n == `last` (always delivered:
    the buffer drops the oldest)."""
    assert process.stdout is not None
    received: list[Envelope] = []
    async with asyncio.timeout(60):
        while not received or received[-1].data.get("n") != last:
            received.append(parse_envelope(await process.stdout.readline()))
    return received
