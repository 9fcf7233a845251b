"""A service with one slow RPC (`ptf.test.Slow/Sleep`), run as a real process by shutdown tests.

The request and response are raw bytes: the request is the sleep time in
milliseconds as ASCII, the response is b"done".
"""

from __future__ import annotations

import asyncio

import grpc

from services.runtime.server import Runtime, ServiceDefinition, ServiceParts, run_service

SERVICE = "ptf.test.Slow"
METHOD = f"/{SERVICE}/Sleep"


async def _sleep(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
    await asyncio.sleep(int(request.decode()) / 1000)
    return b"done"


async def build(runtime: Runtime) -> ServiceParts:
    del runtime

    def register(server: grpc.aio.Server) -> None:
        handler = grpc.method_handlers_generic_handler(
            SERVICE, {"Sleep": grpc.unary_unary_rpc_method_handler(_sleep)}
        )
        server.add_generic_rpc_handlers((handler,))

    return ServiceParts(grpc_service_names=[SERVICE], register_grpc=register)


DEFINITION = ServiceDefinition(name="slowtest", build=build)

if __name__ == "__main__":
    run_service(DEFINITION)
