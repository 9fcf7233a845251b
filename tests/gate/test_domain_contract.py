"""The domain's enums match the proto contract by name, and the domain imports no I/O."""

from __future__ import annotations

import subprocess
import sys
from enum import Enum

import pytest
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from ptf.common.v1 import common_pb2
from ptf.gate.v1 import gate_pb2

from services.gate.domain.check import Decision
from services.gate.domain.override import BreachKind, OverrideResult
from services.gate.domain.reasons import DEFAULT_LEVELS, BlockReasonCode, ReasonLevel, Verdict
from services.runtime.tokens.errors import TokenError


def _proto_names(enum: EnumTypeWrapper, prefix: str) -> set[str]:
    names = {name.removeprefix(prefix) for name in enum.DESCRIPTOR.values_by_name}
    names.discard("UNSPECIFIED")
    return names


@pytest.mark.parametrize(
    ("domain", "proto", "prefix"),
    [
        (BlockReasonCode, gate_pb2.BlockReasonCode, "BLOCK_REASON_CODE_"),
        (ReasonLevel, gate_pb2.ReasonLevel, "REASON_LEVEL_"),
        (Verdict, gate_pb2.Verdict, "VERDICT_"),
        (Decision, gate_pb2.Decision, "DECISION_"),
        (OverrideResult, gate_pb2.OverrideResult, "OVERRIDE_RESULT_"),
        (BreachKind, gate_pb2.BreachKind, "BREACH_KIND_"),
        (TokenError, common_pb2.TokenError, "TOKEN_ERROR_"),
    ],
    ids=lambda value: getattr(value, "__name__", ""),
)
def test_domain_enum_names_equal_proto_names(
    domain: type[Enum], proto: EnumTypeWrapper, prefix: str
) -> None:
    assert {member.name for member in domain} == _proto_names(proto, prefix)


def test_every_reason_has_a_default_level() -> None:
    assert set(DEFAULT_LEVELS) == set(BlockReasonCode)


def test_verdict_exit_codes() -> None:
    assert [v.exit_code for v in Verdict] == [0, 1, 2]


def test_domain_imports_no_io_or_transport_library() -> None:
    """Importing every domain module in a fresh interpreter loads none of them."""
    code = (
        "import sys\n"
        "import services.gate.domain.check, services.gate.domain.evaluate\n"
        "import services.gate.domain.override, services.gate.domain.spec\n"
        "import services.gate.domain.signals, services.gate.domain.facts\n"
        "banned = ('asyncpg', 'redis', 'aiohttp', 'grpc', 'google.protobuf', 'ptf')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in banned"
        " or m.startswith('google.protobuf')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
