"""Reports to telemetry are best effort and bounded: a stalled telemetry costs no growth."""

from __future__ import annotations

import asyncio
from typing import Any

from ptf.telemetry.v1 import telemetry_pb2

from services.gate.telemetry_report import MAX_BATCH_RUNS, MAX_BUFFERED_RUNS, DecisionReporter


class StalledTelemetry:
    """Fault: telemetry accepts calls and never answers."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.release = asyncio.Event()

    async def RecordPreflights(self, request: Any, **options: Any) -> None:
        self.batches.append(len(request.runs))
        await self.release.wait()


def _reporter(telemetry: StalledTelemetry, linger_seconds: float = 0) -> DecisionReporter:
    return DecisionReporter(
        telemetry,  # type: ignore[arg-type]
        timeout_seconds=60,
        linger_seconds=linger_seconds,
    )


async def test_runs_beyond_the_buffer_bound_are_dropped_and_counted() -> None:
    telemetry = StalledTelemetry()
    reporter = _reporter(telemetry)
    for _ in range(MAX_BUFFERED_RUNS + 10):
        reporter.report_preflight(telemetry_pb2.RecordPreflightRequest())
    await asyncio.sleep(0.01)
    assert (telemetry.batches, reporter.dropped) == ([MAX_BATCH_RUNS], 10)
    telemetry.release.set()
    await reporter.drain()


async def test_runs_reported_while_a_batch_is_in_flight_go_out_together_next() -> None:
    telemetry = StalledTelemetry()
    reporter = _reporter(telemetry)
    reporter.report_preflight(telemetry_pb2.RecordPreflightRequest())
    await asyncio.sleep(0.01)
    for _ in range(7):
        reporter.report_preflight(telemetry_pb2.RecordPreflightRequest())
    telemetry.release.set()
    await reporter.drain()
    assert (telemetry.batches, reporter.dropped) == ([1, 7], 0)


async def test_runs_reported_within_the_linger_time_go_out_in_one_batch() -> None:
    telemetry = StalledTelemetry()
    telemetry.release.set()
    reporter = _reporter(telemetry, linger_seconds=0.05)
    for _ in range(3):
        reporter.report_preflight(telemetry_pb2.RecordPreflightRequest())
        await asyncio.sleep(0.005)
    await reporter.drain()
    assert telemetry.batches == [3]


class CountingTelemetry:
    """Telemetry that answers at once and says when a batch arrived."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.arrived = asyncio.Event()

    async def RecordPreflights(self, request: Any, **options: Any) -> None:
        self.batches.append(len(request.runs))
        self.arrived.set()


async def test_a_full_batch_goes_without_lingering() -> None:
    telemetry = CountingTelemetry()
    reporter = DecisionReporter(
        telemetry,  # type: ignore[arg-type]
        timeout_seconds=60,
        linger_seconds=3600,
    )
    for _ in range(MAX_BATCH_RUNS):
        reporter.report_preflight(telemetry_pb2.RecordPreflightRequest())
    await asyncio.wait_for(telemetry.arrived.wait(), timeout=30)
    assert telemetry.batches == [MAX_BATCH_RUNS]
    await reporter.drain()
