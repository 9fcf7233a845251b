"""Hostile HTTP requests beyond the contract, as raw bytes, and what the process costs.

Each case is a request no well-behaved client sends: malformed multipart,
bodies shorter than their Content-Length, bodies over the limit, invalid
UTF-8, numbers no float or int holds, JSON nested 100,000 deep, 10,000-element
arrays, absurd query parameters and request lines. The keys (a tenant's, the
stack's development admin key) are filled in when the request is built, so
each request reaches the parsing behind authorization.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.hostile.raw_http import ANSWER_WITHIN_SECONDS, RawResponse, request_bytes

BOUNDARY = "hostile-boundary"
MEBIBYTE = 1024 * 1024


@dataclass(frozen=True)
class Keys:
    tenant_id: str
    tenant_key: str
    admin_key: str


@dataclass(frozen=True)
class Case:
    """One hostile request to service `service`; `body_cut` sends only that many body bytes.

    `transport`: aiohttp's HTTP parser refuses the request before any route or
    middleware sees it, so its 4xx carries aiohttp's plain-text reason, not our JSON.
    """

    name: str
    service: str
    build: Callable[[Keys], bytes]
    body_cut: int | None = None
    transport: bool = False


def _doc(**values: object) -> dict[str, object]:
    doc: dict[str, object] = {
        "consumption_kwh": {"value": 10000, "confidence": 0.95},
        "current_active_unit_price_tl_per_kwh": {"value": 3.5, "confidence": 0.95},
        "invoice_total_with_vat_tl": {"value": 42000, "confidence": 0.95},
        "provider": "Hostile Elektrik",
        "invoice_period": "2026-01",
        "tariff_group": "ticarethane_ag",
    }
    doc.update(values)
    return doc


def _json_literal(literal: str) -> bytes:
    """A document whose consumption value is the raw JSON `literal`."""
    return (
        json.dumps(_doc(consumption_kwh={"value": "@", "confidence": 0.9}))
        .replace('"@"', literal)
        .encode()
    )


def _submit(body: bytes, content_type: str = "application/json") -> Callable[[Keys], bytes]:
    def build(keys: Keys) -> bytes:
        return request_bytes(
            "POST",
            f"/full-process?tenant_id={keys.tenant_id}",
            f"X-API-Key: {keys.tenant_key}".encode(),
            f"Content-Type: {content_type}".encode(),
            body=body,
        )

    return build


def _admin(method: str, target: str, body: bytes = b"") -> Callable[[Keys], bytes]:
    def build(keys: Keys) -> bytes:
        return request_bytes(
            method,
            target.replace("{tenant}", keys.tenant_id),
            f"X-Admin-Key: {keys.admin_key}".encode(),
            b"Content-Type: application/json",
            body=body,
        )

    return build


def _declared(length: int) -> Callable[[Keys], bytes]:
    """A submission that announces `length` bytes and sends a few."""

    def build(keys: Keys) -> bytes:
        head = _submit(b"")(keys).replace(
            b"Content-Length: 0", f"Content-Length: {length}".encode()
        )
        return head + b'{"provider": '

    return build


def _multipart(*parts: bytes, close: bool = True) -> bytes:
    body = b"".join(b"--" + BOUNDARY.encode() + b"\r\n" + part + b"\r\n" for part in parts)
    return body + (b"--" + BOUNDARY.encode() + b"--\r\n" if close else b"")


_MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
_DEEP = b"[" * 100_000 + b"]" * 100_000
_DEEP_OBJECT = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
_TEN_THOUSAND = json.dumps(
    _doc(consumption_kwh={"value": list(range(10_000)), "confidence": 0.9})
).encode()
_OVERSIZED = b'{"provider": "' + b"x" * (11 * MEBIBYTE) + b'"}'

CASES: tuple[Case, ...] = (
    Case("multipart-without-boundary", "pipeline", _submit(b"--x\r\n\r\n", "multipart/form-data")),
    Case("multipart-garbage", "pipeline", _submit(b"\x00\xff" * 64, _MULTIPART)),
    Case(
        "multipart-unterminated",
        "pipeline",
        _submit(
            _multipart(b'Content-Disposition: form-data; name="file"\r\n\r\n{', close=False),
            _MULTIPART,
        ),
    ),
    Case(
        "multipart-without-file-part",
        "pipeline",
        _submit(_multipart(b'Content-Disposition: form-data; name="x"\r\n\r\n1'), _MULTIPART),
    ),
    Case("truncated-body", "pipeline", _declared(5000), body_cut=0),
    Case("declared-length-over-the-limit", "pipeline", _declared(10**12), body_cut=0),
    Case("oversized-body", "pipeline", _submit(_OVERSIZED)),
    Case("invalid-utf8", "pipeline", _submit(b'{"provider": "\xff\xfe\xc3("}')),
    Case("not-json", "pipeline", _submit(b"{'provider': nope")),
    Case("huge-float", "pipeline", _submit(_json_literal("1e400"))),
    Case("huge-negative-float", "pipeline", _submit(_json_literal("-1e400"))),
    Case("tiny-negative-float", "pipeline", _submit(_json_literal("-1e-400"))),
    Case("exponent-past-decimal", "pipeline", _submit(_json_literal("1e999999999999999999999"))),
    Case("huge-finite-exponent", "pipeline", _submit(_json_literal("1e999999999"))),
    Case("huge-integer", "pipeline", _submit(_json_literal("9" * 5000))),
    Case("integer-past-int64", "pipeline", _submit(_json_literal(str(2**64)))),
    Case("nan-literal", "pipeline", _submit(_json_literal("NaN"))),
    Case("deeply-nested-array", "pipeline", _submit(_DEEP)),
    Case("deeply-nested-object", "pipeline", _submit(_DEEP_OBJECT)),
    Case("ten-thousand-element-value", "pipeline", _submit(_TEN_THOUSAND)),
    Case(
        "ten-thousand-element-body", "pipeline", _submit(json.dumps(list(range(10_000))).encode())
    ),
    Case(
        "ten-thousand-element-field",
        "pipeline",
        _submit(json.dumps(_doc(provider=["x"] * 10_000)).encode()),
    ),
    Case("resolve-deeply-nested", "pipeline", _admin("POST", "/admin/incidents/1/resolve", _DEEP)),
    Case(
        "resolve-invalid-utf8",
        "pipeline",
        _admin("POST", "/admin/incidents/1/resolve", b'{"operator": "\xff"}'),
    ),
    Case(
        "feedback-ten-thousand",
        "pipeline",
        _admin(
            "POST", "/admin/incidents/1/feedback", json.dumps({"labels": [1] * 10_000}).encode()
        ),
    ),
    Case(
        "purge-confirm-huge-number",
        "pipeline",
        _admin("POST", "/admin/tenants/{tenant}/purge/confirm", b'{"confirmation_token": 1e999}'),
    ),
    Case("incidents-huge-limit", "pipeline", _admin("GET", f"/admin/incidents?limit={10**30}")),
    Case("incidents-float-limit", "pipeline", _admin("GET", "/admin/incidents?limit=1e400")),
    Case("incidents-garbage-cursor", "pipeline", _admin("GET", "/admin/incidents?cursor=%00%ff")),
    Case("job-id-not-a-uuid", "pipeline", _admin("GET", "/jobs/" + "9" * 400)),
    Case("ready-oversized-post", "health", _admin("POST", "/health/ready", b"x" * (2 * MEBIBYTE))),
    Case("gate-invalid-utf8-path", "gate", _admin("GET", "/%ff%fe%00")),
    Case(
        "gate-request-line-too-long",
        "gate",
        _admin("GET", "/openapi.json?x=" + "9" * 20_000),
        transport=True,
    ),
    Case("run-summary-huge-since", "telemetry", _admin("GET", f"/run-summary?since={10**30}")),
    Case("run-summary-invalid-utf8", "telemetry", _admin("GET", "/run-summary?since=%ff%fe")),
    Case(
        "system-health-tiny-until", "telemetry", _admin("GET", "/admin/system-health?until=-1e-400")
    ),
)


async def send(port: int, request: bytes, body_cut: int | None) -> RawResponse | None:
    """Send `request`, or its head plus `body_cut` body bytes and then half-close.

    Returns None when the server closed the connection without an answer.
    """
    if body_cut is not None:
        head, _, body = request.partition(b"\r\n\r\n")
        request = head + b"\r\n\r\n" + body[:body_cut]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)

    async def write() -> None:
        # The server may answer (413) and close before it has read everything.
        with contextlib.suppress(ConnectionError):
            writer.write(request)
            await writer.drain()
            if body_cut is not None:
                writer.write_eof()

    writing = asyncio.create_task(write())
    try:
        async with asyncio.timeout(ANSWER_WITHIN_SECONDS):
            data = await reader.read()
            await writing
    except ConnectionResetError:
        data = b""
    finally:
        writer.close()
    if not data:
        return None
    head, _, body = data.partition(b"\r\n\r\n")
    return RawResponse(status=int(head.split(b"\r\n", 1)[0].split()[1]), head=head, body=body)


def resident_mebibytes() -> float:
    """This process's resident set (the services under test run in it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")
