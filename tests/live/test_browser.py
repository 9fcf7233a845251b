"""A real browser as the live client: headless Chromium's EventSource receives a job event.

EventSource cannot send headers, so the page's origin is a small test server
that serves the page and proxies `/live` to the pipeline, adding the tenant's
X-API-Key on the way: the key never appears in a URL (nor in a log of one).
The test reads the page's DOM through the DevTools protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from services.pipeline.service import make_definition
from tests.conftest import StartService
from tests.pipeline.service_support import (
    NO_TELEMETRY,
    Tenant,
    document,
    fast_settings,
    load_sample_tables,
    new_tenant,
    submit,
)
from tests.support.polling import eventually
from tests.support.services import ServiceHandle

_PAGE = """<!doctype html>
<html><body><pre id="out"></pre><script>
const source = new EventSource("/live?channel=CHANNEL");
source.addEventListener("job.state", (event) => {
  document.getElementById("out").textContent = event.data;
  source.close();
});
</script></body></html>
"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "chromium is not installed: run `make tools` (Debian package chromium)"
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def _origin(
    pipeline: ServiceHandle, tenant: Tenant, opened: asyncio.Event
) -> AsyncIterator[str]:
    """The page's origin: `/` is the page, `/live` the pipeline's stream with the key added."""
    channel = f"jobs.{tenant.tenant_id}"

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=_PAGE.replace("CHANNEL", channel), content_type="text/html")

    async def live(request: web.Request) -> web.StreamResponse:
        async with pipeline.http.get(
            "/live", params=request.query, headers=tenant.headers
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={"Content-Type": upstream.headers["Content-Type"]},
            )
            await response.prepare(request)
            async for line in upstream.content:
                if line.startswith(b": open"):
                    opened.set()
                await response.write(line)
            return response

    app = web.Application()
    app.router.add_get("/", page)
    app.router.add_get("/live", live)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def _browser(url: str, profile: Path) -> AsyncIterator[int]:
    """Headless Chromium showing `url`; yields its DevTools port."""
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        f"--user-data-dir={profile}",
        f"--remote-debugging-port={port}",
        url,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.kill()
            await process.wait()


async def _page_text(session: aiohttp.ClientSession, devtools: int) -> str:
    """The text of the page's #out element, read over the DevTools protocol."""
    async with session.get(f"http://127.0.0.1:{devtools}/json/list") as listing:
        targets: list[dict[str, Any]] = await listing.json()
    pages = [t for t in targets if t.get("type") == "page"]
    if not pages:
        return ""
    async with session.ws_connect(pages[0]["webSocketDebuggerUrl"]) as ws:
        await ws.send_json(
            {
                "id": 1,
                "method": "Runtime.evaluate",
                "params": {
                    "expression": "document.getElementById('out')?.textContent ?? ''",
                    "returnByValue": True,
                },
            }
        )
        async for message in ws:
            reply = json.loads(message.data)
            if reply.get("id") == 1:
                return str(reply.get("result", {}).get("result", {}).get("value", ""))
    return ""


async def test_a_headless_chromium_event_source_receives_a_job_event(
    start_service: StartService, pg: asyncpg.Pool, tmp_path: Path
) -> None:
    async with start_service(
        make_definition(fast_settings(inprocess_workers=1)), PTF_TELEMETRY_ADDR=NO_TELEMETRY
    ) as pipeline:
        await load_sample_tables(pg)
        tenant = await new_tenant(pg)
        opened = asyncio.Event()
        async with (
            _origin(pipeline, tenant, opened) as url,
            _browser(url, tmp_path / "profile") as devtools,
            aiohttp.ClientSession() as session,
        ):
            await asyncio.wait_for(opened.wait(), 60)
            job = await submit(pipeline, tenant, document())

            async def received() -> str:
                with contextlib.suppress(aiohttp.ClientError):
                    return await _page_text(session, devtools)
                return ""

            event = json.loads(await eventually(received, within=60, interval=0.5))
    assert event["event"] == "job.state"
    assert event["channel"] == f"jobs.{tenant.tenant_id}"
    assert event["data"]["job_id"] == job["job_id"]
    assert event["data"]["state"] == "DONE"
