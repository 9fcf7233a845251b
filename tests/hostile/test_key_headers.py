"""A key header that is not even UTF-8 is a bad key (401), and a bad key is never a server error.

The probe: `X-Admin-Key: \\xff` sent as a raw byte once answered 500 on every
key-checked pipeline route and on telemetry's system health (the key hashing
raised `UnicodeEncodeError`), and each of those 500s counted in the 5xx rate
the release gate reads: about 50 requests without any valid key could have
blocked every release.
"""

from __future__ import annotations

import json

import asyncpg
import pytest

from tests.hostile.accounting import request_events, requests_by_class
from tests.hostile.raw_http import raw_request, request_bytes
from tests.support.polling import eventually
from tests.support.services import ServiceHandle

BAD_KEY = b"X-Admin-Key: \xff"
INCIDENT = "00000000-0000-4000-8000-000000000001"
JOB = "00000000-0000-4000-8000-000000000002"

PIPELINE_ROUTES = [
    ("POST", "/full-process"),
    ("GET", f"/jobs/{JOB}"),
    ("GET", "/admin/incidents"),
    ("POST", f"/admin/incidents/{INCIDENT}/resolve"),
    ("POST", f"/admin/incidents/{INCIDENT}/feedback"),
    ("GET", "/admin/feedback-stats"),
    ("GET", "/admin/system-health"),
    ("POST", "/admin/tenants/pilot/purge"),
    ("POST", "/admin/tenants/pilot/purge/confirm"),
]
TELEMETRY_ROUTES = [("GET", "/run-summary"), ("GET", "/admin/system-health")]
FLOOD = 50


@pytest.fixture
def service(request: pytest.FixtureRequest) -> ServiceHandle:
    """The running service a parameter names (`pipeline` or `telemetry`)."""
    handle: ServiceHandle = request.getfixturevalue(request.param)
    return handle


@pytest.mark.parametrize(
    ("service", "method", "path"),
    [("pipeline", *route) for route in PIPELINE_ROUTES]
    + [("telemetry", *route) for route in TELEMETRY_ROUTES],
    indirect=["service"],
)
async def test_non_utf8_key_header_is_401_on_every_key_checked_route(
    service: ServiceHandle, method: str, path: str
) -> None:
    response = await raw_request(service.running.http_port, request_bytes(method, path, BAD_KEY))
    assert (response.status, json.loads(response.body)["error_code"]) == (401, "INVALID_API_KEY")


async def test_bad_key_flood_does_not_move_the_5xx_count(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    """50 requests with a non-UTF-8 key: 50 more 4xx in the metric and the events, no 5xx."""
    port = pipeline.running.http_port
    metric_before = await requests_by_class(pipeline)
    events_4xx, events_5xx = (
        await request_events(pg, range(400, 500)),
        await request_events(pg, range(500, 600)),
    )
    for _ in range(FLOOD):
        response = await raw_request(port, request_bytes("GET", "/admin/incidents", BAD_KEY))
        assert response.status == 401
    await eventually(lambda: _at_least(pg, range(400, 500), events_4xx + FLOOD))
    metric_after = await requests_by_class(pipeline)
    assert (
        metric_after.get("4xx", 0.0) - metric_before.get("4xx", 0.0),
        metric_after.get("5xx", 0.0) - metric_before.get("5xx", 0.0),
        await request_events(pg, range(500, 600)) - events_5xx,
    ) == (FLOOD, 0, 0)


async def _at_least(pg: asyncpg.Pool, statuses: range, count: int) -> bool:
    return await request_events(pg, statuses) >= count
