"""A client that hangs up halfway through its body caused that failure, not the server.

Probe: the body read failed with `ConnectionResetError`, which the pipeline's
store guard took for the database going away: 503 DATABASE_UNAVAILABLE, a
"database unavailable" warning, and one more 5xx in both
`ptf_http_requests_total` and the HTTP_REQUEST events the gate's error rate
reads. Now it is 499 (client closed request) and no 5xx anywhere.
"""

from __future__ import annotations

import asyncio

import asyncpg

from tests.hostile.accounting import request_events, requests_by_class
from tests.support.polling import eventually
from tests.support.services import ServiceHandle

HALF_A_BODY = (
    b"POST /admin/incidents/00000000-0000-4000-8000-000000000001/resolve HTTP/1.1\r\n"
    b"Host: 127.0.0.1\r\nX-Admin-Key: dev-admin-key\r\nContent-Type: application/json\r\n"
    b'Content-Length: 100\r\n\r\n{"resolution_reason": "'
)


async def _hang_up_mid_body(port: int) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HALF_A_BODY)
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def test_hang_up_mid_body_counts_as_a_client_error(
    pipeline: ServiceHandle, pg: asyncpg.Pool
) -> None:
    metric_before = await requests_by_class(pipeline)
    events_before = await request_events(pg, range(400, 600))
    events_5xx = await request_events(pg, range(500, 600))
    await _hang_up_mid_body(pipeline.running.http_port)

    async def recorded() -> bool:
        return await request_events(pg, range(400, 600)) > events_before

    await eventually(recorded)
    metric_after = await requests_by_class(pipeline)
    assert (
        metric_after.get("4xx", 0.0) - metric_before.get("4xx", 0.0),
        metric_after.get("5xx", 0.0) - metric_before.get("5xx", 0.0),
        await request_events(pg, range(500, 600)) - events_5xx,
    ) == (1, 0, 0)
