"""Every domain enum member survives the trip through its proto enum value and back."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import pytest
from ptf.gate.v1 import gate_pb2

from services.gate import mapping
from services.gate.domain.check import Decision
from services.gate.domain.override import BreachKind, OverrideResult, OverrideState
from services.gate.domain.reasons import BlockReasonCode, ReasonLevel, Verdict
from services.runtime.tokens.errors import TokenError

_PAIRS: list[tuple[type[StrEnum], Callable[[str], int], Callable[[int], str]]] = [
    (BlockReasonCode, mapping.reason_code, mapping.reason_name),
    (ReasonLevel, mapping.level_code, mapping.level_name),
    (Verdict, mapping.verdict_code, mapping.verdict_name),
    (Decision, mapping.decision_code, mapping.decision_name),
    (OverrideResult, mapping.override_result_code, mapping.override_result_name),
    (BreachKind, mapping.breach_kind_code, mapping.breach_kind_name),
    (TokenError, mapping.token_error_code, mapping.token_error_name),
]
_IDS = [domain.__name__ for domain, _, _ in _PAIRS]


@pytest.mark.parametrize(("domain", "to_proto", "from_proto"), _PAIRS, ids=_IDS)
def test_every_member_round_trips_through_its_proto_value(
    domain: type[StrEnum], to_proto: Callable[[str], int], from_proto: Callable[[int], str]
) -> None:
    assert [from_proto(to_proto(member)) for member in domain] == [str(m) for m in domain]


@pytest.mark.parametrize(("domain", "to_proto", "from_proto"), _PAIRS, ids=_IDS)
def test_an_empty_or_unknown_name_maps_to_unspecified(
    domain: type[StrEnum], to_proto: Callable[[str], int], from_proto: Callable[[int], str]
) -> None:
    assert (to_proto(""), to_proto("NOT_A_MEMBER")) == (0, 0)


def test_every_override_state_has_its_proto_value() -> None:
    names = {gate_pb2.OverrideState.Name(mapping.override_state_code(s)) for s in OverrideState}
    proto = set(gate_pb2.OverrideState.keys()) - {"OVERRIDE_STATE_UNSPECIFIED"}
    assert names == proto == {f"OVERRIDE_STATE_{s}" for s in OverrideState}
