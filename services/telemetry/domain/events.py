"""The telemetry event contract and its validation (docs/SPEC.md §3.8, §4.1).

Every event is `(event_id, type, tenant_id, occurred_at, payload_json)`:

- `event_id`: a UUID chosen by the producer; the idempotency key (a second
  event with the same id is a duplicate and is not counted again).
- `type`: one of `EventType` below.
- `tenant_id`: `^[a-z0-9][a-z0-9_-]{0,62}$`. Required for tenant events
  (invoices, incidents, feedback); may be empty for system-wide events
  (`HTTP_REQUEST`, `QUEUE_SAMPLE`, `JOB_EXHAUSTED`, `GATE_DECISION`). A
  tenant-filtered summary counts that tenant's events plus system-wide ones.
- `occurred_at`: required; at most `MAX_FUTURE_SKEW` ahead of the receiver's
  clock and not before `EARLIEST_OCCURRED_AT`.
- `payload_json`: one JSON object of at most `MAX_PAYLOAD_BYTES` (UTF-8), no
  NaN/Infinity, no duplicate keys. Unknown keys are ignored (dropped), so a
  newer producer can add fields; a field marked "nullable" may be `null` or
  absent; every other listed field is required.

Payload fields per type ("id" = string of 1..128 chars, "CODE" = upper-snake
name such as `INVOICE_TOTAL_MISMATCH`, "ms" = finite number in 0..86 400 000):

INVOICE_PROCESSED
    invoice_id: id, job_id: id, provider: string ≤ 128 (empty → "unknown"),
    pipeline_total_ms: ms, extraction_ms: ms nullable,
    quality_grade: "OK" | "CHECK" | "BAD", flags: [CODE] (≤ 64),
    has_mismatch: bool, severity: "S1" | "S2" | null, ocr_suspect: bool,
    accept_rounding: bool, mismatch_ratio: number ≥ 0 nullable,
    primary_flag: CODE nullable, action_class: CODE nullable.
    `accept_rounding` and `has_mismatch` are never both true (rounding is by
    definition not a mismatch, docs/SPEC.md §3.3).
INCIDENT_CREATED
    incident_id: id, invoice_id: id, provider: string ≤ 128 (empty → "unknown"),
    severity: "S1" | "S2", primary_flag: CODE, action_class: CODE,
    ocr_suspect: bool.
INCIDENT_RESOLVED
    incident_id: id, resolution_reason: string ≤ 500.
FEEDBACK_SUBMITTED
    incident_id: id, hint_correct: bool, actual_root_cause: string ≤ 200 nullable.
HTTP_REQUEST
    route: the route template, not the raw path (starts with "/", ≤ 200 chars,
    no query string), method: GET | POST | PUT | PATCH | DELETE | HEAD | OPTIONS,
    status: integer 100..599, duration_ms: ms.
QUEUE_SAMPLE
    depth: integer 0..10^9, stuck: bool.
JOB_EXHAUSTED
    job_id: id.
GATE_DECISION
    release: id, allowed: bool, reasons: [CODE] (BlockReasonCode names, ≤ 32),
    contract_breach: bool, audit_write_failed: bool,
    breach_kind: "NO_OVERRIDE" | "NON_OVERRIDABLE" nullable (default NO_OVERRIDE
    when contract_breach is true).

A batch holds at most `MAX_BATCH_EVENTS` events; each invalid event is
reported with its index and a stable error code, the valid ones are stored.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from services.telemetry.domain.errors import TelemetryError

MAX_BATCH_EVENTS = 1000
MAX_PAYLOAD_BYTES = 16 * 1024
MAX_FUTURE_SKEW = timedelta(minutes=5)
EARLIEST_OCCURRED_AT = datetime(2000, 1, 1, tzinfo=UTC)
TENANT_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
UNKNOWN_PROVIDER = "unknown"

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,63}")
_ROUTE = re.compile(r"/[A-Za-z0-9_\-./{}:]{0,199}")
_MAX_MS = 86_400_000.0

JsonValue = Any


class EventType(StrEnum):
    """Event types; names equal the proto `EventType` names without `EVENT_TYPE_`."""

    INVOICE_PROCESSED = "INVOICE_PROCESSED"
    INCIDENT_CREATED = "INCIDENT_CREATED"
    INCIDENT_RESOLVED = "INCIDENT_RESOLVED"
    FEEDBACK_SUBMITTED = "FEEDBACK_SUBMITTED"
    HTTP_REQUEST = "HTTP_REQUEST"
    QUEUE_SAMPLE = "QUEUE_SAMPLE"
    JOB_EXHAUSTED = "JOB_EXHAUSTED"
    GATE_DECISION = "GATE_DECISION"


SYSTEM_WIDE_TYPES = frozenset(
    {
        EventType.HTTP_REQUEST,
        EventType.QUEUE_SAMPLE,
        EventType.JOB_EXHAUSTED,
        EventType.GATE_DECISION,
    }
)


class EventRejected(TelemetryError):
    """One event breaks the contract; the rest of its batch is unaffected."""


@dataclass(frozen=True)
class UnreadableInstant:
    """A timestamp the transport carried but no datetime can hold (nanos < 0, year 10000, …).

    The adapter keeps it instead of raising, so only its own event is refused
    and the rest of the batch is recorded.
    """

    reason: str


@dataclass(frozen=True)
class RawEvent:
    """An event as received, before validation (adapters fill it from proto or JSON)."""

    event_id: str
    event_type: str
    tenant_id: str
    occurred_at: datetime | UnreadableInstant | None
    payload_json: str


@dataclass(frozen=True)
class ValidEvent:
    """An event that satisfies the contract, with its payload normalized."""

    event_id: uuid.UUID
    event_type: EventType
    tenant_id: str
    occurred_at: datetime
    payload: Mapping[str, JsonValue]

    def payload_text(self) -> str:
        """Canonical JSON of the payload (sorted keys) as stored."""
        return json.dumps(self.payload, sort_keys=True, separators=(",", ":"))


# --- field validators ---------------------------------------------------------

Validator = Callable[[JsonValue, str], JsonValue]


def _invalid(field: str, message: str) -> EventRejected:
    return EventRejected("INVALID_FIELD", f"{field} {message}", field=field)


def _text(max_length: int, *, min_length: int = 0) -> Validator:
    def check(value: JsonValue, field: str) -> str:
        if not isinstance(value, str):
            raise _invalid(field, "must be a string")
        if not min_length <= len(value) <= max_length:
            raise _invalid(field, f"must have {min_length}..{max_length} characters")
        return value

    return check


_ID = _text(128, min_length=1)


def _provider(value: JsonValue, field: str) -> str:
    text: str = _text(128)(value, field)
    return text.strip() or UNKNOWN_PROVIDER


def _code(value: JsonValue, field: str) -> str:
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise _invalid(field, "must be an UPPER_SNAKE_CASE code of at most 64 characters")
    return value


def _choice(*allowed: str) -> Validator:
    def check(value: JsonValue, field: str) -> str:
        if value not in allowed:
            raise _invalid(field, f"must be one of {', '.join(allowed)}")
        return str(value)

    return check


def _bool(value: JsonValue, field: str) -> bool:
    if not isinstance(value, bool):
        raise _invalid(field, "must be true or false")
    return value


def _int(minimum: int, maximum: int) -> Validator:
    def check(value: JsonValue, field: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(field, "must be an integer")
        if not minimum <= value <= maximum:
            raise _invalid(field, f"must be in {minimum}..{maximum}")
        return value

    return check


def _number(maximum: float) -> Validator:
    def check(value: JsonValue, field: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _invalid(field, "must be a number")
        if not math.isfinite(value) or not 0 <= value <= maximum:
            raise _invalid(field, f"must be a finite number in 0..{maximum:g}")
        return float(value)

    return check


_MS = _number(_MAX_MS)


def _codes(max_items: int) -> Validator:
    def check(value: JsonValue, field: str) -> list[str]:
        if not isinstance(value, list):
            raise _invalid(field, "must be a list of codes")
        if len(value) > max_items:
            raise _invalid(field, f"must have at most {max_items} items")
        return [_code(item, f"{field}[{i}]") for i, item in enumerate(value)]

    return check


def _route(value: JsonValue, field: str) -> str:
    if not isinstance(value, str) or not _ROUTE.fullmatch(value):
        raise _invalid(field, "must be a route template such as /admin/incidents/{id}")
    return value


@dataclass(frozen=True)
class FieldSpec:
    name: str
    validate: Validator
    nullable: bool = False


_SEVERITY = _choice("S1", "S2")

PAYLOAD_FIELDS: Mapping[EventType, tuple[FieldSpec, ...]] = MappingProxyType(
    {
        EventType.INVOICE_PROCESSED: (
            FieldSpec("invoice_id", _ID),
            FieldSpec("job_id", _ID),
            FieldSpec("provider", _provider),
            FieldSpec("pipeline_total_ms", _MS),
            FieldSpec("extraction_ms", _MS, nullable=True),
            FieldSpec("quality_grade", _choice("OK", "CHECK", "BAD")),
            FieldSpec("flags", _codes(64)),
            FieldSpec("has_mismatch", _bool),
            FieldSpec("severity", _SEVERITY, nullable=True),
            FieldSpec("ocr_suspect", _bool),
            FieldSpec("accept_rounding", _bool),
            FieldSpec("mismatch_ratio", _number(1e9), nullable=True),
            FieldSpec("primary_flag", _code, nullable=True),
            FieldSpec("action_class", _code, nullable=True),
        ),
        EventType.INCIDENT_CREATED: (
            FieldSpec("incident_id", _ID),
            FieldSpec("invoice_id", _ID),
            FieldSpec("provider", _provider),
            FieldSpec("severity", _SEVERITY),
            FieldSpec("primary_flag", _code),
            FieldSpec("action_class", _code),
            FieldSpec("ocr_suspect", _bool),
        ),
        EventType.INCIDENT_RESOLVED: (
            FieldSpec("incident_id", _ID),
            FieldSpec("resolution_reason", _text(500)),
        ),
        EventType.FEEDBACK_SUBMITTED: (
            FieldSpec("incident_id", _ID),
            FieldSpec("hint_correct", _bool),
            FieldSpec("actual_root_cause", _text(200), nullable=True),
        ),
        EventType.HTTP_REQUEST: (
            FieldSpec("route", _route),
            FieldSpec(
                "method", _choice("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
            ),
            FieldSpec("status", _int(100, 599)),
            FieldSpec("duration_ms", _MS),
        ),
        EventType.QUEUE_SAMPLE: (
            FieldSpec("depth", _int(0, 10**9)),
            FieldSpec("stuck", _bool),
        ),
        EventType.JOB_EXHAUSTED: (FieldSpec("job_id", _ID),),
        EventType.GATE_DECISION: (
            FieldSpec("release", _ID),
            FieldSpec("allowed", _bool),
            FieldSpec("reasons", _codes(32)),
            FieldSpec("contract_breach", _bool),
            FieldSpec("audit_write_failed", _bool),
            FieldSpec("breach_kind", _choice("NO_OVERRIDE", "NON_OVERRIDABLE"), nullable=True),
        ),
    }
)


# --- event validation ----------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")


def _unique_keys(pairs: list[tuple[str, JsonValue]]) -> dict[str, JsonValue]:
    result: dict[str, JsonValue] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_payload(payload_json: str) -> dict[str, JsonValue]:
    """The payload as a JSON object; raise `EventRejected` if too large or not an object."""
    if len(payload_json.encode("utf-8")) > MAX_PAYLOAD_BYTES:
        raise EventRejected(
            "PAYLOAD_TOO_LARGE", f"payload exceeds {MAX_PAYLOAD_BYTES} bytes", field="payload_json"
        )
    try:
        data = json.loads(
            payload_json, parse_constant=_reject_constant, object_pairs_hook=_unique_keys
        )
    except (ValueError, RecursionError) as exc:
        raise EventRejected(
            "PAYLOAD_NOT_JSON", f"payload is not valid JSON: {exc}", field="payload_json"
        ) from exc
    if not isinstance(data, dict):
        raise EventRejected(
            "PAYLOAD_NOT_OBJECT", "payload must be a JSON object", field="payload_json"
        )
    return data


def validate_payload(event_type: EventType, data: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """The normalized payload of one event type (unknown keys dropped)."""
    payload: dict[str, JsonValue] = {}
    for spec in PAYLOAD_FIELDS[event_type]:
        field = f"payload.{spec.name}"
        value = data.get(spec.name)
        if value is None:
            if not spec.nullable:
                code = "MISSING_FIELD" if spec.name not in data else "INVALID_FIELD"
                raise EventRejected(code, f"{field} is required", field=field)
            payload[spec.name] = None
            continue
        payload[spec.name] = spec.validate(value, field)
    if (
        event_type is EventType.INVOICE_PROCESSED
        and payload["accept_rounding"]
        and payload["has_mismatch"]
    ):
        raise EventRejected(
            "INCONSISTENT_PAYLOAD",
            "accept_rounding and has_mismatch cannot both be true",
            field="payload.accept_rounding",
        )
    if event_type is EventType.GATE_DECISION and payload["contract_breach"]:
        payload["breach_kind"] = payload["breach_kind"] or "NO_OVERRIDE"
    return payload


def _event_type(name: str) -> EventType:
    try:
        return EventType(name)
    except ValueError:
        raise EventRejected(
            "UNKNOWN_EVENT_TYPE", f"unknown event type {name!r}", field="type"
        ) from None


def _tenant(tenant_id: str, event_type: EventType) -> str:
    if tenant_id == "" and event_type in SYSTEM_WIDE_TYPES:
        return tenant_id
    if not TENANT_ID_PATTERN.fullmatch(tenant_id):
        raise EventRejected(
            "INVALID_TENANT_ID",
            "tenant_id must match ^[a-z0-9][a-z0-9_-]{0,62}$",
            field="tenant_id",
        )
    return tenant_id


def parse_tenant_filter(value: str | None) -> str | None:
    """A query's tenant filter: None or empty means all tenants, else a valid tenant id."""
    if not value:
        return None
    if not TENANT_ID_PATTERN.fullmatch(value):
        raise TelemetryError(
            "INVALID_TENANT_ID",
            "tenant_id must match ^[a-z0-9][a-z0-9_-]{0,62}$",
            field="tenant_id",
        )
    return value


