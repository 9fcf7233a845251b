"""An error naming a non-ASCII field still reaches the client as that error.

Probe: `facts={"é": "true"}` or a spec line `cölour: x` answered INTERNAL
"Invalid metadata": the refusal named the field in the `ptf-error-field`
trailer, and gRPC metadata values must be printable ASCII. The error mapping
now escapes what a trailer cannot carry.
"""

from __future__ import annotations

import grpc
import pytest
from ptf.gate.v1 import gate_pb2

from tests.gate.service_support import (
    StartGate,
    error_code,
    error_field,
    gate_stub,
    new_release,
    spec_yaml,
)

CASES = {
    "fact-key": ({"é": "true"}, (), "FACT_INVALID", "facts.\\xe9"),
    "spec-key": (
        {"tests_passed": "true", "smoke_passed": "true"},
        ("cölour: x",),
        "SPEC_INVALID",
        "c\\xf6lour",
    ),
}


@pytest.mark.parametrize(("facts", "spec_lines", "code", "field"), CASES.values(), ids=CASES.keys())
async def test_non_ascii_field_name_is_invalid_argument_with_an_ascii_trailer(
    start_gate: StartGate,
    facts: dict[str, str],
    spec_lines: tuple[str, ...],
    code: str,
    field: str,
) -> None:
    release = new_release()
    request = gate_pb2.PreflightRequest(spec_yaml=spec_yaml(release, *spec_lines), facts=facts)
    async with start_gate() as svc:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await gate_stub(svc).Preflight(request)
    assert (caught.value.code(), error_code(caught.value), error_field(caught.value)) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        code,
        field,
    )
