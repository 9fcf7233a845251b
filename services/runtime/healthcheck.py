"""Client side of grpc.health.v1, typed (the stub package does not type `HealthStub`)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2

_CHECK_METHOD = "/grpc.health.v1.Health/Check"


async def health_status(
    channel: grpc.aio.Channel, service: str = "", *, rpc_timeout: float = 1.0
) -> int:
    """The serving status a server reports for `service` ("" = the whole server)."""
    check = channel.unary_unary(
        _CHECK_METHOD,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    reply: health_pb2.HealthCheckResponse = await check(
        health_pb2.HealthCheckRequest(service=service), timeout=rpc_timeout
    )
    return int(reply.status)


async def is_serving(
    channel: grpc.aio.Channel, service: str = "", *, rpc_timeout: float = 1.0
) -> bool:
    """True when the server answers SERVING; False on any other status or RPC error."""
    try:
        status = await health_status(channel, service, rpc_timeout=rpc_timeout)
    except grpc.aio.AioRpcError:
        return False
    return status == int(health_pb2.HealthCheckResponse.SERVING)
