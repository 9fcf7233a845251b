"""Fixed label sets of the preflight and gate metric stores (bounded cardinality).

Reason and breach-kind labels are derived from the generated `ptf.gate.v1`
enums (prefix stripped, `UNSPECIFIED` excluded), so the stores never drift from
the contract and never import the gate service (which imports these stores).
Every tuple here is immutable: the label set of an exported metric cannot grow
at run time, whatever a caller records.
"""

from __future__ import annotations

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from ptf.gate.v1 import gate_pb2


def proto_enum_names(enum: EnumTypeWrapper, prefix: str) -> tuple[str, ...]:
    """Member names of a proto enum in number order, without `prefix`, skipping value 0."""
    members = sorted(enum.items(), key=lambda item: item[1])
    return tuple(name.removeprefix(prefix) for name, number in members if number != 0)


REASON_LABELS: tuple[str, ...] = proto_enum_names(gate_pb2.BlockReasonCode, "BLOCK_REASON_CODE_")
"""`BlockReasonCode` names, e.g. `S1_RATE_HIGH`."""

BREACH_KINDS: tuple[str, ...] = proto_enum_names(gate_pb2.BreachKind, "BREACH_KIND_")
"""Contract breach kinds: `NO_OVERRIDE`, `NON_OVERRIDABLE`."""

DECISION_LABELS: tuple[str, ...] = ("ALLOW", "DENY")
"""Gate `Check` decisions."""

VERDICT_LABELS: tuple[str, ...] = ("release_ok", "release_hold", "release_block")
"""Preflight verdicts as counted by `MetricStore.verdict_counts()` (docs/seeds/000.txt)."""

OVERRIDE_RESULTS: tuple[str, ...] = ("applied", "rejected", "breach", "ignored", "none")
"""Preflight `override_result` values (docs/SPEC.md §5.1)."""
