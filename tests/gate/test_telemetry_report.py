"""Reports to telemetry are best effort and bounded: a stalled telemetry costs no growth."""

from __future__ import annotations

import asyncio
from typing import Any

from ptf.telemetry.v1 import telemetry_pb2

from services.gate.telemetry_report import MAX_PENDING, DecisionReporter


class StalledTelemetry:
    """Fault: telemetry accepts calls and never answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def RecordPreflight(self, request: Any, **options: Any) -> None:
        self.calls += 1
        await asyncio.Event().wait()


async def test_sends_beyond_the_pending_bound_are_dropped_and_counted() -> None:
    telemetry = StalledTelemetry()
    reporter = DecisionReporter(telemetry, timeout_seconds=60)  # type: ignore[arg-type]
    for _ in range(MAX_PENDING + 10):
        reporter.report_preflight(telemetry_pb2.RecordPreflightRequest())
    await asyncio.sleep(0)
    assert (telemetry.calls, reporter.dropped) == (MAX_PENDING, 10)
    for task in list(reporter._pending):
        task.cancel()
    await asyncio.gather(*reporter._pending, return_exceptions=True)
