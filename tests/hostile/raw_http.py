"""HTTP as an outsider writes it: raw bytes on a socket, so nothing is normalized for us."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

# Generous: the machine is shared; the server answers these in milliseconds.
ANSWER_WITHIN_SECONDS = 15.0


@dataclass(frozen=True)
class RawResponse:
    status: int
    head: bytes
    body: bytes


async def raw_request(port: int, request: bytes) -> RawResponse:
    """Send `request` verbatim (it should say `Connection: close`) and read to EOF."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
            data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    return RawResponse(status=int(status_line.split()[1]), head=head, body=body)


def request_bytes(method: str, target: str, *headers: bytes, body: bytes = b"") -> bytes:
    """An HTTP/1.1 request with the given raw header lines and a Content-Length for `body`."""
    lines = [
        f"{method} {target} HTTP/1.1".encode(),
        b"Host: 127.0.0.1",
        b"Connection: close",
        *headers,
        f"Content-Length: {len(body)}".encode(),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body
