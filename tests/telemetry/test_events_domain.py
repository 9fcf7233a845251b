"""The event contract (services/telemetry/domain/events.py), tested without I/O."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.telemetry.domain.errors import TelemetryError
from services.telemetry.domain.events import (
    MAX_BATCH_EVENTS,
    PAYLOAD_FIELDS,
    EventRejected,
    EventType,
    RawEvent,
    parse_tenant_filter,
    validate_batch,
    validate_event,
)
from tests.telemetry.factories import (
    feedback,
    gate_decision,
    http_request,
    incident,
    invoice,
    queue_sample,
    resolved,
)

NOW = datetime(2026, 1, 17, 16, 0, tzinfo=UTC)
VALID_PAYLOADS: dict[EventType, dict[str, Any]] = {
    EventType.INVOICE_PROCESSED: invoice(),
    EventType.INCIDENT_CREATED: incident(),
    EventType.INCIDENT_RESOLVED: resolved(),
    EventType.FEEDBACK_SUBMITTED: feedback(True),
    EventType.HTTP_REQUEST: http_request(200),
    EventType.QUEUE_SAMPLE: queue_sample(0),
    EventType.JOB_EXHAUSTED: {"job_id": "job-1"},
    EventType.GATE_DECISION: gate_decision(False, ["S1_RATE_HIGH"]),
}


def raw(
    kind: EventType = EventType.INVOICE_PROCESSED,
    payload: Any = None,
    *,
    tenant: str = "pilot",
    at: datetime | None = NOW,
    event_id: str | None = None,
) -> RawEvent:
    body = VALID_PAYLOADS[kind] if payload is None else payload
    return RawEvent(
        event_id=str(uuid.uuid4()) if event_id is None else event_id,
        event_type=kind.value,
        tenant_id=tenant,
        occurred_at=at,
        payload_json=body if isinstance(body, str) else json.dumps(body),
    )


def rejection(event: RawEvent) -> tuple[str, str | None]:
    with pytest.raises(EventRejected) as caught:
        validate_event(event, now=NOW)
    return caught.value.error_code, caught.value.field


def test_every_event_type_has_a_payload_contract() -> None:
    assert set(PAYLOAD_FIELDS) == set(EventType)


@pytest.mark.parametrize("kind", list(EventType))
def test_valid_example_of_each_type_is_accepted(kind: EventType) -> None:
    event = validate_event(raw(kind), now=NOW)
    assert event.event_type is kind
    assert set(event.payload) == {spec.name for spec in PAYLOAD_FIELDS[kind]}


def test_event_type_names_match_the_proto_enum() -> None:
    from ptf.telemetry.v1 import telemetry_pb2

    proto = {
        v.name.removeprefix("EVENT_TYPE_")
        for v in telemetry_pb2.EventType.DESCRIPTOR.values
        if v.number != 0
    }
    assert proto == {kind.value for kind in EventType}


def test_unknown_payload_keys_are_dropped() -> None:
    payload = {"depth": 1, "stuck": False, "x": 1}
    event = validate_event(raw(EventType.QUEUE_SAMPLE, payload), now=NOW)
    assert dict(event.payload) == {"depth": 1, "stuck": False}


def test_nullable_field_may_be_absent() -> None:
    payload = invoice()
    del payload["extraction_ms"]
    assert validate_event(raw(payload=payload), now=NOW).payload["extraction_ms"] is None


def test_required_field_set_to_null_is_invalid() -> None:
    assert rejection(raw(payload=invoice(provider=None))) == ("INVALID_FIELD", "payload.provider")


def test_empty_provider_is_normalized_to_unknown() -> None:
    assert validate_event(raw(payload=invoice(provider="  ")), now=NOW).payload["provider"] == (
        "unknown"
    )


def test_rounding_and_mismatch_together_are_inconsistent() -> None:
    payload = invoice(accept_rounding=True, has_mismatch=True)
    assert rejection(raw(payload=payload)) == ("INCONSISTENT_PAYLOAD", "payload.accept_rounding")


def test_duplicate_payload_keys_are_rejected() -> None:
    assert (
        rejection(raw(EventType.QUEUE_SAMPLE, '{"depth": 1, "depth": 2, "stuck": false}'))[0]
        == "PAYLOAD_NOT_JSON"
    )


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (http_request(200) | {"route": "/incidents?id=7"}, "payload.route"),
        (http_request(200) | {"status": 99}, "payload.status"),
        (http_request(200) | {"status": True}, "payload.status"),
        (http_request(200) | {"status": 200.0}, "payload.status"),
        (http_request(200) | {"method": "get"}, "payload.method"),
        (http_request(200) | {"duration_ms": -1}, "payload.duration_ms"),
    ],
)
def test_http_request_field_out_of_contract_is_rejected(
    payload: dict[str, Any], field: str
) -> None:
    assert rejection(raw(EventType.HTTP_REQUEST, payload)) == ("INVALID_FIELD", field)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (invoice(pipeline_total_ms=1e12), "payload.pipeline_total_ms"),
        (invoice(severity="S3"), "payload.severity"),
        (invoice(flags=["lower_case"]), "payload.flags[0]"),
        (invoice(flags="INVOICE_TOTAL_MISMATCH"), "payload.flags"),
        (invoice(invoice_id=""), "payload.invoice_id"),
        (invoice(invoice_id="x" * 129), "payload.invoice_id"),
        (invoice(ocr_suspect="yes"), "payload.ocr_suspect"),
    ],
)
def test_invoice_field_out_of_contract_is_rejected(payload: dict[str, Any], field: str) -> None:
    assert rejection(raw(payload=payload)) == ("INVALID_FIELD", field)


def test_incident_severity_is_required() -> None:
    payload = incident()
    del payload["severity"]
    assert rejection(raw(EventType.INCIDENT_CREATED, payload)) == (
        "MISSING_FIELD",
        "payload.severity",
    )


def test_gate_decision_breach_defaults_to_no_override_kind() -> None:
    payload = gate_decision(False, contract_breach=True)
    event = validate_event(raw(EventType.GATE_DECISION, payload, tenant=""), now=NOW)
    assert event.payload["breach_kind"] == "NO_OVERRIDE"


@pytest.mark.parametrize("kind", [EventType.INVOICE_PROCESSED, EventType.FEEDBACK_SUBMITTED])
def test_tenant_event_without_tenant_is_rejected(kind: EventType) -> None:
    assert rejection(raw(kind, tenant="")) == ("INVALID_TENANT_ID", "tenant_id")


@pytest.mark.parametrize("tenant", ["-pilot", "Pilot", "a" * 64, "pi lot", "pilot\n"])
def test_tenant_id_outside_the_pattern_is_rejected(tenant: str) -> None:
    assert rejection(raw(tenant=tenant)) == ("INVALID_TENANT_ID", "tenant_id")


@pytest.mark.parametrize("tenant", ["pilot", "a", "0", "a" * 63, "t_1-x"])
def test_tenant_id_inside_the_pattern_is_accepted(tenant: str) -> None:
    assert validate_event(raw(tenant=tenant), now=NOW).tenant_id == tenant


@pytest.mark.parametrize(
    "event_id",
    ["", "123", "urn:uuid:12345678-1234-5678-1234-567812345678", "{" + str(uuid.uuid4()) + "}"],
)
def test_event_id_must_be_a_plain_uuid(event_id: str) -> None:
    assert rejection(raw(event_id=event_id)) == ("INVALID_EVENT_ID", "event_id")


def test_occurred_at_a_little_ahead_is_accepted_as_clock_skew() -> None:
    assert validate_event(raw(at=NOW + timedelta(minutes=4)), now=NOW)


@pytest.mark.parametrize(
    ("at", "code"),
    [
        (NOW + timedelta(minutes=6), "OCCURRED_AT_IN_FUTURE"),
        (datetime(1999, 12, 31, tzinfo=UTC), "OCCURRED_AT_TOO_OLD"),
        (NOW.replace(tzinfo=None), "INVALID_OCCURRED_AT"),
        (None, "MISSING_OCCURRED_AT"),
    ],
)
def test_occurred_at_out_of_bounds_is_rejected(at: datetime | None, code: str) -> None:
    assert rejection(raw(at=at)) == (code, "occurred_at")


def test_batch_reports_each_bad_event_by_index_and_keeps_the_rest() -> None:
    batch = validate_batch(
        [raw(), raw(payload="[]"), raw(), raw(tenant="X")],
        now=NOW,
    )
    assert [index for index, _ in batch.valid] == [0, 2]
    assert [(index, e.error_code) for index, e in batch.rejected] == [
        (1, "PAYLOAD_NOT_OBJECT"),
        (3, "INVALID_TENANT_ID"),
    ]


def test_batch_over_the_limit_is_refused() -> None:
    with pytest.raises(TelemetryError) as caught:
        validate_batch([raw()] * (MAX_BATCH_EVENTS + 1), now=NOW)
    assert caught.value.error_code == "BATCH_TOO_LARGE"


def test_tenant_filter_accepts_empty_as_all_tenants() -> None:
    assert parse_tenant_filter("") is None
    assert parse_tenant_filter("pilot") == "pilot"


json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=10,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(list(EventType)),
    payload=st.one_of(
        st.dictionaries(st.text(max_size=20), json_values, max_size=8),
        json_values,
        st.text(max_size=200),
    ),
    tenant=st.text(max_size=70),
)
def test_any_input_is_accepted_or_rejected_with_a_code_never_crashes(
    kind: EventType, payload: Any, tenant: str
) -> None:
    text = payload if isinstance(payload, str) else json.dumps(payload)
    try:
        event = validate_event(raw(kind, text, tenant=tenant), now=NOW)
    except EventRejected as exc:
        code = exc.error_code
    else:
        assert json.loads(event.payload_text()) == dict(event.payload)
        return
    assert code.isupper()


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(list(EventType)), data=st.data())
def test_validation_is_idempotent_on_its_own_output(kind: EventType, data: st.DataObject) -> None:
    base = dict(VALID_PAYLOADS[kind])
    mutated = data.draw(
        st.fixed_dictionaries({}, optional={k: st.just(v) for k, v in base.items()}),
        label="kept fields",
    )
    try:
        first = validate_event(raw(kind, mutated, tenant="pilot"), now=NOW)
    except EventRejected:
        return
    again = validate_event(raw(kind, first.payload_text(), tenant="pilot"), now=NOW)
    assert again.payload == first.payload
