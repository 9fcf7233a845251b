"""Preflight replies and telemetry records built from templates equal the ones built afresh."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from services.gate.domain.override import OverrideOutcome, OverrideResult, plan_override
from services.gate.engine import PreflightRun
from services.gate.mapping import PreflightReplies, preflight_record, preflight_result, timestamp
from tests.gate.domain_builders import NOW, healthy_signals, make_spec, run

SIGNALS = healthy_signals()


def _run(**spec: object) -> PreflightRun:
    spec_obj = make_spec(**spec)
    evaluation = run(spec=spec_obj, signals=SIGNALS)
    outcome = plan_override(evaluation, token_presented=False).settled
    assert outcome is not None
    return PreflightRun(
        spec=spec_obj,
        facts={},
        signals=SIGNALS,
        evaluation=evaluation,
        outcome=outcome,
        token_hash=None,
        evaluated_at=NOW,
        duration_ms=1.25,
        request_id="r-1",
    )


def test_a_templated_result_equals_the_result_built_afresh() -> None:
    replies = PreflightReplies(8)
    first = _run()
    replies.result(first)
    second = PreflightRun(**{**vars(first), "request_id": "r-2", "duration_ms": 7.5})
    assert replies.result(second) == preflight_result(second)


def test_a_templated_record_equals_the_record_built_afresh() -> None:
    replies = PreflightReplies(8)
    first = _run()
    replies.record(first)
    later = PreflightRun(**{**vars(first), "evaluated_at": NOW + timedelta(seconds=90.5)})
    assert replies.record(later) == preflight_record(later)


def test_one_template_serves_every_run_of_the_same_evaluation_and_outcome() -> None:
    replies = PreflightReplies(8)
    first = _run()
    for request_id in ("a", "b", "c"):
        replies.result(PreflightRun(**{**vars(first), "request_id": request_id}))
    assert len(replies) == 1


def test_another_outcome_of_the_same_evaluation_gets_its_own_template() -> None:
    replies = PreflightReplies(8)
    first = _run()
    ignored = OverrideOutcome(first.outcome.verdict, OverrideResult.IGNORED)
    other = PreflightRun(**{**vars(first), "outcome": ignored})
    replies.result(first)
    assert replies.result(other) == preflight_result(other)
    assert len(replies) == 2


def test_templates_are_bounded_oldest_first_out() -> None:
    replies = PreflightReplies(2)
    for release in ("r1", "r2", "r3"):
        replies.result(_run(release=release))
    assert len(replies) == 2


def test_a_non_positive_bound_is_refused() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        PreflightReplies(0)


@pytest.mark.parametrize(
    "value",
    [
        NOW + timedelta(microseconds=999_999),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(2026, 3, 1, 1, 30, 0, 123_456, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_timestamp_is_protobufs_own_conversion(value: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(value.astimezone(UTC))
    assert timestamp(value) == expected
