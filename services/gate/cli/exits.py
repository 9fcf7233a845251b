"""gatectl exit codes (docs/SPEC.md §5.5, sysexits.h) and how gRPC failures map onto them."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import MappingProxyType

import grpc

OK = 0
HOLD = 1
BLOCK = 2
USAGE = 64  # EX_USAGE: bad arguments, unreadable or invalid spec
NOT_FOUND = 66  # EX_NOINPUT
UNAVAILABLE = 69  # EX_UNAVAILABLE: the gate cannot be reached
SOFTWARE = 70  # EX_SOFTWARE: anything unexpected
NO_PERMISSION = 77  # EX_NOPERM: missing or wrong admin key
INTERRUPTED = 130

_FOR_STATUS: Mapping[grpc.StatusCode, int] = MappingProxyType(
    {
        grpc.StatusCode.UNAVAILABLE: UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED: UNAVAILABLE,
        grpc.StatusCode.UNIMPLEMENTED: UNAVAILABLE,
        grpc.StatusCode.INVALID_ARGUMENT: USAGE,
        grpc.StatusCode.FAILED_PRECONDITION: USAGE,
        grpc.StatusCode.OUT_OF_RANGE: USAGE,
        grpc.StatusCode.UNAUTHENTICATED: NO_PERMISSION,
        grpc.StatusCode.PERMISSION_DENIED: NO_PERMISSION,
        grpc.StatusCode.NOT_FOUND: NOT_FOUND,
    }
)


class CliExit(Exception):
    """Stop the command with an exit code; the message (if any) goes to stderr."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def rpc_failure(exc: grpc.aio.AioRpcError) -> CliExit:
    """A `CliExit` describing a failed gate RPC (error code and field from the trailers)."""
    details = {
        key: value.decode() if isinstance(value, bytes) else value
        for key, value in exc.trailing_metadata() or ()
    }
    code = details.get("ptf-error-code")
    field = details.get("ptf-error-field")
    parts = [f"gate answered {exc.code().name}: {exc.details() or 'no details'}"]
    if field:
        parts.append(f"(field: {field})")
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and not code:
        parts = [f"gate unreachable ({exc.code().name}): {exc.details() or 'no details'}"]
    return CliExit(_FOR_STATUS.get(exc.code(), SOFTWARE), " ".join(parts))


def warn(message: str) -> None:
    """Print a gatectl message on stderr."""
    print(f"gatectl: {message}", file=sys.stderr)