def _occurred_at(value: datetime | UnreadableInstant | None, now: datetime) -> datetime:
    if value is None:
        raise EventRejected("MISSING_OCCURRED_AT", "occurred_at is required", field="occurred_at")
    if isinstance(value, UnreadableInstant):
        raise EventRejected(
            "INVALID_OCCURRED_AT",
            f"occurred_at is not a valid timestamp: {value.reason}",
            field="occurred_at",
        )
    if value.tzinfo is None:
        raise EventRejected(
            "INVALID_OCCURRED_AT", "occurred_at must carry a timezone", field="occurred_at"
        )
    if value > now + MAX_FUTURE_SKEW:
        raise EventRejected(
            "OCCURRED_AT_IN_FUTURE",
            f"occurred_at is more than {MAX_FUTURE_SKEW} in the future",
            field="occurred_at",
        )
    if value < EARLIEST_OCCURRED_AT:
        raise EventRejected(
            "OCCURRED_AT_TOO_OLD",
            f"occurred_at is before {EARLIEST_OCCURRED_AT.date()}",
            field="occurred_at",
        )
    return value.astimezone(UTC)


def _event_id(value: str) -> uuid.UUID:
    if not _UUID.fullmatch(value):
        raise EventRejected(
            "INVALID_EVENT_ID", "event_id must be a UUID (8-4-4-4-12 hex digits)", field="event_id"
        )
    return uuid.UUID(value)


