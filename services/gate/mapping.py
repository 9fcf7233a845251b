"""Translations between the gate domain / audit records and the `ptf.gate.v1` messages.

Domain enum members are named like the proto enums without their prefix (a
test checks it). Towards the proto, one table per enum gives the generated
enum value of each domain member, so messages are built with their declared
types; back from the proto the translation is by name. Audit rows travel
losslessly: a stored string maps to the enum of the same name and the empty
string to `UNSPECIFIED` (override issuance rows have no verdict or decision),
so a client can rebuild the exact `AuditRecord` and recompute its hash
(`gatectl audit verify`). A stored value that is no enum name at all (only
possible by tampering) maps to `UNSPECIFIED`, and the recomputed hash then
exposes the row.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TYPE_CHECKING

from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from google.protobuf.timestamp_pb2 import Timestamp
from ptf.common.v1 import common_pb2
from ptf.gate.v1 import gate_pb2
from ptf.telemetry.v1 import telemetry_pb2

from services.gate.audit import AuditEntry, AuditRecord
from services.gate.domain.check import Decision
from services.gate.domain.evaluate import Reason
from services.gate.domain.override import BreachKind, OverrideResult, OverrideState
from services.gate.domain.reasons import BlockReasonCode, ReasonLevel, Verdict
from services.runtime.tokens.errors import TokenError

if TYPE_CHECKING:
    # The engine builds its replies with PreflightReplies, so only the types come back.
    from services.gate.engine import OverrideDescription, PreflightRun

_VERDICT = "VERDICT_"
_DECISION = "DECISION_"
_REASON = "BLOCK_REASON_CODE_"
_LEVEL = "REASON_LEVEL_"
_OVERRIDE = "OVERRIDE_RESULT_"
_BREACH = "BREACH_KIND_"
_TOKEN = "TOKEN_ERROR_"
_B = BlockReasonCode


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp(value: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime.

    Integer arithmetic on the offset from the epoch: exact to the microsecond like
    `Timestamp.FromDatetime`, at a third of its cost (every Preflight makes two).
    """
    delta = value - _EPOCH
    return Timestamp(seconds=delta.days * 86400 + delta.seconds, nanos=delta.microseconds * 1000)


