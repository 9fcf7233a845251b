"""Facts: what the caller asserts about the candidate build (tests passed, smoke passed).

The gate cannot observe these itself, so the release spec lists which facts
the caller must supply and each known fact maps to the reason it raises when
false. Unknown names are rejected rather than ignored: a typo such as
`test_passed=true` must not silently skip the tests check.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from services.gate.domain.errors import FactError
from services.gate.domain.reasons import BlockReasonCode

KNOWN_FACTS: Mapping[str, BlockReasonCode] = MappingProxyType(
    {
        "tests_passed": BlockReasonCode.TESTS_FAILED,
        "smoke_passed": BlockReasonCode.SMOKE_FAILED,
    }
)

_TRUE = frozenset({"true"})
_FALSE = frozenset({"false"})


def parse_facts(raw: Mapping[str, str], required: Iterable[str]) -> Mapping[str, bool]:
    """`{"tests_passed": "true"}` → `{"tests_passed": True}`; raises `FactError` naming the fact.

    Only `true` / `false` (any case) are accepted: a value such as `yes` or
    `1` is more likely a mistake than an intended boolean.
    """
    parsed: dict[str, bool] = {}
    for name in sorted(raw):
        if name not in KNOWN_FACTS:
            known = ", ".join(sorted(KNOWN_FACTS))
            raise FactError(f"facts.{name}", f"unknown fact; known facts: {known}")
        value = raw[name].strip().lower()
        if value in _TRUE:
            parsed[name] = True
        elif value in _FALSE:
            parsed[name] = False
        else:
            raise FactError(f"facts.{name}", f"must be true or false, got {raw[name]!r}")
    for name in sorted(required):
        if name not in parsed:
            raise FactError(f"facts.{name}", "required by the release spec but not supplied")
    return MappingProxyType(parsed)
