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


async def test_runs_beyond_the_buffer_bound_are_dropped_and_counted() -> None:
    telemetry = StalledTelemetry()
    reporter = DecisionReporter(telemetry, timeout_seconds=60)  # type: ignore[arg-type]
    for _ in range(MAX_BUFFERED_RUNS + 10):
        reporter.report_preflight(telemetry_pb2.RecordPreflightRequest())
    await asyncio.sleep(0)
    assert (telemetry.batches, reporter.dropped) == ([MAX_BATCH_RUNS], 10)
    telemetry.release.set()
    await reporter.drain()


async def test_runs_reported_while_a_batch_is_in_flight_go_out_together_next() -> None:
    telemetry = StalledTelemetry()
    reporter = DecisionReporter(telemetry, timeout_seconds=60)  # type: ignore[arg-type]
    reporter.report_preflight(telemetry_pb2.RecordPreflightRequest())
    await asyncio.sleep(0)
    for _ in range(7):
        reporter.report_preflight(telemetry_pb2.RecordPreflightRequest())
    telemetry.release.set()
    await reporter.drain()
    assert (telemetry.batches, reporter.dropped) == ([1, 7], 0)