# Domain name → proto enum value, one table per enum, typed with the generated
# enum type so messages are built without casts. A name missing from a table
# (the empty string of an issuance row, or a tampered one) maps to UNSPECIFIED.
_VERDICTS: Mapping[str, gate_pb2.Verdict] = MappingProxyType(
    {
        Verdict.RELEASE_OK: gate_pb2.VERDICT_RELEASE_OK,
        Verdict.RELEASE_HOLD: gate_pb2.VERDICT_RELEASE_HOLD,
        Verdict.RELEASE_BLOCK: gate_pb2.VERDICT_RELEASE_BLOCK,
    }
)
_DECISIONS: Mapping[str, gate_pb2.Decision] = MappingProxyType(
    {Decision.ALLOW: gate_pb2.DECISION_ALLOW, Decision.DENY: gate_pb2.DECISION_DENY}
)
_LEVELS: Mapping[str, gate_pb2.ReasonLevel] = MappingProxyType(
    {ReasonLevel.HOLD: gate_pb2.REASON_LEVEL_HOLD, ReasonLevel.BLOCK: gate_pb2.REASON_LEVEL_BLOCK}
)
_OVERRIDE_RESULTS: Mapping[str, gate_pb2.OverrideResult] = MappingProxyType(
    {
        OverrideResult.NONE: gate_pb2.OVERRIDE_RESULT_NONE,
        OverrideResult.APPLIED: gate_pb2.OVERRIDE_RESULT_APPLIED,
        OverrideResult.REJECTED: gate_pb2.OVERRIDE_RESULT_REJECTED,
        OverrideResult.BREACH: gate_pb2.OVERRIDE_RESULT_BREACH,
        OverrideResult.IGNORED: gate_pb2.OVERRIDE_RESULT_IGNORED,
    }
)
_BREACH_KINDS: Mapping[str, gate_pb2.BreachKind] = MappingProxyType(
    {
        BreachKind.NO_OVERRIDE: gate_pb2.BREACH_KIND_NO_OVERRIDE,
        BreachKind.NON_OVERRIDABLE: gate_pb2.BREACH_KIND_NON_OVERRIDABLE,
    }
)
_TOKEN_ERRORS: Mapping[str, common_pb2.TokenError] = MappingProxyType(
    {
        TokenError.TOKEN_INVALID: common_pb2.TOKEN_ERROR_TOKEN_INVALID,
        TokenError.TOKEN_EXPIRED: common_pb2.TOKEN_ERROR_TOKEN_EXPIRED,
        TokenError.TOKEN_USED: common_pb2.TOKEN_ERROR_TOKEN_USED,
        TokenError.TOKEN_PARAMS_MISMATCH: common_pb2.TOKEN_ERROR_TOKEN_PARAMS_MISMATCH,
        TokenError.TOKEN_STORE_UNAVAILABLE: common_pb2.TOKEN_ERROR_TOKEN_STORE_UNAVAILABLE,
    }
)
_OVERRIDE_STATES: Mapping[str, gate_pb2.OverrideState] = MappingProxyType(
    {
        OverrideState.ACTIVE: gate_pb2.OVERRIDE_STATE_ACTIVE,
        OverrideState.USED: gate_pb2.OVERRIDE_STATE_USED,
        OverrideState.EXPIRED: gate_pb2.OVERRIDE_STATE_EXPIRED,
        OverrideState.FORGOTTEN: gate_pb2.OVERRIDE_STATE_FORGOTTEN,
    }
)
_REASONS: Mapping[str, gate_pb2.BlockReasonCode] = MappingProxyType(
    {
        _B.NOT_READY: gate_pb2.BLOCK_REASON_CODE_NOT_READY,
        _B.CONFIG_INVALID: gate_pb2.BLOCK_REASON_CODE_CONFIG_INVALID,
        _B.QUEUE_STUCK: gate_pb2.BLOCK_REASON_CODE_QUEUE_STUCK,
        _B.ERROR_RATE_5XX_HIGH: gate_pb2.BLOCK_REASON_CODE_ERROR_RATE_5XX_HIGH,
        _B.TESTS_FAILED: gate_pb2.BLOCK_REASON_CODE_TESTS_FAILED,
        _B.SMOKE_FAILED: gate_pb2.BLOCK_REASON_CODE_SMOKE_FAILED,
        _B.S1_RATE_HIGH: gate_pb2.BLOCK_REASON_CODE_S1_RATE_HIGH,
        _B.P95_LATENCY_HIGH: gate_pb2.BLOCK_REASON_CODE_P95_LATENCY_HIGH,
        _B.OCR_SUSPECT_RATE_HIGH: gate_pb2.BLOCK_REASON_CODE_OCR_SUSPECT_RATE_HIGH,
        _B.S2_RATE_HIGH: gate_pb2.BLOCK_REASON_CODE_S2_RATE_HIGH,
        _B.ACCEPT_ROUNDING_RATE_OUT_OF_BAND: (
            gate_pb2.BLOCK_REASON_CODE_ACCEPT_ROUNDING_RATE_OUT_OF_BAND
        ),
        _B.QUEUE_DEPTH_HIGH: gate_pb2.BLOCK_REASON_CODE_QUEUE_DEPTH_HIGH,
        _B.FEEDBACK_COVERAGE_LOW: gate_pb2.BLOCK_REASON_CODE_FEEDBACK_COVERAGE_LOW,
        _B.BACKTEST_REGRESSION: gate_pb2.BLOCK_REASON_CODE_BACKTEST_REGRESSION,
        _B.CONFIG_BACKTEST_REGRESSION: gate_pb2.BLOCK_REASON_CODE_CONFIG_BACKTEST_REGRESSION,
        _B.INSUFFICIENT_DATA: gate_pb2.BLOCK_REASON_CODE_INSUFFICIENT_DATA,
        _B.SIGNAL_UNAVAILABLE: gate_pb2.BLOCK_REASON_CODE_SIGNAL_UNAVAILABLE,
    }
)


def _from_enum(enum: EnumTypeWrapper, prefix: str, number: int) -> str:
    """The domain name of a proto number: "" for `UNSPECIFIED` or an unknown number."""
    if number == 0:
        return ""
    try:
        return str(enum.Name(number)).removeprefix(prefix)
    except ValueError:
        return ""


def reason_code(code: BlockReasonCode | str) -> int:
    """Proto `BlockReasonCode` number of a reason name (0 = UNSPECIFIED if unknown)."""
    return _reason_value(code)


