"""The bench's load client against real servers on loopback: answers, keep-alive, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from bench.http_client import HttpError, KeepAliveClient
from services.runtime.devservers import free_port

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def _server(handler: Handler, *, keepalive_seconds: float = 75.0) -> AsyncIterator[int]:
    """An aiohttp server answering POST /echo with `handler`; yields its port."""
    app = web.Application()
    app.router.add_post("/echo", handler)
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=keepalive_seconds)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port
    finally:
        await runner.cleanup()


def _peer_recorder(peers: list[object]) -> Handler:
    """Echoes the body with 201 and notes which client connection carried the request."""

    async def handler(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        peers.append(request.transport.get_extra_info("peername"))
        return web.Response(status=201, body=await request.read())

    return handler


async def test_a_post_answers_with_the_status_and_the_body() -> None:
    async with _server(_peer_recorder([])) as port, KeepAliveClient("127.0.0.1", port) as client:
        response = await client.post("/echo", b'{"a": 1}', {"Content-Type": "application/json"})
    assert (response.status, response.body) == (201, b'{"a": 1}')


async def test_the_request_headers_reach_the_server() -> None:
    seen: dict[str, str] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        seen.update(request.headers)
        return web.Response(text="ok")

    async with _server(handler) as port, KeepAliveClient("127.0.0.1", port) as client:
        await client.post("/echo", b"x", {"X-API-Key": "k1"})
    assert seen["X-API-Key"] == "k1"
    assert seen["Content-Length"] == "1"


async def test_posts_one_after_another_share_one_connection() -> None:
    peers: list[object] = []
    async with _server(_peer_recorder(peers)) as port, KeepAliveClient("127.0.0.1", port) as client:
        for _ in range(5):
            await client.post("/echo", b"x", {})
    assert len(set(peers)) == 1


async def test_posts_in_flight_together_use_a_connection_each() -> None:
    peers: list[object] = []
    async with _server(_peer_recorder(peers)) as port, KeepAliveClient("127.0.0.1", port) as client:
        await asyncio.gather(*(client.post("/echo", b"x", {}) for _ in range(4)))
        await asyncio.gather(*(client.post("/echo", b"x", {}) for _ in range(4)))
    assert len(peers) == 8
    assert len(set(peers)) == 4


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    peers: list[object] = []
    handler = _peer_recorder(peers)
    async with (
        _server(handler, keepalive_seconds=0.05) as port,
        KeepAliveClient("127.0.0.1", port) as client,
    ):
        await client.post("/echo", b"first", {})
        await asyncio.sleep(0.3)
        response = await client.post("/echo", b"second", {})
    assert response.body == b"second"
    assert len(set(peers)) == 2


async def test_a_response_with_connection_close_is_not_reused() -> None:
    peers: list[object] = []
    record = _peer_recorder(peers)

    async def handler(request: web.Request) -> web.StreamResponse:
        response = await record(request)
        response.force_close()
        return response

    async with _server(handler) as port, KeepAliveClient("127.0.0.1", port) as client:
        await client.post("/echo", b"x", {})
        await client.post("/echo", b"x", {})
    assert len(set(peers)) == 2


async def test_a_chunked_response_is_refused() -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b"part")
        await response.write_eof()
        return response

    async with _server(handler) as port, KeepAliveClient("127.0.0.1", port) as client:
        with pytest.raises(HttpError, match="Content-Length"):
            await client.post("/echo", b"x", {})


@asynccontextmanager
async def _raw_server(reply: bytes) -> AsyncIterator[int]:
    """A TCP server that reads a request, writes `reply` and closes; yields its port."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def _error_for_reply(reply: bytes) -> HttpError:
    """The error the client raises when a server answers a POST with `reply` and closes."""
    async with _raw_server(reply) as port, KeepAliveClient("127.0.0.1", port) as client:
        with pytest.raises(HttpError) as raised:
            await client.post("/echo", b"x", {})
    return raised.value


async def test_a_response_cut_short_by_the_server_raises() -> None:
    error = await _error_for_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b")
    assert "closed" in str(error)


async def test_a_reply_that_is_not_http_raises() -> None:
    error = await _error_for_reply(b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    assert "status line" in str(error)


async def test_a_malformed_content_length_raises() -> None:
    error = await _error_for_reply(b"HTTP/1.1 200 OK\r\nContent-Length: ten\r\n\r\n0123456789")
    assert "Content-Length" in str(error)


async def test_a_server_that_never_answers_times_out() -> None:
    hung_up = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()
        hung_up.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with KeepAliveClient("127.0.0.1", port, timeout_seconds=0.2) as client:
            with pytest.raises(TimeoutError):
                await client.post("/echo", b"x", {})
        await asyncio.wait_for(hung_up.wait(), 5)
    finally:
        server.close()
        await server.wait_closed()
