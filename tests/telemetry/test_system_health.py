"""System health report: GET /admin/system-health and GetSystemHealth (SPEC §4.3)."""

from __future__ import annotations

import json
from typing import Any

import grpc
import pytest
from ptf.telemetry.v1 import telemetry_pb2

from services.runtime.errors import ERROR_CODE_METADATA
from tests.support.services import ServiceHandle
from tests.telemetry.factories import (
    Slot,
    event,
    http_request,
    incident,
    invoice,
    mismatch_invoice,
    new_tenant,
    queue_sample,
    record_all,
    stub,
)

ADMIN = {"X-Admin-Key": "dev-admin-key"}


async def _report(svc: ServiceHandle, params: dict[str, str]) -> dict[str, Any]:
    async with svc.http.get("/admin/system-health", params=params, headers=ADMIN) as response:
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body


def _buckets(report: dict[str, Any]) -> dict[str, int]:
    return {b["label"]: b["count"] for b in report["mismatch_histogram"]["buckets"]}


@pytest.mark.parametrize(
    ("headers", "code"),
    [({}, "MISSING_API_KEY"), ({"X-Admin-Key": "dev-admin-kez"}, "INVALID_API_KEY")],
    ids=["missing", "wrong"],
)
async def test_http_report_without_a_valid_key_is_401(
    telemetry: ServiceHandle, headers: dict[str, str], code: str
) -> None:
    async with telemetry.http.get("/admin/system-health", headers=headers) as response:
        assert response.status == 401
        assert (await response.json())["error_code"] == code


