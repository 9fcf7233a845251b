"""Timestamps no datetime can hold are bad input, never INTERNAL (probe: out-of-range values).

A protobuf `Timestamp` may carry any seconds and nanos on the wire, and an
RFC 3339 string may name year 1: converting either once raised inside the
servicer or the window arithmetic. Each is now the caller's error, and in a
batch of events only the bad event is refused.
"""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.common.v1 import common_pb2
from ptf.telemetry.v1 import telemetry_pb2

from tests.gate.service_support import error_code, error_field
from tests.support.services import ServiceHandle
from tests.telemetry.factories import event, http_request, new_tenant, record, stub

ADMIN = {"X-Admin-Key": "dev-admin-key"}
NOW = datetime.now(UTC)


async def test_event_with_negative_nanos_is_rejected_alone(telemetry: ServiceHandle) -> None:
    tenant = new_tenant()
    bad = event("HTTP_REQUEST", tenant, http_request(200), NOW)
    bad.occurred_at.nanos = -1
    good = event("HTTP_REQUEST", tenant, http_request(200), NOW)
    response = await record(telemetry.service_channel, [bad, good])
    assert (
        response.accepted,
        [(r.index, r.error.error_code, r.error.field) for r in response.rejected],
    ) == (1, [(0, "INVALID_OCCURRED_AT", "occurred_at")])


def _period(start: Timestamp | None = None, end: Timestamp | None = None) -> common_pb2.TimeWindow:
    window = common_pb2.TimeWindow()
    if start is not None:
        window.start.CopyFrom(start)
    if end is not None:
        window.end.CopyFrom(end)
    return window


def _year_one() -> Timestamp:
    return Timestamp(seconds=int(datetime(1, 1, 1, tzinfo=UTC).timestamp()))


@pytest.mark.parametrize(
    ("period", "field"),
    [
        (_period(start=Timestamp(seconds=2**62)), "period.start"),
        (_period(end=_year_one()), "until"),
    ],
    ids=["start-2**62", "end-year-1"],
)
async def test_run_summary_with_unrepresentable_period_is_invalid_argument(
    telemetry: ServiceHandle, period: common_pb2.TimeWindow, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(telemetry.service_channel).GetRunSummary(
            telemetry_pb2.GetRunSummaryRequest(period=period)
        )
    assert (caught.value.code(), error_field(caught.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        field,
    )


async def test_system_health_with_nanos_out_of_range_is_invalid_argument(
    telemetry: ServiceHandle,
) -> None:
    period = _period(start=Timestamp(seconds=int(NOW.timestamp()) - 3600, nanos=10**9))
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(telemetry.service_channel).GetSystemHealth(
            telemetry_pb2.GetSystemHealthRequest(period=period)
        )
    assert (caught.value.code(), error_code(caught.value), error_field(caught.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_TIME",
        "period.start",
    )


@pytest.mark.parametrize(
    "until", ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+05:00"], ids=["utc", "offset"]
)
async def test_run_summary_until_year_one_is_400(telemetry: ServiceHandle, until: str) -> None:
    async with telemetry.http.get("/run-summary", params={"until": until}, headers=ADMIN) as r:
        assert (r.status, (await r.json())["field"]) == (400, "until")
