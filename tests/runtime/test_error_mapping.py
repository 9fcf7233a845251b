"""One interceptor and one middleware turn errors into stable codes and never leak internals."""

from __future__ import annotations

import grpc
import pytest
from aiohttp import web
from ptf.health.v1 import health_pb2, health_pb2_grpc

from services.runtime.errors import (
    ERROR_CODE_METADATA,
    ERROR_FIELD_METADATA,
    InvalidInput,
    RateLimited,
)
from services.runtime.server import Runtime, ServiceDefinition, ServiceParts
from tests.conftest import StartService

SERVICE = "ptf.test.Errors"


async def _invalid(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise InvalidInput("BAD_THING", "thing is bad", field="thing")


async def _crash(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    raise ValueError("secret internals: password=hunter2")


async def _http_limited(request: web.Request) -> web.Response:
    raise RateLimited("RATE_LIMITED", "slow down", retry_after_seconds=42)


async def _http_crash(request: web.Request) -> web.Response:
    raise ValueError("secret internals")


async def _http_echo(request: web.Request) -> web.Response:
    return web.json_response({"size": len(await request.read())})


async def _build(runtime: Runtime) -> ServiceParts:
    def register(server: grpc.aio.Server) -> None:
        handlers = {
            "Invalid": grpc.unary_unary_rpc_method_handler(_invalid),
            "Crash": grpc.unary_unary_rpc_method_handler(_crash),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))

    return ServiceParts(
        grpc_service_names=[SERVICE],
        register_grpc=register,
        routes=[
            web.get("/limited", _http_limited),
            web.get("/crash", _http_crash),
            web.post("/echo", _http_echo),
        ],
        max_body_bytes=1024,
    )


ERRORS = ServiceDefinition(name="errortest", build=_build)


async def test_domain_error_maps_to_status_code_and_field_metadata(
    start_service: StartService,
) -> None:
    async with start_service(ERRORS) as svc:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await svc.channel.unary_unary(f"/{SERVICE}/Invalid")(b"")
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "BAD_THING: thing is bad"
    trailers = dict(error.trailing_metadata() or ())
    assert trailers[ERROR_CODE_METADATA] == "BAD_THING"
    assert trailers[ERROR_FIELD_METADATA] == "thing"


async def test_unexpected_grpc_error_is_internal_without_details(
    start_service: StartService,
) -> None:
    async with start_service(ERRORS) as svc:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await svc.channel.unary_unary(f"/{SERVICE}/Crash")(b"")
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    assert "hunter2" not in (caught.value.details() or "")


async def _build_unbuilt(runtime: Runtime) -> ServiceParts:
    def register(server: grpc.aio.Server) -> None:
        servicer = health_pb2_grpc.HealthServiceServicer()  # type: ignore[abstract]
        health_pb2_grpc.add_HealthServiceServicer_to_server(servicer, server)

    return ServiceParts(grpc_service_names=["ptf.health.v1.HealthService"], register_grpc=register)


UNBUILT = ServiceDefinition(name="unbuilttest", build=_build_unbuilt)


async def test_method_not_built_yet_answers_unimplemented(start_service: StartService) -> None:
    """A generated servicer base registered as-is answers UNIMPLEMENTED, not INTERNAL."""
    async with start_service(UNBUILT) as svc:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_pb2_grpc.HealthServiceStub(svc.channel).Ready(health_pb2.ReadyRequest())
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_http_domain_error_is_json_with_retry_after(start_service: StartService) -> None:
    async with start_service(ERRORS) as svc, svc.http.get("/limited") as response:
        assert response.status == 429
        assert response.headers["Retry-After"] == "42"
        assert await response.json() == {"error_code": "RATE_LIMITED", "message": "slow down"}


async def test_unexpected_http_error_is_500_without_internals(start_service: StartService) -> None:
    async with start_service(ERRORS) as svc, svc.http.get("/crash") as response:
        assert response.status == 500
        body = await response.json()
    assert body == {"error_code": "INTERNAL", "message": "internal error"}


async def test_oversized_http_body_is_413_json(start_service: StartService) -> None:
    async with start_service(ERRORS) as svc, svc.http.post("/echo", data=b"x" * 2048) as response:
        assert response.status == 413
        assert (await response.json())["error_code"] == "PAYLOAD_TOO_LARGE"


async def test_body_within_limit_is_accepted(start_service: StartService) -> None:
    async with start_service(ERRORS) as svc, svc.http.post("/echo", data=b"x" * 512) as response:
        assert response.status == 200
        assert await response.json() == {"size": 512}
