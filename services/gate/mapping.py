"""Translations between the gate domain / audit records and the `ptf.gate.v1` messages.

Domain enum members are named like the proto enums without their prefix, so
the translation is by name. Audit rows travel losslessly: a stored string
maps to the enum of the same name and the empty string to `UNSPECIFIED`
(override issuance rows have no verdict or decision), so a client can rebuild
the exact `AuditRecord` and recompute its hash (`gatectl audit verify`). A
stored value that is no enum name at all (only possible by tampering) maps
to `UNSPECIFIED`, and the recomputed hash then exposes the row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.common.v1 import common_pb2
from ptf.gate.v1 import gate_pb2
from ptf.telemetry.v1 import telemetry_pb2

from services.gate.audit import AuditEntry, AuditRecord
from services.gate.domain.evaluate import Evaluation, Reason
from services.gate.domain.override import OverrideOutcome
from services.gate.domain.reasons import BlockReasonCode
from services.gate.domain.signals import Signals
from services.gate.domain.spec import ReleaseSpec

_VERDICT = "VERDICT_"
_DECISION = "DECISION_"
_REASON = "BLOCK_REASON_CODE_"
_LEVEL = "REASON_LEVEL_"
_OVERRIDE = "OVERRIDE_RESULT_"
_BREACH = "BREACH_KIND_"
_TOKEN = "TOKEN_ERROR_"


def timestamp(value: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime (stored in UTC)."""
    stamp = Timestamp()
    stamp.FromDatetime(value.astimezone(UTC))
    return stamp


def _to_enum(enum: EnumTypeWrapper, prefix: str, name: str) -> int:
    """The enum number named `prefix + name`; `UNSPECIFIED` (0) for "" or an unknown name."""
    if not name:
        return 0
    try:
        return int(enum.Value(prefix + name))
    except ValueError:
        return 0


def _from_enum(enum: EnumTypeWrapper, prefix: str, number: int) -> str:
    """Inverse of `_to_enum`: "" for `UNSPECIFIED` or an unknown number."""
    if number == 0:
        return ""
    try:
        return str(enum.Name(number)).removeprefix(prefix)
    except ValueError:
        return ""


def reason_code(code: BlockReasonCode | str) -> int:
    """Proto `BlockReasonCode` number of a reason name (UNSPECIFIED if unknown)."""
    return _to_enum(gate_pb2.BlockReasonCode, _REASON, str(code))


def reason_name(number: int) -> str:
    """`BlockReasonCode` name of a proto number ("" for UNSPECIFIED/unknown)."""
    return _from_enum(gate_pb2.BlockReasonCode, _REASON, number)


def verdict_name(number: int) -> str:
    """`RELEASE_OK`... of a proto verdict ("" for UNSPECIFIED)."""
    return _from_enum(gate_pb2.Verdict, _VERDICT, number)


def decision_name(number: int) -> str:
    """`ALLOW`/`DENY` of a proto decision ("" for UNSPECIFIED)."""
    return _from_enum(gate_pb2.Decision, _DECISION, number)


def override_result_name(number: int) -> str:
    """`applied`, `rejected`, ... (lower case, as stored and as SPEC §5.1 spells them)."""
    return _from_enum(gate_pb2.OverrideResult, _OVERRIDE, number).lower()


def level_name(number: int) -> str:
    """`HOLD`/`BLOCK` of a proto reason level."""
    return _from_enum(gate_pb2.ReasonLevel, _LEVEL, number)


def token_error_name(number: int) -> str:
    """`TOKEN_USED`... of a proto token error ("" when unset)."""
    return _from_enum(common_pb2.TokenError, _TOKEN, number)


def breach_kind_name(number: int) -> str:
    """`NO_OVERRIDE`/`NON_OVERRIDABLE` of a proto breach kind ("" when unset)."""
    return _from_enum(gate_pb2.BreachKind, _BREACH, number)


def _reason(reason: Reason) -> gate_pb2.Reason:
    message = gate_pb2.Reason(
        code=reason_code(reason.code),  # type: ignore[arg-type]
        level=_to_enum(gate_pb2.ReasonLevel, _LEVEL, reason.level),  # type: ignore[arg-type]
        message=reason.message,
        operator=reason.operator,
        window=reason.window,
        sample_size=reason.sample_size,
        dry_run=reason.dry_run,
        escalated=reason.escalated,
        overridable=reason.overridable,
        signal=reason.signal,
    )
    if reason.observed is not None:
        message.observed = reason.observed
    if reason.threshold is not None:
        message.threshold = reason.threshold
    return message


@dataclass(frozen=True)
class PreflightRun:
    """Everything one preflight evaluation produced (the engine's answer)."""

    spec: ReleaseSpec
    facts: dict[str, bool]
    signals: Signals
    evaluation: Evaluation
    outcome: OverrideOutcome
    token_hash: str | None
    evaluated_at: datetime
    duration_ms: float
    request_id: str


def preflight_result(run: PreflightRun) -> gate_pb2.PreflightResult:
    """The `PreflightResult` message of a preflight run."""
    outcome = run.outcome
    result = gate_pb2.PreflightResult(
        verdict=_to_enum(gate_pb2.Verdict, _VERDICT, outcome.verdict),  # type: ignore[arg-type]
        exit_code=outcome.exit_code,
        reasons=[_reason(r) for r in run.evaluation.reasons],
        override_applied=outcome.override_applied,
        contract_breach=outcome.contract_breach,
        override_result=_to_enum(  # type: ignore[arg-type]
            gate_pb2.OverrideResult, _OVERRIDE, outcome.override_result.upper()
        ),
        duration_ms=run.duration_ms,
        spec_hash=run.spec.spec_hash,
        release=run.spec.release,
        request_id=run.request_id,
        evaluated_at=timestamp(run.evaluated_at),
        dry_run_reasons=[_reason(r) for r in run.evaluation.dry_run_reasons],
    )
    if outcome.token_error is not None:
        result.token_error = _to_enum(  # type: ignore[assignment]
            common_pb2.TokenError, _TOKEN, outcome.token_error
        )
    if outcome.breach_kind is not None:
        result.breach_kind = _to_enum(  # type: ignore[assignment]
            gate_pb2.BreachKind, _BREACH, outcome.breach_kind
        )
    return result


