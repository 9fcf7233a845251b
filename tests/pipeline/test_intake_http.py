"""`POST /full-process` and `GET /jobs/{id}`: synchronous and asynchronous intake, idempotency."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import asyncpg

from tests.pipeline.service_support import (
    Tenant,
    business_rows,
    document,
    new_tenant,
    s2_document,
)
from tests.support.polling import eventually
from tests.support.services import ServiceHandle


async def test_synchronous_submission_returns_the_processed_result(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}", json=document(), headers=tenant.headers
    ) as response:
        body = await response.json()
    assert response.status == 200
    assert body["state"] == "DONE"
    assert body["deduplicated"] is False
    assert body["result"]["quality"]["grade"] == "OK"
    assert body["result"]["offer"]["period"] == "2026-01"
    assert body["incident_id"] is None
    assert body["pipeline_total_ms"] > 0


async def test_mismatching_invoice_reports_its_incident_in_the_result(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}", json=s2_document(), headers=tenant.headers
    ) as response:
        body = await response.json()
    assert body["result"]["incident"]["severity"] == "S2"
    assert body["incident_id"] is not None


async def test_async_submission_answers_202_and_the_job_completes(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}&async=true",
        json=document(),
        headers=tenant.headers,
    ) as response:
        accepted = await response.json()
    assert response.status == 202
    assert response.headers["Location"].startswith(f"/jobs/{accepted['job_id']}")

    async def done() -> dict[str, object] | None:
        async with pipeline.http.get(
            f"/jobs/{accepted['job_id']}?tenant_id={tenant.tenant_id}", headers=tenant.headers
        ) as reply:
            job: dict[str, object] = await reply.json()
        return job if job["state"] == "DONE" else None

    job = await eventually(done)
    assert job["result"] is not None


async def test_resubmitting_the_same_document_returns_the_same_job(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    doc = document()
    url = f"/full-process?tenant_id={tenant.tenant_id}"
    async with pipeline.http.post(url, json=doc, headers=tenant.headers) as first:
        first_body = await first.json()
    reordered = json.dumps(dict(reversed(list(doc.items()))), indent=2)
    async with pipeline.http.post(
        url, data=reordered, headers={**tenant.headers, "Content-Type": "application/json"}
    ) as second:
        second_body = await second.json()
    assert second_body["job_id"] == first_body["job_id"]
    assert second_body["deduplicated"] is True
    rows = await business_rows(pg, tenant.tenant_id)
    assert (rows["invoices"], rows["jobs"]) == (1, 1)


async def test_concurrent_identical_submissions_create_one_job(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    doc = document()
    url = f"/full-process?tenant_id={tenant.tenant_id}&async=true"

    async def submit() -> str:
        async with pipeline.http.post(url, json=doc, headers=tenant.headers) as response:
            job_id: str = (await response.json())["job_id"]
            return job_id

    job_ids = await asyncio.gather(*(submit() for _ in range(8)))
    assert len(set(job_ids)) == 1
    assert (await business_rows(pg, tenant.tenant_id))["jobs"] == 1


async def test_same_document_for_another_tenant_is_a_separate_job(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    other = await new_tenant(pg)
    doc = document()
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}", json=doc, headers=tenant.headers
    ) as first:
        first_id = (await first.json())["job_id"]
    async with pipeline.http.post(
        f"/full-process?tenant_id={other.tenant_id}", json=doc, headers=other.headers
    ) as second:
        second_body = await second.json()
    assert second_body["job_id"] != first_id
    assert second_body["deduplicated"] is False


async def test_extraction_json_uploaded_as_multipart_file_is_processed(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    form = aiohttp.FormData()
    form.add_field(
        "file",
        json.dumps(document()).encode(),
        filename="invoice.json",
        content_type="application/json",
    )
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}", data=form, headers=tenant.headers
    ) as response:
        body = await response.json()
    assert response.status == 200
    assert body["result"]["quality"]["grade"] == "OK"


async def test_job_of_another_tenant_is_not_found(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    other = await new_tenant(pg)
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}", json=document(), headers=tenant.headers
    ) as response:
        job_id = (await response.json())["job_id"]
    async with pipeline.http.get(
        f"/jobs/{job_id}?tenant_id={other.tenant_id}", headers=other.headers
    ) as reply:
        body = await reply.json()
    assert reply.status == 404
    assert body["error_code"] == "JOB_NOT_FOUND"


async def test_request_outcomes_become_http_request_events(
    pipeline: ServiceHandle, tenant: Tenant, pg: asyncpg.Pool
) -> None:
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}", json=document(), headers=tenant.headers
    ):
        pass

    async def recorded() -> list[asyncpg.Record]:
        return await pg.fetch(
            "SELECT payload FROM pipeline_outbox"
            " WHERE tenant_id = $1 AND event_type = 'HTTP_REQUEST'",
            tenant.tenant_id,
        )

    rows = await eventually(recorded)
    payload = json.loads(rows[0]["payload"])
    assert payload["route"] == "/full-process"
    assert payload["method"] == "POST"
    assert payload["status"] == 200


async def test_processed_invoices_and_requests_show_in_metrics(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}", json=s2_document(), headers=tenant.headers
    ):
        pass
    async with pipeline.http.get("/metrics") as response:
        text = await response.text()
    assert 'ptf_pipeline_invoices_processed_total{grade="CHECK"}' in text
    assert any(
        line.startswith("ptf_pipeline_incidents_created_total{")
        and 'primary_flag="INVOICE_TOTAL_MISMATCH"' in line
        for line in text.splitlines()
    )
    assert 'code="200",method="POST",route="/full-process"' in text


async def test_extraction_json_sent_with_curls_default_content_type_is_processed(
    pipeline: ServiceHandle, tenant: Tenant
) -> None:
    async with pipeline.http.post(
        f"/full-process?tenant_id={tenant.tenant_id}",
        data=json.dumps(document()).encode(),
        headers={**tenant.headers, "Content-Type": "application/x-www-form-urlencoded"},
    ) as response:
        body = await response.json()
    assert response.status == 200
    assert body["state"] == "DONE"
