"""Errors the gate domain raises for bad caller input.

They carry a stable `error_code` and the `field` at fault, and no transport
status: the gRPC/HTTP adapters map them (INVALID_ARGUMENT / 400, gatectl exit
64), which keeps the domain free of grpc and aiohttp.
"""

from __future__ import annotations


class GateInputError(Exception):
    """Root of the gate domain's input errors."""

    error_code = "GATE_INPUT_INVALID"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SpecError(GateInputError):
    """The release spec is malformed or violates a rule; `field` names the offending key."""

    error_code = "SPEC_INVALID"


class FactError(GateInputError):
    """A caller-supplied fact is unknown, missing or not a boolean."""

    error_code = "FACT_INVALID"