def decision_code(decision: str) -> int:
    """Proto `Decision` number of `ALLOW`/`DENY` (UNSPECIFIED otherwise)."""
    return _to_enum(gate_pb2.Decision, _DECISION, decision)


def verdict_code(verdict: str) -> int:
    """Proto `Verdict` number of `RELEASE_*` (UNSPECIFIED otherwise)."""
    return _to_enum(gate_pb2.Verdict, _VERDICT, verdict)


def override_result_code(result: str) -> int:
    """Proto `OverrideResult` number of `applied`... (UNSPECIFIED otherwise)."""
    return _to_enum(gate_pb2.OverrideResult, _OVERRIDE, result.upper())


def audit_entry(entry: AuditEntry) -> gate_pb2.AuditEntry:
    """An audit row as sent to clients; `audit_record` is its exact inverse."""
    record = entry.record
    return gate_pb2.AuditEntry(
        id=entry.id,
        created_at=timestamp(record.created_at),
        release=record.release,
        build=record.build,
        spec_hash=record.spec_hash,
        verdict=verdict_code(record.verdict),  # type: ignore[arg-type]
        decision=decision_code(record.decision),  # type: ignore[arg-type]
        reasons=[reason_code(r) for r in record.reasons],  # type: ignore[misc]
        signal_snapshot_json=json.dumps(record.signal_snapshot, sort_keys=True),
        override_result=override_result_code(record.override_result),  # type: ignore[arg-type]
        operator=record.operator,
        token_hash=record.token_hash or "",
        config_hash=record.config_hash,
        request_id=record.request_id,
        prev_hash=entry.prev_hash,
        row_hash=entry.row_hash,
    )


def audit_record(message: gate_pb2.AuditEntry) -> AuditRecord:
    """The `AuditRecord` a client-side verifier hashes; raises `ValueError` on bad JSON."""
    snapshot = json.loads(message.signal_snapshot_json)
    if not isinstance(snapshot, dict):
        raise ValueError("signal_snapshot_json is not a JSON object")
    return AuditRecord(
        created_at=message.created_at.ToDatetime(tzinfo=UTC),
        release=message.release,
        build=message.build,
        spec_hash=message.spec_hash,
        verdict=verdict_name(message.verdict),
        decision=decision_name(message.decision),
        reasons=tuple(reason_name(r) for r in message.reasons),
        signal_snapshot=snapshot,
        override_result=override_result_name(message.override_result),
        operator=message.operator,
        token_hash=message.token_hash or None,
        config_hash=message.config_hash,
        request_id=message.request_id,
    )


def reason_codes(numbers: Iterable[int]) -> tuple[str, ...]:
    """Reason names of proto reason numbers."""
    return tuple(reason_name(n) for n in numbers)


def check_response(
    run: PreflightRun, decision: str, audit_written: bool, audit_id: int
) -> gate_pb2.CheckResponse:
    """The `CheckResponse` of a Check: decision, result and audit outcome."""
    return gate_pb2.CheckResponse(
        decision=decision_code(decision),  # type: ignore[arg-type]
        result=preflight_result(run),
        audit_written=audit_written,
        audit_id=audit_id,
    )


def decision_event(
    seq: int,
    ts: datetime,
    release: str,
    verdict: str,
    decision: str,
    reasons: Iterable[str],
    override_result: str,
) -> gate_pb2.DecisionEvent:
    """The `DecisionEvent` streamed to WatchDecisions clients."""
    return gate_pb2.DecisionEvent(
        seq=seq,
        ts=timestamp(ts),
        release=release,
        verdict=verdict_code(verdict),  # type: ignore[arg-type]
        decision=decision_code(decision),  # type: ignore[arg-type]
        reasons=[reason_code(r) for r in reasons],  # type: ignore[misc]
        override_result=override_result_code(override_result),  # type: ignore[arg-type]
    )


def override_state(*, known: bool, used_at: float | None, expires_at: float, now: datetime) -> int:
    """ACTIVE, USED, EXPIRED, or FORGOTTEN when the store no longer has the token."""
    if not known:
        return gate_pb2.OVERRIDE_STATE_FORGOTTEN
    if used_at is not None:
        return gate_pb2.OVERRIDE_STATE_USED
    if now.timestamp() >= expires_at:
        return gate_pb2.OVERRIDE_STATE_EXPIRED
    return gate_pb2.OVERRIDE_STATE_ACTIVE


def preflight_record(run: PreflightRun) -> telemetry_pb2.RecordPreflightRequest:
    """The seed 000 PreflightMetric of a run, as telemetry's `RecordPreflight` takes it."""
    outcome = run.outcome
    stamp = timestamp(run.evaluated_at)
    return telemetry_pb2.RecordPreflightRequest(
        timestamp=stamp,
        verdict=f"VERDICT_{outcome.verdict}",
        exit_code=outcome.verdict.exit_code,
        reasons=sorted(str(code) for code in run.evaluation.codes),
        override_applied=outcome.override_applied,
        contract_breach=outcome.contract_breach,
        override_result=str(outcome.override_result),
        duration_ms=run.duration_ms,
        spec_hash=run.spec.spec_hash,
    )
