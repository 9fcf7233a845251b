"""The event store going away: clear 503/UNAVAILABLE answers with Retry-After, no crash."""

from __future__ import annotations

import grpc
import pytest

from services.runtime.errors import ERROR_CODE_METADATA
from tests.support.services import ServiceHandle
from tests.telemetry.factories import SERVICE_HEADERS, Slot, event, invoice, new_tenant, record


async def test_record_events_without_database_is_unavailable_with_retry_after(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    """Fault: the service's database pool is gone. RecordEvents must answer UNAVAILABLE with
    STORE_UNAVAILABLE and a retry-after hint (the pipeline outbox retries later)."""
    message = event("INVOICE_PROCESSED", new_tenant(), invoice(), slot.at(1))
    await record(telemetry.service_channel, [])  # the key is checked (and cached) first
    telemetry.running.runtime.pool.terminate()
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await record(telemetry.service_channel, [message])
    trailers = dict(caught.value.trailing_metadata() or ())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert trailers[ERROR_CODE_METADATA] == "STORE_UNAVAILABLE"
    assert trailers["retry-after"] == "5"


async def test_run_summary_without_database_is_503_with_retry_after(
    telemetry: ServiceHandle, slot: Slot
) -> None:
    """Fault: the service's database pool is gone. GET /run-summary must answer 503
    STORE_UNAVAILABLE with a Retry-After header, not a 500."""
    async with telemetry.http.get("/run-summary", headers=SERVICE_HEADERS) as warm:
        assert warm.status == 200  # the key is checked (and cached) first
    telemetry.running.runtime.pool.terminate()
    async with telemetry.http.get(
        "/run-summary", params=slot.query(), headers=SERVICE_HEADERS
    ) as response:
        assert response.status == 503
        assert response.headers["Retry-After"] == "5"
        assert (await response.json())["error_code"] == "STORE_UNAVAILABLE"