def _reason_value(code: BlockReasonCode | str) -> gate_pb2.BlockReasonCode:
    """`reason_code` typed as the proto enum, for message fields."""
    return _REASONS.get(code, gate_pb2.BLOCK_REASON_CODE_UNSPECIFIED)


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
    """`applied`, `rejected`, ... (lower case, as stored and as docs/SPEC.md §5.1 spells them)."""
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
        code=_reason_value(reason.code),
        level=level_code(reason.level),
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


def preflight_result(run: PreflightRun) -> gate_pb2.PreflightResult:
    """The `PreflightResult` message of a preflight run."""
    result = _result_template(run)
    _stamp_result(result, run)
    return result


def _result_template(run: PreflightRun) -> gate_pb2.PreflightResult:
    """Everything of the result but what each run has of its own (see `_stamp_result`)."""
    outcome = run.outcome
    result = gate_pb2.PreflightResult(
        verdict=verdict_code(outcome.verdict),
        exit_code=outcome.exit_code,
        reasons=[_reason(r) for r in run.evaluation.reasons],
        override_applied=outcome.override_applied,
        contract_breach=outcome.contract_breach,
        override_result=override_result_code(outcome.override_result),
        spec_hash=run.spec.spec_hash,
        release=run.spec.release,
        dry_run_reasons=[_reason(r) for r in run.evaluation.dry_run_reasons],
    )
    if outcome.token_error is not None:
        result.token_error = token_error_code(outcome.token_error)
    if outcome.breach_kind is not None:
        result.breach_kind = breach_kind_code(outcome.breach_kind)
    return result


def _stamp_result(result: gate_pb2.PreflightResult, run: PreflightRun) -> None:
    result.duration_ms = run.duration_ms
    result.request_id = run.request_id
    result.evaluated_at.CopyFrom(timestamp(run.evaluated_at))


def decision_code(decision: str) -> gate_pb2.Decision:
    """Proto `Decision` of `ALLOW`/`DENY` (UNSPECIFIED otherwise)."""
    return _DECISIONS.get(decision, gate_pb2.DECISION_UNSPECIFIED)


def verdict_code(verdict: str) -> gate_pb2.Verdict:
    """Proto `Verdict` of `RELEASE_*` (UNSPECIFIED otherwise)."""
    return _VERDICTS.get(verdict, gate_pb2.VERDICT_UNSPECIFIED)


def override_result_code(result: str) -> gate_pb2.OverrideResult:
    """Proto `OverrideResult` of `applied`... in any letter case (UNSPECIFIED otherwise)."""
    return _OVERRIDE_RESULTS.get(result.lower(), gate_pb2.OVERRIDE_RESULT_UNSPECIFIED)


def level_code(level: str) -> gate_pb2.ReasonLevel:
    """Proto `ReasonLevel` of `HOLD`/`BLOCK` (UNSPECIFIED otherwise)."""
    return _LEVELS.get(level, gate_pb2.REASON_LEVEL_UNSPECIFIED)


def token_error_code(error: str) -> common_pb2.TokenError:
    """Proto `TokenError` of `TOKEN_USED`... (UNSPECIFIED otherwise)."""
    return _TOKEN_ERRORS.get(error, common_pb2.TOKEN_ERROR_UNSPECIFIED)


def breach_kind_code(kind: str) -> gate_pb2.BreachKind:
    """Proto `BreachKind` of `NO_OVERRIDE`/`NON_OVERRIDABLE` (UNSPECIFIED otherwise)."""
    return _BREACH_KINDS.get(kind, gate_pb2.BREACH_KIND_UNSPECIFIED)


def override_state_code(state: str) -> gate_pb2.OverrideState:
    """Proto `OverrideState` of `ACTIVE`... (UNSPECIFIED otherwise)."""
    return _OVERRIDE_STATES.get(state, gate_pb2.OVERRIDE_STATE_UNSPECIFIED)


def audit_entry(entry: AuditEntry) -> gate_pb2.AuditEntry:
    """An audit row as sent to clients; `audit_record` is its exact inverse."""
    record = entry.record
    return gate_pb2.AuditEntry(
        id=entry.id,
        created_at=timestamp(record.created_at),
        release=record.release,
        build=record.build,
        spec_hash=record.spec_hash,
        verdict=verdict_code(record.verdict),
        decision=decision_code(record.decision),
        reasons=[_reason_value(r) for r in record.reasons],
        signal_snapshot_json=json.dumps(record.signal_snapshot, sort_keys=True),
        override_result=override_result_code(record.override_result),
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
        decision=decision_code(decision),
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
        verdict=verdict_code(verdict),
        decision=decision_code(decision),
        reasons=[_reason_value(r) for r in reasons],
        override_result=override_result_code(override_result),
    )


