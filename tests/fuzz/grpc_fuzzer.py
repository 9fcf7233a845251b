"""Send Hypothesis-generated requests to every RPC of a running service and record the codes.

Hypothesis runs in a worker thread (its `@given` is synchronous) and submits each
call to the test's event loop, where the service and its channels live. Every
example is sent with no key, the admin key and the service key in turn, so both
the authorization path and the parameter checks behind it are reached.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.fuzz.protobuf_strategies import messages
from tests.support.services import ServiceHandle

# A server error means the service did not understand its own failure.
SERVER_FAULTS = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})
_CALL_TIMEOUT_SECONDS = 10.0
_STREAM_WAIT_SECONDS = 0.3


@dataclass
class FuzzReport:
    """Status codes seen, and every call that ended in a server fault."""

    codes: Counter[str] = field(default_factory=Counter)
    faults: list[str] = field(default_factory=list)

    @property
    def examples(self) -> int:
        return sum(self.codes.values())


async def _call(
    channel: grpc.aio.Channel, path: str, method: MethodDescriptor, payload: bytes
) -> grpc.StatusCode:
    """Send `payload` as the request's wire bytes (no serializer: bytes go out as they are)."""
    response_type = message_factory.GetMessageClass(method.output_type)
    try:
        if method.server_streaming:
            stream = channel.unary_stream(path, response_deserializer=response_type.FromString)(
                payload, timeout=_STREAM_WAIT_SECONDS
            )
            async for _ in stream:
                break
            stream.cancel()
        else:
            await channel.unary_unary(path, response_deserializer=response_type.FromString)(
                payload, timeout=_CALL_TIMEOUT_SECONDS
            )
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def fuzz_service(
    svc: ServiceHandle,
    service: ServiceDescriptor,
    loop: asyncio.AbstractEventLoop,
    examples_per_method: int,
    *,
    malformed: bool = False,
) -> FuzzReport:
    """Run in a thread: `examples_per_method` requests to each RPC of `service` on `svc`.

    With `malformed`, the requests are arbitrary bytes instead of valid messages.
    """
    report = FuzzReport()
    channels = (svc.channel, svc.admin_channel, svc.service_channel)
    for method in service.methods:
        _fuzz_method(report, channels, service, method, loop, examples_per_method, malformed)
    return report


def _fuzz_method(
    report: FuzzReport,
    channels: tuple[grpc.aio.Channel, ...],
    service: ServiceDescriptor,
    method: MethodDescriptor,
    loop: asyncio.AbstractEventLoop,
    examples: int,
    malformed: bool,
) -> None:
    path = f"/{service.full_name}/{method.name}"
    payloads: st.SearchStrategy[bytes] = (
        st.binary(min_size=1, max_size=64)
        if malformed
        else messages(method.input_type).map(lambda m: m.SerializeToString())
    )

    @settings(
        max_examples=examples,
        phases=[Phase.generate],  # collect every fault instead of shrinking the first
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(payload=payloads, key=st.integers(0, len(channels) - 1))
    def one(payload: bytes, key: int) -> None:
        call = _call(channels[key], path, method, payload)
        code = asyncio.run_coroutine_threadsafe(call, loop).result(_CALL_TIMEOUT_SECONDS * 3)
        report.codes[code.name] += 1
        if code in SERVER_FAULTS:
            shown = payload if malformed else _parsed(method, payload)
            report.faults.append(f"{path} {code.name} key={key} {shown!r}")

    one()


def _parsed(method: MethodDescriptor, payload: bytes) -> Message:
    return message_factory.GetMessageClass(method.input_type).FromString(payload)
