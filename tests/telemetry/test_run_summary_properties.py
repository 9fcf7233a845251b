"""Property: the run summary equals a direct count over the events that were recorded.

Hypothesis draws small random event sets (modest example count: each example
talks to the real service and Postgres); every example uses its own tenant and
time slot, records the events (some twice, to check idempotency) and compares
GET /run-summary with a model computed here in Python.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ptf.telemetry.v1 import telemetry_pb2

from tests.support.services import ServiceHandle
from tests.telemetry.factories import (
    SERVICE_HEADERS,
    Slot,
    TimeSlots,
    event,
    feedback,
    http_request,
    incident,
    invoice,
    mismatch_invoice,
    new_tenant,
    queue_sample,
    record,
    resolved,
)


@dataclass(frozen=True)
class Spec:
    """One event to record: kind, minute in the window, attributes."""

    kind: str
    minute: int
    attrs: tuple[Any, ...]


kinds = st.one_of(
    st.builds(
        lambda m, ms, ext, mode: Spec("invoice", m, (ms, ext, mode)),
        st.integers(0, 1439),
        st.integers(1, 10_000),
        st.none() | st.integers(1, 5000),
        st.sampled_from(["clean", "rounding", "mismatch"]),
    ),
    st.builds(
        lambda m, sev, ocr: Spec("incident", m, (sev, ocr)),
        st.integers(0, 1439),
        st.sampled_from(["S1", "S2"]),
        st.booleans(),
    ),
    st.builds(lambda m: Spec("resolved", m, ()), st.integers(0, 1439)),
    st.builds(lambda m, ok: Spec("feedback", m, (ok,)), st.integers(0, 1439), st.booleans()),
    st.builds(
        lambda m, status: Spec("http", m, (status,)),
        st.integers(0, 1439),
        st.sampled_from([200, 201, 400, 404, 422, 500, 503]),
    ),
    st.builds(
        lambda m, depth, stuck: Spec("queue", m, (depth, stuck)),
        st.integers(0, 1439),
        st.integers(0, 60),
        st.booleans(),
    ),
)


def _event(spec: Spec, tenant: str, slot: Slot) -> telemetry_pb2.Event:
    at = slot.at(spec.minute)
    if spec.kind == "invoice":
        ms, ext, mode = spec.attrs
        changes = {"pipeline_total_ms": float(ms), "extraction_ms": ext}
        if mode == "mismatch":
            payload = mismatch_invoice(0.3, **changes)
        else:
            payload = invoice(accept_rounding=mode == "rounding", **changes)
        return event("INVOICE_PROCESSED", tenant, payload, at)
    if spec.kind == "incident":
        severity, ocr = spec.attrs
        return event("INCIDENT_CREATED", tenant, incident(severity, ocr_suspect=ocr), at)
    if spec.kind == "resolved":
        return event("INCIDENT_RESOLVED", tenant, resolved(), at)
    if spec.kind == "feedback":
        return event("FEEDBACK_SUBMITTED", tenant, feedback(spec.attrs[0]), at)
    if spec.kind == "http":
        return event("HTTP_REQUEST", tenant, http_request(spec.attrs[0]), at)
    depth, stuck = spec.attrs
    return event("QUEUE_SAMPLE", tenant, queue_sample(depth, stuck), at)


def percentile_cont(values: list[float], fraction: float) -> float | None:
    """PostgreSQL's percentile_cont: linear interpolation between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


def model(specs: list[Spec], events: list[telemetry_pb2.Event]) -> dict[str, Any]:
    """The expected /run-summary body (without generated_at/period) by direct counting."""
    of = Counter(s.kind for s in specs)
    invoices = [s for s in specs if s.kind == "invoice"]
    incidents = [s for s in specs if s.kind == "incident"]
    statuses = Counter(s.attrs[0] for s in specs if s.kind == "http" and s.attrs[0] >= 400)
    samples = sorted(
        (
            (s.minute, uuid.UUID(e.event_id), s)
            for s, e in zip(specs, events, strict=True)
            if s.kind == "queue"
        ),
        key=lambda item: (item[0], item[1]),
    )
    counts = {
        "total_invoices": of["invoice"],
        "incident_count": of["incident"],
        "s1_count": sum(1 for s in incidents if s.attrs[0] == "S1"),
        "s2_count": sum(1 for s in incidents if s.attrs[0] == "S2"),
        "ocr_suspect_count": sum(1 for s in incidents if s.attrs[1]),
        "resolved_count": of["resolved"],
        "feedback_count": of["feedback"],
        "accept_rounding_count": sum(1 for s in invoices if s.attrs[2] == "rounding"),
    }
    correct = sum(1 for s in specs if s.kind == "feedback" and s.attrs[0])
    pipeline = [float(s.attrs[0]) for s in invoices]
    extraction = [float(s.attrs[1]) for s in invoices if s.attrs[1] is not None]
    return {
        "counts": counts,
        "rates": {
            "mismatch_rate": ratio(counts["incident_count"], counts["total_invoices"]),
            "s1_rate": ratio(counts["s1_count"], counts["incident_count"]),
            "ocr_suspect_rate": ratio(counts["ocr_suspect_count"], counts["incident_count"]),
            "feedback_coverage": ratio(counts["feedback_count"], counts["resolved_count"]),
            "hint_accuracy_rate": ratio(correct, counts["feedback_count"]),
        },
        "latency": {
            name: {f"p{int(f * 100)}": percentile_cont(values, f) for f in (0.5, 0.95, 0.99)}
            for name, values in (("pipeline_total_ms", pipeline), ("extraction_ms", extraction))
        },
        "errors": {
            "by_code": {str(code): n for code, n in sorted(statuses.items())},
            "total_4xx": sum(n for code, n in statuses.items() if code < 500),
            "total_5xx": sum(n for code, n in statuses.items() if code >= 500),
        },
        "queue": {
            "current_depth": samples[-1][2].attrs[0] if samples else 0,
            "max_depth_in_period": max((s[2].attrs[0] for s in samples), default=0),
            "stuck_detected": any(s[2].attrs[1] for s in samples),
        },
    }


def _close(actual: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        keys_match = set(actual) == set(expected)
        return keys_match and all(_close(actual[k], expected[k]) for k in expected)
    if isinstance(expected, float):
        return isinstance(actual, int | float) and math.isclose(actual, expected, rel_tol=1e-9)
    return bool(actual == expected)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=st.lists(kinds, max_size=30), replay=st.booleans())
async def test_summary_equals_a_direct_count_over_the_recorded_events(
    telemetry: ServiceHandle, time_slots: TimeSlots, specs: list[Spec], replay: bool
) -> None:
    tenant, slot = new_tenant(), time_slots.next()
    events = [_event(spec, tenant, slot) for spec in specs]
    response = await record(telemetry.service_channel, events)
    assert response.accepted == len(events)
    if replay:
        assert (await record(telemetry.service_channel, events)).duplicates == len(events)
    async with telemetry.http.get(
        "/run-summary", params=slot.query(tenant_id=tenant), headers=SERVICE_HEADERS
    ) as reply:
        summary = await reply.json()
    expected = model(specs, events)
    actual = {key: summary[key] for key in expected}
    assert _close(actual, expected), f"specs: {specs!r}\nactual: {actual}\nexpected: {expected}"
