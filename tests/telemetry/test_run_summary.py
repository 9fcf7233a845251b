"""Run summary over real events: GET /run-summary (seed 002 §6.1) and GetRunSummary (typed)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import pytest
from ptf.common.v1 import common_pb2
from ptf.telemetry.v1 import telemetry_pb2

from services.runtime.errors import ERROR_CODE_METADATA
from tests.support.services import ServiceHandle
from tests.telemetry.factories import (
    SERVICE_HEADERS,
    Slot,
    event,
    feedback,
    http_request,
    incident,
    invoice,
    iso,
    mismatch_invoice,
    new_tenant,
    queue_sample,
    record_all,
    resolved,
    stub,
    timestamp,
)

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "services/telemetry/schemas"
SCHEMA = json.loads((SCHEMA_PATH / "run_summary.schema.json").read_text())

# Seed 002 §6.1 field names: the schema must keep every one of them.
SEED_FIELDS = {
    "counts": {
        "total_invoices",
        "incident_count",
        "s1_count",
        "s2_count",
        "ocr_suspect_count",
        "resolved_count",
        "feedback_count",
    },
    "rates": {
        "mismatch_rate",
        "s1_rate",
        "ocr_suspect_rate",
        "feedback_coverage",
        "hint_accuracy_rate",
    },
    "latency": {"pipeline_total_ms", "extraction_ms"},
    "errors": {"by_code", "total_4xx", "total_5xx"},
    "queue": {"current_depth", "max_depth_in_period", "stuck_detected"},
}


def seed_example_events(tenant: str, slot: Slot) -> list[telemetry_pb2.Event]:
    """Seed 002 §6.2: 150 invoices, 23 incidents (3 S1, 5 OCR suspects), 18 resolved,
    12 feedback (9 correct hints), 400×5 and 404×2, queue max depth 3 now 0;
    plus 12 accept-rounding invoices (seed 003 §5.1)."""
    events = []
    for i in range(150):
        if i < 23:
            payload = mismatch_invoice(0.1)
        elif i < 35:
            payload = invoice(accept_rounding=True, flags=["ACCEPT_ROUNDING"])
        else:
            payload = invoice()
        events.append(event("INVOICE_PROCESSED", tenant, payload, slot.at(i)))
    for i in range(23):
        severity = "S1" if i < 3 else "S2"
        events.append(
            event("INCIDENT_CREATED", tenant, incident(severity, ocr_suspect=i < 5), slot.at(i))
        )
    events += [event("INCIDENT_RESOLVED", tenant, resolved(), slot.at(200 + i)) for i in range(18)]
    events += [
        event("FEEDBACK_SUBMITTED", tenant, feedback(i < 9), slot.at(300 + i)) for i in range(12)
    ]
    statuses = [400] * 5 + [404] * 2 + [200] * 50
    events += [
        event("HTTP_REQUEST", tenant, http_request(s), slot.at(i)) for i, s in enumerate(statuses)
    ]
    events += [
        event("QUEUE_SAMPLE", tenant, queue_sample(depth), slot.at(400 + i))
        for i, depth in enumerate([1, 3, 2, 0])
    ]
    return events


async def _summary_json(svc: ServiceHandle, params: dict[str, str]) -> dict[str, Any]:
    async with svc.http.get("/run-summary", params=params, headers=SERVICE_HEADERS) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


async def _http_error(svc: ServiceHandle, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
    async with svc.http.get("/run-summary", params=params, headers=SERVICE_HEADERS) as response:
        return response.status, await response.json()


async def test_http_summary_reproduces_the_seed_example_counts_and_rates(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    await record_all(telemetry.service_channel, seed_example_events(tenant, slot))
    summary = await _summary_json(telemetry, slot.query(tenant_id=tenant))
    assert summary["counts"] == {
        "total_invoices": 150,
        "incident_count": 23,
        "s1_count": 3,
        "s2_count": 20,
        "ocr_suspect_count": 5,
        "resolved_count": 18,
        "feedback_count": 12,
        "accept_rounding_count": 12,
    }
    assert {k: round(v, 4) for k, v in summary["rates"].items()} == {
        "mismatch_rate": 0.1533,
        "s1_rate": 0.1304,
        "ocr_suspect_rate": 0.2174,
        "feedback_coverage": 0.6667,
        "hint_accuracy_rate": 0.75,
    }
    assert summary["errors"] == {"by_code": {"400": 5, "404": 2}, "total_4xx": 7, "total_5xx": 0}
    assert summary["queue"] == {
        "current_depth": 0,
        "max_depth_in_period": 3,
        "stuck_detected": False,
    }


async def test_http_summary_validates_against_the_repository_schema(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    await record_all(telemetry.service_channel, seed_example_events(tenant, slot))
    summary = await _summary_json(telemetry, slot.query(tenant_id=tenant))
    jsonschema.validate(summary, SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


async def test_empty_window_summary_validates_and_has_null_rates(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    summary = await _summary_json(telemetry, slot.query(tenant_id=new_tenant()))
    jsonschema.validate(summary, SCHEMA, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    assert set(summary["rates"].values()) == {None}
    assert summary["latency"]["pipeline_total_ms"] == {"p50": None, "p95": None, "p99": None}
    assert summary["counts"]["total_invoices"] == 0


def test_schema_keeps_every_seed_field_plus_accept_rounding_count() -> None:
    for section, names in SEED_FIELDS.items():
        assert names <= set(SCHEMA["properties"][section]["properties"]), section
    assert "accept_rounding_count" in SCHEMA["properties"]["counts"]["required"]


async def test_summary_period_echoes_the_requested_window(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    summary = await _summary_json(telemetry, slot.query())
    assert summary["period"] == {"start": iso(slot.start), "end": iso(slot.end)}


async def test_percentiles_are_continuous_percentiles_of_pipeline_total_ms(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    events = [
        event(
            "INVOICE_PROCESSED",
            tenant,
            invoice(pipeline_total_ms=float(ms), extraction_ms=float(ms) / 2 if ms <= 10 else None),
            slot.at(ms),
        )
        for ms in range(1, 101)
    ]
    await record_all(telemetry.service_channel, events)
    latency = (await _summary_json(telemetry, slot.query(tenant_id=tenant)))["latency"]
    assert latency["pipeline_total_ms"] == pytest.approx({"p50": 50.5, "p95": 95.05, "p99": 99.01})
    assert latency["extraction_ms"] == pytest.approx({"p50": 2.75, "p95": 4.775, "p99": 4.955})


async def test_tenant_summary_counts_that_tenant_and_system_wide_events_only(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    mine, other = new_tenant(), new_tenant()
    events = [
        event("INVOICE_PROCESSED", mine, invoice(), slot.at(1)),
        event("INVOICE_PROCESSED", other, invoice(), slot.at(2)),
        event("HTTP_REQUEST", "", http_request(503), slot.at(3)),
        event("HTTP_REQUEST", other, http_request(500), slot.at(4)),
    ]
    await record_all(telemetry.service_channel, events)
    summary = await _summary_json(telemetry, slot.query(tenant_id=mine))
    assert summary["counts"]["total_invoices"] == 1
    assert summary["errors"]["by_code"] == {"503": 1}
    everyone = await _summary_json(telemetry, slot.query())
    assert everyone["counts"]["total_invoices"] == 2
    assert everyone["errors"]["total_5xx"] == 2


async def test_events_outside_the_window_are_not_counted(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    events = [
        event("INVOICE_PROCESSED", tenant, invoice(), slot.at(-1)),
        event("INVOICE_PROCESSED", tenant, invoice(), slot.at(0)),
        event("INVOICE_PROCESSED", tenant, invoice(), slot.end),
    ]
    await record_all(telemetry.service_channel, events)
    summary = await _summary_json(telemetry, slot.query(tenant_id=tenant))
    assert summary["counts"]["total_invoices"] == 1


async def test_grpc_summary_carries_counts_rates_and_request_totals(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    await record_all(telemetry.service_channel, seed_example_events(tenant, slot))
    summary = await stub(telemetry.service_channel).GetRunSummary(
        telemetry_pb2.GetRunSummaryRequest(period=slot.proto_window(), tenant_id=tenant)
    )
    assert summary.counts.total_invoices == 150
    assert round(summary.rates.mismatch_rate, 4) == 0.1533
    assert summary.errors.total_requests == 57
    assert summary.latency.pipeline_total_ms.sample_count == 150
    assert summary.tenant_id == tenant


async def test_grpc_summary_leaves_undefined_rates_unset(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    summary = await stub(telemetry.service_channel).GetRunSummary(
        telemetry_pb2.GetRunSummaryRequest(period=slot.proto_window(), tenant_id=new_tenant())
    )
    for name in ("mismatch_rate", "s1_rate", "ocr_suspect_rate", "feedback_coverage"):
        assert not summary.rates.HasField(name)
    assert not summary.latency.pipeline_total_ms.HasField("p95")


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "INVALID_WINDOW"),
        ({"since": "2026-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "INVALID_WINDOW"),
        ({"since": "2025-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "WINDOW_TOO_LARGE"),
        ({"since": "yesterday"}, "INVALID_TIME"),
        ({"since": "2026-01-01T00:00:00"}, "INVALID_TIME"),
        ({"since": "1999-12-31T00:00:00Z", "until": "2000-01-02T00:00:00Z"}, "INVALID_WINDOW"),
        ({"tenant_id": "../etc"}, "INVALID_TENANT_ID"),
        ({"tenant_id": "x" * 64}, "INVALID_TENANT_ID"),
        ({"tenant": "pilot"}, "UNKNOWN_PARAMETER"),
    ],
)
async def test_bad_summary_query_is_a_400_with_a_stable_code(
    telemetry: ServiceHandle, params: dict[str, str], code: str
) -> None:
    status, body = await _http_error(telemetry, params)
    assert (status, body["error_code"]) == (400, code)


async def test_repeated_query_parameter_is_a_400(telemetry: ServiceHandle) -> None:
    async with telemetry.http.get(
        "/run-summary?since=1h&since=2h", headers=SERVICE_HEADERS
    ) as response:
        assert response.status == 400
        assert (await response.json())["error_code"] == "REPEATED_PARAMETER"


def _grpc_request(
    start: datetime | None, end: datetime | None, tenant: str = ""
) -> telemetry_pb2.GetRunSummaryRequest:
    window = common_pb2.TimeWindow()
    if start is not None:
        window.start.CopyFrom(timestamp(start))
    if end is not None:
        window.end.CopyFrom(timestamp(end))
    return telemetry_pb2.GetRunSummaryRequest(period=window, tenant_id=tenant)


JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (_grpc_request(JAN_1 + timedelta(days=1), JAN_1), "INVALID_WINDOW"),
        (_grpc_request(JAN_1 - timedelta(days=40), JAN_1), "WINDOW_TOO_LARGE"),
        (_grpc_request(JAN_1 - timedelta(days=1), JAN_1, "Not A Tenant"), "INVALID_TENANT_ID"),
    ],
    ids=["since-after-until", "window-too-large", "bad-tenant"],
)
async def test_bad_grpc_summary_request_is_invalid_argument(
    telemetry: ServiceHandle, request_: telemetry_pb2.GetRunSummaryRequest, code: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(telemetry.service_channel).GetRunSummary(request_)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(caught.value.trailing_metadata() or ())[ERROR_CODE_METADATA] == code


async def test_grpc_summary_without_period_covers_the_last_24_hours(
    telemetry: ServiceHandle,
) -> None:
    summary = await stub(telemetry.service_channel).GetRunSummary(
        telemetry_pb2.GetRunSummaryRequest(tenant_id=new_tenant())
    )
    span = summary.period.end.ToDatetime() - summary.period.start.ToDatetime()
    assert span == timedelta(hours=24)