@pytest.mark.parametrize(
    ("metadata", "code"),
    [((), "MISSING_API_KEY"), ((("x-admin-key", "nope"),), "INVALID_API_KEY")],
    ids=["missing", "wrong"],
)
async def test_grpc_report_without_a_valid_key_is_unauthenticated(
    telemetry: ServiceHandle, metadata: tuple[tuple[str, str], ...], code: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(telemetry.channel).GetSystemHealth(
            telemetry_pb2.GetSystemHealthRequest(), metadata=metadata
        )
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert dict(caught.value.trailing_metadata() or ())[ERROR_CODE_METADATA] == code


async def test_unauthorized_request_is_refused_before_its_parameters_are_read(
    telemetry: ServiceHandle,
) -> None:
    async with telemetry.http.get("/admin/system-health?since=garbage") as response:
        assert response.status == 401


async def test_clean_run_has_zero_in_every_mismatch_bucket(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    events = [event("INVOICE_PROCESSED", tenant, invoice(), slot.at(i)) for i in range(30)]
    events.append(event("INVOICE_PROCESSED", tenant, invoice(accept_rounding=True), slot.at(31)))
    await record_all(telemetry.service_channel, events)
    report = await _report(telemetry, slot.query(tenant_id=tenant))
    assert set(_buckets(report).values()) == {0}
    assert report["mismatch_histogram"]["total"] == 0


async def test_mismatches_are_bucketed_at_edges_from_the_thresholds(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    ratios = [0.01, 0.05, 0.1, 0.2, 0.5, 5.0, None]
    events = [
        event("INVOICE_PROCESSED", tenant, mismatch_invoice(r), slot.at(i))  # type: ignore[arg-type]
        for i, r in enumerate(ratios)
    ]
    await record_all(telemetry.service_channel, events)
    report = await _report(telemetry, slot.query(tenant_id=tenant))
    assert _buckets(report) == {"[0, 0.05)": 1, "[0.05, 0.2)": 2, "[0.2, 1)": 2, "[1, inf)": 1}
    assert report["mismatch_histogram"]["unknown_ratio"] == 1
    assert report["mismatch_histogram"]["total"] == 7


async def test_primary_flag_and_action_class_distributions_count_incidents(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    events = [
        event("INCIDENT_CREATED", tenant, incident(ocr_suspect=True), slot.at(1)),
        event("INCIDENT_CREATED", tenant, incident(), slot.at(2)),
        event(
            "INCIDENT_CREATED",
            tenant,
            incident("S1", primary_flag="MARKET_PRICE_MISSING", action_class="FIX_MARKET_DATA"),
            slot.at(3),
        ),
    ]
    await record_all(telemetry.service_channel, events)
    report = await _report(telemetry, slot.query(tenant_id=tenant))
    assert report["primary_flag_distribution"] == {
        "INVOICE_TOTAL_MISMATCH": 2,
        "MARKET_PRICE_MISSING": 1,
    }
    assert report["action_class_distribution"] == {
        "FIX_MARKET_DATA": 1,
        "VERIFY_INVOICE_LOGIC": 1,
        "VERIFY_OCR": 1,
    }


def _provider_events(
    tenant: str, slot: Slot, provider: str, invoices: int, incidents: int, *, baseline: bool
) -> list[Any]:
    at = slot.in_baseline if baseline else slot.at
    return [
        event("INVOICE_PROCESSED", tenant, invoice(provider=provider), at(i))
        for i in range(invoices)
    ] + [
        event("INCIDENT_CREATED", tenant, incident(provider=provider), at(i))
        for i in range(incidents)
    ]


async def test_top_offenders_need_enough_invoices_and_rank_by_incident_rate(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    events = (
        _provider_events(tenant, slot, "alpha", 20, 10, baseline=False)
        + _provider_events(tenant, slot, "beta", 25, 5, baseline=False)
        + _provider_events(tenant, slot, "gamma", 19, 19, baseline=False)
    )
    await record_all(telemetry.service_channel, events)
    report = await _report(telemetry, slot.query(tenant_id=tenant))
    assert [(o["provider"], o["incident_rate"]) for o in report["top_offenders"]] == [
        ("alpha", 0.5),
        ("beta", 0.2),
    ]


async def test_drift_alert_fires_when_a_rate_doubles_over_its_baseline(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    events = _provider_events(tenant, slot, "alpha", 100, 5, baseline=True)
    events += _provider_events(tenant, slot, "alpha", 40, 10, baseline=False)
    await record_all(telemetry.service_channel, events)
    report = await _report(telemetry, slot.query(tenant_id=tenant))
    alerts = {(a["provider"], a["metric"]): a for a in report["drift_alerts"]}
    assert set(alerts) == {("*", "incident_rate"), ("alpha", "incident_rate")}
    alert = alerts[("alpha", "incident_rate")]
    assert (alert["current_rate"], alert["baseline_rate"], alert["expected_count"]) == (
        0.25,
        0.05,
        2.0,
    )


async def test_no_drift_alert_below_the_minimum_sample(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    events = _provider_events(tenant, slot, "alpha", 100, 0, baseline=True)
    events += _provider_events(tenant, slot, "alpha", 19, 19, baseline=False)
    await record_all(telemetry.service_channel, events)
    report = await _report(telemetry, slot.query(tenant_id=tenant))
    assert report["drift_alerts"] == []


async def test_digest_alerts_and_5xx_count_follow_alert_thresholds(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    tenant = new_tenant()
    recomputed = invoice()
    events = [event("INVOICE_PROCESSED", tenant, invoice(), slot.at(i)) for i in range(7)]
    events += [event("INVOICE_PROCESSED", tenant, recomputed, slot.at(10 + i)) for i in range(3)]
    events += [event("JOB_EXHAUSTED", tenant, {"job_id": f"j{i}"}, slot.at(20)) for i in range(3)]
    events += [event("INCIDENT_CREATED", tenant, incident(), slot.at(30)) for _ in range(8)]
    events += [
        event("INCIDENT_CREATED", tenant, incident("S1", primary_flag="CALC_BUG"), slot.at(31))
        for _ in range(2)
    ]
    events += [
        event("QUEUE_SAMPLE", tenant, queue_sample(4, stuck=True), slot.at(40)),
        event("HTTP_REQUEST", tenant, http_request(500), slot.at(41)),
        event("HTTP_REQUEST", tenant, http_request(502), slot.at(42)),
    ]
    await record_all(telemetry.service_channel, events)
    report = await _report(telemetry, slot.query(tenant_id=tenant))
    assert [a["code"] for a in report["digest_alerts"]] == [
        "BUG_REPORT_RATE_HIGH",
        "EXHAUSTED_RATE_HIGH",
        "QUEUE_STUCK",
        "RECOMPUTE_LIMIT_EXCEEDED",
    ]
    assert report["digest"] == {
        "bug_report_rate": 0.2,
        "exhausted_rate": 3 / 13,
        "stuck_count": 1,
        "recompute_over_limit_count": 1,
        "error_5xx_count": 2,
    }
    assert report["errors"] == {"total_5xx": 2}


async def test_quiet_run_raises_no_digest_alert(telemetry: ServiceHandle, slot: Slot) -> None:
    tenant = new_tenant()
    events = [event("INVOICE_PROCESSED", tenant, invoice(), slot.at(i)) for i in range(10)]
    await record_all(telemetry.service_channel, events)
    report = await _report(telemetry, slot.query(tenant_id=tenant))
    assert report["digest_alerts"] == []


async def test_grpc_report_equals_the_http_report(telemetry: ServiceHandle, slot: Slot) -> None:
    tenant = new_tenant()
    await record_all(
        telemetry.service_channel, _provider_events(tenant, slot, "alpha", 20, 3, baseline=False)
    )
    response = await stub(telemetry.service_channel).GetSystemHealth(
        telemetry_pb2.GetSystemHealthRequest(period=slot.proto_window(), tenant_id=tenant),
        metadata=(("x-admin-key", "dev-admin-key"),),
    )
    grpc_report = json.loads(response.report_json)
    http_report = await _report(telemetry, slot.query(tenant_id=tenant))
    for report in (grpc_report, http_report):
        report.pop("generated_at")
    assert grpc_report == http_report


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "INVALID_WINDOW"),
        ({"since": "400d"}, "WINDOW_TOO_LARGE"),
        ({"tenant_id": "UPPER"}, "INVALID_TENANT_ID"),
        ({"provider": "x"}, "UNKNOWN_PARAMETER"),
    ],
)
async def test_bad_report_query_is_a_400_with_a_stable_code(
    telemetry: ServiceHandle, params: dict[str, str], code: str
) -> None:
    async with telemetry.http.get("/admin/system-health", params=params, headers=ADMIN) as response:
        assert response.status == 400
        assert (await response.json())["error_code"] == code


async def test_bad_grpc_report_window_is_invalid_argument(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    request = telemetry_pb2.GetSystemHealthRequest(period=slot.proto_window())
    request.period.start.CopyFrom(request.period.end)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub(telemetry.service_channel).GetSystemHealth(
            request, metadata=(("x-admin-key", "dev-admin-key"),)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(caught.value.trailing_metadata() or ())[ERROR_CODE_METADATA] == "INVALID_WINDOW"
