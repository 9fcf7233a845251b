"""gRPC channels from one service to another, every call carrying the caller's service key.

The key is added by client interceptors, so no call site can forget it and no
stub call has to thread metadata through; metadata a call passes itself is kept.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc

from services.runtime.config import AppConfig
from services.runtime.keys.access import service_metadata

Metadata = tuple[tuple[str, str | bytes], ...]


def _with_metadata(details: grpc.aio.ClientCallDetails, extra: Metadata) -> Any:
    merged = grpc.aio.Metadata(*extra)
    for name, value in details.metadata or ():
        merged.add(name, value)
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, merged, details.credentials, details.wait_for_ready
    )


class _UnaryKey(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        return await continuation(_with_metadata(client_call_details, self._metadata), request)


class _StreamKey(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, metadata: Metadata) -> None:
        self._metadata = metadata

    async def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        return await continuation(_with_metadata(client_call_details, self._metadata), request)


def keyed_channel(
    address: str, metadata: Metadata, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """An insecure channel whose every call carries `metadata` (a key, or nothing)."""
    interceptors = [_UnaryKey(metadata), _StreamKey(metadata)] if metadata else None
    return grpc.aio.insecure_channel(address, options=list(options), interceptors=interceptors)


def service_channel(
    address: str, config: AppConfig, options: Sequence[tuple[str, Any]] = ()
) -> grpc.aio.Channel:
    """A channel to another service whose calls present this service's key."""
    return keyed_channel(address, service_metadata(config), options)