def override_info(description: OverrideDescription) -> gate_pb2.OverrideInfo:
    """The `OverrideInfo` of a token: store record and state, and its issuance audit row.

    Timestamps come from the store record; a token the store has forgotten
    takes its issue time from the issuance row.
    """
    info, issuance = description.info, description.issuance
    message = gate_pb2.OverrideInfo(
        token_hash=description.token_hash,
        state=override_state_code(description.state),
        audit_entries=[audit_entry(e) for e in description.entries],
    )
    if info is not None:
        message.issued_at.CopyFrom(timestamp(datetime.fromtimestamp(info.created_at, UTC)))
        message.expires_at.CopyFrom(timestamp(datetime.fromtimestamp(info.expires_at, UTC)))
        if info.used_at is not None:
            message.used_at.CopyFrom(timestamp(datetime.fromtimestamp(info.used_at, UTC)))
    if issuance is not None:
        record = issuance.record
        message.release = record.release
        message.spec_hash = record.spec_hash
        message.reasons.extend(_reason_value(r) for r in record.reasons)
        message.operator = record.operator
        message.justification = str(record.signal_snapshot.get("justification", ""))
        if info is None:
            message.issued_at.CopyFrom(timestamp(record.created_at))
    return message


def preflight_record(run: PreflightRun) -> telemetry_pb2.RecordPreflightRequest:
    """A run as telemetry's `RecordPreflight` takes it (PreflightMetric, docs/seeds/000.txt)."""
    record = _record_template(run)
    _stamp_record(record, run)
    return record


def _record_template(run: PreflightRun) -> telemetry_pb2.RecordPreflightRequest:
    outcome = run.outcome
    return telemetry_pb2.RecordPreflightRequest(
        verdict=f"VERDICT_{outcome.verdict}",
        exit_code=outcome.verdict.exit_code,
        reasons=sorted(str(code) for code in run.evaluation.codes),
        override_applied=outcome.override_applied,
        contract_breach=outcome.contract_breach,
        override_result=str(outcome.override_result),
        spec_hash=run.spec.spec_hash,
    )


def _stamp_record(record: telemetry_pb2.RecordPreflightRequest, run: PreflightRun) -> None:
    record.timestamp.CopyFrom(timestamp(run.evaluated_at))
    record.duration_ms = run.duration_ms


class PreflightReplies:
    """`preflight_result` and `preflight_record`, built from a copy of a template per
    (evaluation, outcome, spec hash, release).

    Under load the verdict cache hands every Preflight of a release the same
    `Evaluation` object, so all but the run's own fields (duration, request id,
    evaluation time) are built once and copied (a C-level copy) per call.
    Evaluations are recognized by identity and kept with their templates, so an
    id is never reused while its entry lives. Bounded, oldest first out.
    """

    def __init__(self, max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._max_entries = max_entries
        self._templates: OrderedDict[
            tuple[int, object, str, str],
            tuple[object, gate_pb2.PreflightResult, telemetry_pb2.RecordPreflightRequest],
        ] = OrderedDict()

    def __len__(self) -> int:
        return len(self._templates)

    def result(self, run: PreflightRun) -> gate_pb2.PreflightResult:
        """The same message as `preflight_result(run)`."""
        result = gate_pb2.PreflightResult()
        result.CopyFrom(self._entry(run)[1])
        _stamp_result(result, run)
        return result

    def record(self, run: PreflightRun) -> telemetry_pb2.RecordPreflightRequest:
        """The same message as `preflight_record(run)`."""
        record = telemetry_pb2.RecordPreflightRequest()
        record.CopyFrom(self._entry(run)[2])
        _stamp_record(record, run)
        return record

    def _entry(
        self, run: PreflightRun
    ) -> tuple[object, gate_pb2.PreflightResult, telemetry_pb2.RecordPreflightRequest]:
        key = (id(run.evaluation), run.outcome, run.spec.spec_hash, run.spec.release)
        entry = self._templates.get(key)
        if entry is not None and entry[0] is run.evaluation:
            return entry
        entry = (run.evaluation, _result_template(run), _record_template(run))
        self._templates[key] = entry
        self._templates.move_to_end(key)
        while len(self._templates) > self._max_entries:
            self._templates.popitem(last=False)
        return entry
