"""The live envelope is validated when built and when parsed (docs/SPEC.md §8)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.runtime.live.envelope import Envelope, EnvelopeError, parse_envelope

TS = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)


def _valid() -> dict[str, Any]:
    return {
        "v": 1,
        "event": "job.done",
        "channel": "jobs.acme",
        "seq": 7,
        "ts": TS.isoformat(),
        "ok": True,
        "error_code": None,
        "data": {"job_id": "j1"},
    }


def test_an_envelope_round_trips_through_json() -> None:
    built = Envelope(event="job.done", channel="jobs.acme", seq=7, ts=TS, data={"job_id": "j1"})
    assert parse_envelope(built.to_json()) == built
    assert json.loads(built.to_json()) == _valid()


def test_a_failed_event_carries_its_error_code() -> None:
    built = Envelope(
        event="job.failed",
        channel="jobs.acme",
        seq=1,
        ts=TS,
        ok=False,
        error_code="EXTRACTION_FAILED",
    )
    assert parse_envelope(built.to_json()).error_code == "EXTRACTION_FAILED"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("v", 2),
        ("event", "Job Done"),
        ("event", 5),
        ("channel", "jobs."),
        ("channel", "secrets"),
        ("seq", -1),
        ("seq", "7"),
        ("seq", True),
        ("ts", "yesterday"),
        ("ts", "2026-12-02T14:00:00"),
        ("ts", 12),
        ("ok", "yes"),
        ("error_code", "BOOM"),
        ("data", [1, 2]),
    ],
)
def test_a_field_breaking_the_contract_is_refused(field: str, value: object) -> None:
    message = _valid() | {field: value}
    with pytest.raises(EnvelopeError):
        parse_envelope(json.dumps(message))


def test_a_missing_or_extra_field_is_refused() -> None:
    missing = _valid()
    del missing["data"]
    with pytest.raises(EnvelopeError, match="missing"):
        parse_envelope(missing)
    with pytest.raises(EnvelopeError, match="unexpected"):
        parse_envelope(_valid() | {"extra": 1})


@pytest.mark.parametrize("raw", [b"\xff\xfe", "not json", "[1]", "null"])
def test_bytes_that_are_not_an_envelope_object_are_refused(raw: bytes | str) -> None:
    with pytest.raises(EnvelopeError):
        parse_envelope(raw)


def test_not_ok_without_an_error_code_cannot_be_built() -> None:
    with pytest.raises(EnvelopeError):
        Envelope(event="job.failed", channel="jobs.acme", seq=1, ts=TS, ok=False)
