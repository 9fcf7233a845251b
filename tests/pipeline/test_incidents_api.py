"""Incidents and feedback: the admin HTTP API and the same operations over gRPC (SPEC §3.4)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg
import pytest
from ptf.pipeline.v1 import pipeline_pb2, pipeline_pb2_grpc

from services.pipeline.service import make_definition
from services.runtime.devservers import free_port
from tests.conftest import StartService
from tests.pipeline.fakes import FakeTelemetry
from tests.pipeline.service_support import (
    ADMIN,
    DEV_ADMIN_KEY,
    Tenant,
    document,
    fast_settings,
    field,
    new_tenant,
    s2_document,
    submit,
)
from tests.support.services import ServiceHandle


def s1_document() -> dict[str, Any]:
    """A severe mismatch read with high confidence: S1, VERIFY_INVOICE_LOGIC."""
    return document(invoice_total_with_vat_tl=field(60000))


async def _incident(svc: ServiceHandle, tenant: Tenant, doc: dict[str, Any]) -> str:
    incident_id: str = (await submit(svc, tenant, doc))["incident_id"]
    assert incident_id
    return incident_id


async def _get(svc: ServiceHandle, path: str, **params: Any) -> tuple[int, Any]:
    async with svc.http.get(path, params=params, headers=ADMIN) as response:
        return response.status, await response.json()


async def _post(svc: ServiceHandle, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with svc.http.post(path, json=body, headers=ADMIN) as response:
        return response.status, await response.json()


async def _resolve(svc: ServiceHandle, incident_id: str, reason: str = "fixed") -> Any:
    status, body = await _post(
        svc,
        f"/admin/incidents/{incident_id}/resolve",
        {"resolution_reason": reason, "operator": "ayse"},
    )
    assert status == 200, body
    return body


def _feedback(**overrides: Any) -> dict[str, Any]:
    return {
        "hint_correct": True,
        "actual_root_cause": "INVOICE_LOGIC",
        "note": "checked the bill",
        "operator": "ayse",
        **overrides,
    }


async def test_incident_pages_follow_an_opaque_cursor_without_gaps_or_duplicates(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    created = [await _incident(pipeline, tenant, s2_document()) for _ in range(5)]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"tenant_id": tenant.tenant_id, "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        status, page = await _get(pipeline, "/admin/incidents", **params)
        assert status == 200
        seen.extend(i["incident_id"] for i in page["incidents"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(created))


async def test_incidents_filter_by_severity_and_status(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    s1 = await _incident(pipeline, tenant, s1_document())
    s2 = await _incident(pipeline, tenant, s2_document())
    await _resolve(pipeline, s2)
    _, severe = await _get(pipeline, "/admin/incidents", tenant_id=tenant.tenant_id, severity="S1")
    _, resolved = await _get(
        pipeline, "/admin/incidents", tenant_id=tenant.tenant_id, status="RESOLVED"
    )
    assert [i["incident_id"] for i in severe["incidents"]] == [s1]
    assert [i["incident_id"] for i in resolved["incidents"]] == [s2]


async def test_incident_carries_every_field_of_the_spec(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    await _incident(pipeline, tenant, s2_document())
    _, page = await _get(pipeline, "/admin/incidents", tenant_id=tenant.tenant_id)
    incident = page["incidents"][0]
    assert incident["tenant_id"] == tenant.tenant_id
    assert incident["provider"] == "Test Elektrik"
    assert (incident["severity"], incident["primary_flag"]) == ("S2", "INVOICE_TOTAL_MISMATCH")
    assert "INVOICE_TOTAL_MISMATCH" in incident["flags"]
    assert incident["action_hint"] == {
        "action_class": "VERIFY_INVOICE_LOGIC",
        "primary_suspect": "INVOICE_LOGIC",
    }
    assert incident["mismatch_info"] == {
        "has_mismatch": True,
        "severity": "S2",
        "delta_tl": 8000.0,
        "ratio": 0.16,
        "computed_total_tl": 42000.0,
        "invoice_total_tl": 50000.0,
        "suspect_reason": "INVOICE_LOGIC",
    }
    assert (incident["status"], incident["resolution_reason"], incident["feedback_json"]) == (
        "OPEN",
        None,
        None,
    )
    assert incident["created_at"]
    assert incident["updated_at"]
    assert incident["resolved_at"] is None


async def test_resolving_closes_the_incident_and_records_its_event(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    incident_id = await _incident(pipeline, tenant, s2_document())
    resolved = await _resolve(pipeline, incident_id, "customer billed twice")
    assert (resolved["status"], resolved["resolution_reason"]) == (
        "RESOLVED",
        "customer billed twice",
    )
    assert resolved["resolved_at"] is not None
    payloads = await pg.fetch(
        "SELECT payload FROM pipeline_outbox WHERE tenant_id = $1"
        " AND event_type = 'INCIDENT_RESOLVED'",
        tenant.tenant_id,
    )
    assert [json.loads(p["payload"]) for p in payloads] == [
        {"incident_id": incident_id, "resolution_reason": "customer billed twice"}
    ]


async def test_resolving_again_with_another_reason_is_a_conflict(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    incident_id = await _incident(pipeline, tenant, s2_document())
    await _resolve(pipeline, incident_id, "first")
    status, body = await _post(
        pipeline, f"/admin/incidents/{incident_id}/resolve", {"resolution_reason": "second"}
    )
    assert (status, body["error_code"]) == (409, "INCIDENT_ALREADY_RESOLVED")


async def test_feedback_on_an_open_incident_is_a_conflict(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    incident_id = await _incident(pipeline, tenant, s2_document())
    status, body = await _post(pipeline, f"/admin/incidents/{incident_id}/feedback", _feedback())
    assert (status, body["error_code"]) == (409, "INCIDENT_NOT_RESOLVED")


async def test_feedback_sets_feedback_json_and_updated_at(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    incident_id = await _incident(pipeline, tenant, s2_document())
    resolved = await _resolve(pipeline, incident_id)
    status, body = await _post(pipeline, f"/admin/incidents/{incident_id}/feedback", _feedback())
    assert status == 200
    assert body["feedback_json"]["hint_correct"] is True
    assert body["feedback_json"]["actual_root_cause"] == "INVOICE_LOGIC"
    assert body["feedback_json"]["note"] == "checked the bill"
    assert body["updated_at"] > resolved["updated_at"]
    events = await pg.fetchval(
        "SELECT count(*) FROM pipeline_outbox WHERE tenant_id = $1"
        " AND event_type = 'FEEDBACK_SUBMITTED'",
        tenant.tenant_id,
    )
    assert events == 1


@pytest.mark.parametrize(
    ("body", "code", "field_name"),
    [
        (_feedback(note="n" * 2001), "TEXT_TOO_LONG", "note"),
        (_feedback(hint_correct="yes"), "INVALID_TYPE", "hint_correct"),
        (_feedback(actual_root_cause=""), "MISSING_FIELD", "actual_root_cause"),
    ],
    ids=["note-over-2000-chars", "hint-not-boolean", "no-root-cause"],
)
async def test_invalid_feedback_is_refused_with_400_and_nothing_changes(
    pipeline: ServiceHandle, tenant: Tenant, body: dict[str, Any], code: str, field_name: str
) -> None:
    """Fault: malformed feedback. Must: 400 naming the field; the incident keeps no feedback."""
    incident_id = await _incident(pipeline, tenant, s2_document())
    await _resolve(pipeline, incident_id)
    status, reply = await _post(pipeline, f"/admin/incidents/{incident_id}/feedback", body)
    assert (status, reply["error_code"], reply["field"]) == (400, code, field_name)
    _, page = await _get(pipeline, "/admin/incidents", tenant_id=tenant.tenant_id)
    assert page["incidents"][0]["feedback_json"] is None


async def test_feedback_stats_give_coverage_and_hint_accuracy(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    incidents = [await _incident(pipeline, tenant, s2_document()) for _ in range(3)]
    for incident_id in incidents[:2]:
        await _resolve(pipeline, incident_id)
    await _post(pipeline, f"/admin/incidents/{incidents[0]}/feedback", _feedback())
    status, stats = await _get(pipeline, "/admin/feedback-stats", tenant_id=tenant.tenant_id)
    assert status == 200
    assert stats == {
        "tenant_id": tenant.tenant_id,
        "resolved_count": 2,
        "feedback_count": 1,
        "hint_correct_count": 1,
        "feedback_coverage": 0.5,
        "hint_accuracy_rate": 1.0,
    }


async def test_feedback_stats_rates_are_null_without_resolved_incidents(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    _, stats = await _get(pipeline, "/admin/feedback-stats", tenant_id=tenant.tenant_id)
    assert (stats["feedback_coverage"], stats["hint_accuracy_rate"]) == (None, None)


async def test_admin_routes_without_an_admin_key_are_unauthenticated(
    pipeline: ServiceHandle,
) -> None:
    async with pipeline.http.get("/admin/incidents") as response:
        body = await response.json()
    assert (response.status, body["error_code"]) == (401, "MISSING_API_KEY")


async def test_an_operators_route_with_a_tenant_key_is_forbidden(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    async with pipeline.http.get(
        "/admin/system-health", headers={"X-Admin-Key": tenant.api_key}
    ) as response:
        body = await response.json()
    assert (response.status, body["error_code"]) == (403, "ROLE_FORBIDDEN")


@pytest.mark.parametrize("header", ["X-API-Key", "X-Admin-Key"])
async def test_tenant_key_lists_only_its_own_incidents_over_http(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool, header: str
) -> None:
    """The same authorization as over gRPC: a tenant reads its own incidents, whichever
    header carries its key."""
    other = await new_tenant(pg)
    mine = await _incident(pipeline, tenant, s2_document())
    await _incident(pipeline, other, s2_document())
    async with pipeline.http.get("/admin/incidents", headers={header: tenant.api_key}) as response:
        body = await response.json()
    assert (response.status, [i["incident_id"] for i in body["incidents"]]) == (200, [mine])


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"cursor": "not-a-cursor"}, "INVALID_CURSOR"),
        ({"limit": "0"}, "INVALID_LIMIT"),
        ({"severity": "S9"}, "INVALID_SEVERITY"),
        ({"status": "CLOSED"}, "INVALID_STATUS"),
        ({"tenant_id": "Bad Tenant"}, "INVALID_TENANT_ID"),
    ],
)
async def test_invalid_listing_parameters_are_refused_with_400(
    pipeline: ServiceHandle, params: dict[str, str], code: str
) -> None:
    status, body = await _get(pipeline, "/admin/incidents", **params)
    assert (status, body["error_code"]) == (400, code)


async def test_unknown_incident_is_not_found(pipeline: ServiceHandle) -> None:
    status, body = await _post(
        pipeline,
        "/admin/incidents/00000000-0000-0000-0000-000000000000/resolve",
        {"resolution_reason": "x"},
    )
    assert (status, body["error_code"]) == (404, "INCIDENT_NOT_FOUND")


async def test_system_health_falls_back_to_the_pipeline_view_when_telemetry_is_down(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    """Fault: telemetry unreachable. Must: 200 with what the pipeline knows, `source` saying so."""
    await _incident(pipeline, tenant, s2_document())
    status, report = await _get(pipeline, "/admin/system-health", tenant_id=tenant.tenant_id)
    assert status == 200
    assert report["source"] == "pipeline"
    assert report["telemetry_error"] == "UNAVAILABLE"
    assert report["incidents"]["primary_flag_distribution"] == {"INVOICE_TOTAL_MISMATCH": 1}
    assert report["invoices"]["processed"] == 1


async def test_system_health_comes_from_telemetry_when_it_answers(
    start_service: StartService,
) -> None:
    port = free_port()
    async with (
        FakeTelemetry().serving(port),
        start_service(
            make_definition(fast_settings()), PTF_TELEMETRY_ADDR=f"127.0.0.1:{port}"
        ) as svc,
    ):
        status, report = await _get(svc, "/admin/system-health", tenant_id="pilot")
    assert status == 200
    assert (report["source"], report["tenant_id"], report["fake"]) == ("telemetry", "pilot", True)


def _stub(svc: ServiceHandle) -> pipeline_pb2_grpc.PipelineServiceAsyncStub:
    return pipeline_pb2_grpc.PipelineServiceStub(svc.channel)


async def test_tenant_key_lists_only_its_own_incidents_over_grpc(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    other = await new_tenant(pg)
    mine = await _incident(pipeline, tenant, s2_document())
    await _incident(pipeline, other, s2_document())
    reply = await _stub(pipeline).ListIncidents(
        pipeline_pb2.ListIncidentsRequest(), metadata=tenant.metadata
    )
    assert [i.incident_id for i in reply.incidents] == [mine]


async def test_resolve_feedback_and_stats_over_grpc(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    incident_id = await _incident(pipeline, tenant, s1_document())
    admin = (("x-admin-key", DEV_ADMIN_KEY),)
    stub = _stub(pipeline)
    resolved = await stub.ResolveIncident(
        pipeline_pb2.ResolveIncidentRequest(
            incident_id=incident_id, resolution_reason="fixed", operator="ali"
        ),
        metadata=admin,
    )
    incident = await stub.SubmitFeedback(
        pipeline_pb2.SubmitFeedbackRequest(
            incident_id=incident_id, hint_correct=False, actual_root_cause="OCR_LOCALE_SUSPECT"
        ),
        metadata=admin,
    )
    stats = await stub.GetFeedbackStats(
        pipeline_pb2.GetFeedbackStatsRequest(tenant_id=tenant.tenant_id), metadata=admin
    )
    assert resolved.status == pipeline_pb2.INCIDENT_STATUS_RESOLVED
    assert incident.action_hint.action_class == pipeline_pb2.ACTION_CLASS_VERIFY_INVOICE_LOGIC
    assert incident.feedback.actual_root_cause == "OCR_LOCALE_SUSPECT"
    assert (stats.resolved_count, stats.feedback_count, stats.hint_correct_count) == (1, 1, 0)
    assert (stats.feedback_coverage, stats.hint_accuracy_rate) == (1.0, 0.0)