def validate_event(raw: RawEvent, *, now: datetime) -> ValidEvent:
    """The event checked against the contract; raise `EventRejected` with a stable code."""
    event_id = _event_id(raw.event_id)
    event_type = _event_type(raw.event_type)
    tenant_id = _tenant(raw.tenant_id, event_type)
    occurred_at = _occurred_at(raw.occurred_at, now)
    payload = validate_payload(event_type, parse_payload(raw.payload_json))
    return ValidEvent(event_id, event_type, tenant_id, occurred_at, payload)


@dataclass(frozen=True)
class BatchValidation:
    """Valid events (with their batch index) and rejections by index."""

    valid: tuple[tuple[int, ValidEvent], ...]
    rejected: tuple[tuple[int, EventRejected], ...]


def validate_batch(events: list[RawEvent], *, now: datetime) -> BatchValidation:
    """Validate every event of a batch; raise `TelemetryError` if the batch itself is too big."""
    if len(events) > MAX_BATCH_EVENTS:
        raise TelemetryError(
            "BATCH_TOO_LARGE",
            f"a batch holds at most {MAX_BATCH_EVENTS} events, got {len(events)}",
            field="events",
        )
    valid: list[tuple[int, ValidEvent]] = []
    rejected: list[tuple[int, EventRejected]] = []
    for index, raw in enumerate(events):
        try:
            valid.append((index, validate_event(raw, now=now)))
        except EventRejected as exc:
            rejected.append((index, exc))
    return BatchValidation(tuple(valid), tuple(rejected))
