"""Stable, client-facing errors and their mapping to gRPC status and HTTP responses.

Every service raises `PtfError` subclasses from its domain; the gRPC method
handlers (wrapped at registration by `ErrorMappingServer`) and one aiohttp
middleware translate them, so handlers never build error
responses by hand and unexpected exceptions never leak internals.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import grpc
from aiohttp import web

from services.runtime.logs import new_request_id, request_id_var

log = logging.getLogger(__name__)

ERROR_CODE_METADATA = "ptf-error-code"
ERROR_FIELD_METADATA = "ptf-error-field"

_HTTP_FOR_GRPC: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


class PtfError(Exception):
    """Root of every error a client may see; `error_code` is stable across releases."""

    status: grpc.StatusCode = grpc.StatusCode.INTERNAL
    http_status: int | None = None

    def __init__(
        self,
        error_code: str,
        message: str,
        *,
        field: str | None = None,
        retry_after_seconds: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.message = message
        self.field = field
        self.retry_after_seconds = retry_after_seconds

    @property
    def http(self) -> int:
        return self.http_status or _HTTP_FOR_GRPC.get(self.status, 500)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error_code": self.error_code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


class InvalidInput(PtfError):
    status = grpc.StatusCode.INVALID_ARGUMENT


class Unprocessable(PtfError):
    """Well-formed input whose content is not acceptable (HTTP 422)."""

    status = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 422


class PayloadTooLarge(PtfError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 413


class Unauthenticated(PtfError):
    status = grpc.StatusCode.UNAUTHENTICATED


class Forbidden(PtfError):
    status = grpc.StatusCode.PERMISSION_DENIED


class NotFound(PtfError):
    status = grpc.StatusCode.NOT_FOUND


class Conflict(PtfError):
    status = grpc.StatusCode.FAILED_PRECONDITION


class RateLimited(PtfError):
    status = grpc.StatusCode.RESOURCE_EXHAUSTED


class RequestTimeout(PtfError):
    """The client did not send its request in time (HTTP 408)."""

    status = grpc.StatusCode.DEADLINE_EXCEEDED
    http_status = 408


class ClientClosedRequest(PtfError):
    """The client hung up before its request was read (HTTP 499, nginx's convention).

    Its own status, never a 5xx: the server did nothing wrong, and the gate's
    error rate must not count it.
    """

    status = grpc.StatusCode.CANCELLED
    http_status = 499


class Unavailable(PtfError):
    status = grpc.StatusCode.UNAVAILABLE


class NotBuilt(PtfError):
    status = grpc.StatusCode.UNIMPLEMENTED


# Generated servicer bases raise NotImplementedError for methods a service has
# not built yet; clients get an honest UNIMPLEMENTED instead of INTERNAL.
_NOT_BUILT = NotBuilt("UNIMPLEMENTED", "method not implemented yet")


# gRPC metadata values must be printable ASCII: a field named after client input
# (`facts.é`) would otherwise fail the whole response as INTERNAL "Invalid metadata".
_NOT_METADATA_SAFE = re.compile(r"[^\x20-\x7e]")


def _metadata_safe(value: str) -> str:
    """`value` with every character a trailer cannot carry escaped (`é` → `\\xe9`)."""
    return _NOT_METADATA_SAFE.sub(
        lambda found: found.group().encode("unicode_escape").decode("ascii"), value
    )


def _grpc_trailers(error: PtfError) -> tuple[tuple[str, str], ...]:
    trailers = [(ERROR_CODE_METADATA, _metadata_safe(error.error_code))]
    if error.field:
        trailers.append((ERROR_FIELD_METADATA, _metadata_safe(error.field)))
    if error.retry_after_seconds is not None:
        trailers.append(("retry-after", str(error.retry_after_seconds)))
    return tuple(trailers)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], error: PtfError) -> None:
    """Abort the RPC with the error's status, `CODE: message` details and metadata."""
    context.set_trailing_metadata(_grpc_trailers(error))
    # Details travel as UTF-8; a lone surrogate from client input must not make them unsendable.
    details = f"{error.error_code}: {error.message}".encode("utf-8", "backslashreplace")
    await context.abort(error.status, details.decode("utf-8"))


class _Undecodable:
    """What the method's deserializer made of a payload that is not its message type."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


_MALFORMED = InvalidInput("MALFORMED_REQUEST", "the request payload is not a valid message")


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    """`deserializer` returning an `_Undecodable` instead of raising.

    grpc.aio answers a deserializer's exception with UNKNOWN naming its class and
    logs a traceback per call; the handler below turns it into INVALID_ARGUMENT
    and one WARNING line instead: a malformed payload is the client's error.
    """
    if deserializer is None:
        return None

    def deserialize(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except Exception as exc:  # DecodeError, or whatever else the payload makes it raise
            return _Undecodable(exc)

    return deserialize


async def _refuse_undecodable(
    request: _Undecodable, context: grpc.aio.ServicerContext[Any, Any]
) -> None:
    log.warning("malformed request payload refused: %s", type(request.error).__name__)
    await abort_with(context, _MALFORMED)


def _wrap_unary(
    behavior: Callable[[Any, Any], Any],
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request_id_var.set(_incoming_request_id(context))
        if isinstance(request, _Undecodable):
            await _refuse_undecodable(request, context)
        try:
            return await behavior(request, context)
        except PtfError as exc:
            await abort_with(context, exc)
        except NotImplementedError:
            await abort_with(context, _NOT_BUILT)
        except (grpc.aio.AbortError, GeneratorExit):
            raise
        except Exception:
            log.exception("unhandled error in gRPC handler")
            context.set_trailing_metadata(((ERROR_CODE_METADATA, "INTERNAL"),))
            await context.abort(grpc.StatusCode.INTERNAL, "INTERNAL: internal error")

    return handler


def _wrap_stream(
    behavior: Callable[[Any, Any], Any],
) -> Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        request_id_var.set(_incoming_request_id(context))
        if isinstance(request, _Undecodable):
            await _refuse_undecodable(request, context)
        try:
            async for item in behavior(request, context):
                yield item
        except PtfError as exc:
            await abort_with(context, exc)
        except NotImplementedError:
            await abort_with(context, _NOT_BUILT)
        except (grpc.aio.AbortError, GeneratorExit):
            raise
        except Exception:
            log.exception("unhandled error in gRPC stream handler")
            context.set_trailing_metadata(((ERROR_CODE_METADATA, "INTERNAL"),))
            await context.abort(grpc.StatusCode.INTERNAL, "INTERNAL: internal error")

    return handler


def _incoming_request_id(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == "x-request-id" and isinstance(value, str) and 0 < len(value) <= 128:
            return value
    return new_request_id()


def _error_mapped(handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    """`handler` with `PtfError` mapped to status + metadata and anything unexpected to INTERNAL."""
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler.unary_unary),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(handler.unary_stream),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
    return handler


class _ErrorMappedHandlers(grpc.GenericRpcHandler):
    """A generic handler whose method handlers are wrapped once, on first use."""

    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            # Only methods the inner handler knows are kept, so the cache stays bounded.
            wrapped = self._wrapped[method] = _error_mapped(handler)
        return wrapped


class ErrorMappingServer(grpc.aio.Server):
    """The grpc.aio server as services register on it: every method handler is wrapped
    for error mapping once, at registration.

    A server interceptor does the same per call, and measured against the bare
    echo server it cost about a fifth of the throughput; wrapping at
    registration costs nothing per call.
    """

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(
        self, generic_rpc_handlers: Iterable[grpc.GenericRpcHandler]
    ) -> None:
        self._server.add_generic_rpc_handlers(
            tuple(_ErrorMappedHandlers(handler) for handler in generic_rpc_handlers)
        )

    def add_registered_method_handlers(
        self, service_name: str, method_handlers: Mapping[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self._server.add_registered_method_handlers(
            service_name, {name: _error_mapped(h) for name, h in method_handlers.items()}
        )

    def add_insecure_port(self, address: str) -> int:
        return self._server.add_insecure_port(address)

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:
        return self._server.add_secure_port(address, server_credentials)

    async def start(self) -> None:
        await self._server.start()

    async def stop(self, grace: float | None) -> None:
        await self._server.stop(grace)

    async def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - grpc.aio.Server's signature
        return await self._server.wait_for_termination(timeout)


def error_response(error: PtfError) -> web.Response:
    """The JSON `{error_code, message, field?}` response for an error."""
    headers = {}
    if error.retry_after_seconds is not None:
        headers["Retry-After"] = str(error.retry_after_seconds)
    return web.json_response(error.body(), status=error.http, headers=headers)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """HTTP twin of `ErrorMappingServer`; also assigns the request id."""
    incoming = request.headers.get("X-Request-Id", "")
    request_id_var.set(incoming if 0 < len(incoming) <= 128 else new_request_id())
    try:
        return await handler(request)
    except PtfError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status == 413:
            return error_response(PayloadTooLarge("PAYLOAD_TOO_LARGE", "request body too large"))
        if exc.status >= 400:
            code = exc.reason.upper().replace(" ", "_")
            return web.json_response({"error_code": code, "message": exc.reason}, status=exc.status)
        raise
    except Exception:
        log.exception("unhandled error in HTTP handler", extra={"path": request.path})
        return web.json_response(
            {"error_code": "INTERNAL", "message": "internal error"}, status=500
        )
