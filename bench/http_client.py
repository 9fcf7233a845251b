"""The pipeline bench's HTTP load client: keep-alive HTTP/1.1 POSTs at the least CPU it can.

The bench's client runs on the same two cores as the stack it measures, so every
microsecond it spends is taken from the services. aiohttp's client spent about
310 µs of CPU per synchronous submission at 750/s, about 12 % of the machine; this one
spends less than half of that (docs/performance.md, "The bench's load client").
It speaks only what the bench needs: a POST with a body, answered with a
`Content-Length` body (aiohttp's server sends one for every JSON response), on
connections kept alive and reused, most recently used first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass

_HEADERS_END = b"\r\n\r\n"
_TIMEOUT_SECONDS = 120.0


class HttpError(Exception):
    """The server's answer is not one this client can read, or the connection broke."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._waiter: asyncio.Future[Response] | None = None
        self._transport: asyncio.Transport | None = None
        self.reusable = True
        self.received_any = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def send(self, request: bytes) -> asyncio.Future[Response]:
        assert self._transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self.received_any = False
        self._transport.write(request)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self._fail(HttpError("the server sent bytes no request asked for"))
            return
        self.received_any = True
        self._buffer += data
        try:
            response = self._complete_response()
        except HttpError as exc:
            self._fail(exc)
            return
        if response is not None:
            waiter, self._waiter = self._waiter, None
            if not waiter.done():
                waiter.set_result(response)

    def _complete_response(self) -> Response | None:
        """The response in the buffer once all of it has arrived (None: not yet)."""
        end = self._buffer.find(_HEADERS_END)
        if end < 0:
            return None
        lines = bytes(self._buffer[:end]).split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise HttpError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
        length: int | None = None
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                if not value.strip().isdigit():
                    raise HttpError(f"a malformed Content-Length: {value[:40]!r}")
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                self.reusable = False
            elif name == b"transfer-encoding":
                raise HttpError("a response without Content-Length is not supported")
        if length is None:
            raise HttpError("the response has no Content-Length")
        start = end + len(_HEADERS_END)
        if len(self._buffer) < start + length:
            return None
        body = bytes(self._buffer[start : start + length])
        del self._buffer[: start + length]
        return Response(int(parts[1]), body)

    def _reject(self, error: Exception) -> None:
        """Never reuse this connection; the request in flight, if any, fails with `error`."""
        self.reusable = False
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)

    def _fail(self, error: Exception) -> None:
        self._reject(error)
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._reject(HttpError(f"the connection closed: {exc or 'by the peer'}"))

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class KeepAliveClient:
    """POSTs to one `host:port` over as many keep-alive connections as are in flight at once."""

    def __init__(self, host: str, port: int, *, timeout_seconds: float = _TIMEOUT_SECONDS) -> None:
        self._host, self._port = host, port
        self._timeout = timeout_seconds
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()

    async def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """The response to one POST. A kept-alive connection the server closed before
        answering (its idle timeout) is replaced once: the bench's intake is idempotent."""
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Content-Length: {len(body)}\r\n{head}\r\n"
        ).encode() + body
        async with asyncio.timeout(self._timeout):
            reused = self._take_idle()
            if reused is not None:
                try:
                    return await self._exchange(reused, request)
                except HttpError:
                    if reused.received_any:
                        raise
            return await self._exchange(await self._connect(), request)

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.reusable:
                return connection
            self._open.discard(connection)
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self._host, self._port)
        self._open.add(connection)
        return connection

    async def _exchange(self, connection: _Connection, request: bytes) -> Response:
        try:
            response = await connection.send(request)
        except BaseException:
            self._discard(connection)
            raise
        if connection.reusable:
            self._idle.append(connection)
        else:
            self._discard(connection)
        return response

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._open.discard(connection)

    async def close(self) -> None:
        """Close every connection."""
        for connection in self._open:
            connection.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing

    async def __aenter__(self) -> KeepAliveClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
