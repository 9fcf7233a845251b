"""Validated preflight inputs are reused for a request sent again, never for a refused one."""

from __future__ import annotations

import pytest
from ptf.gate.v1 import gate_pb2

from services.gate.requests import PreflightInputs, preflight_input
from services.runtime.config import Thresholds
from services.runtime.errors import InvalidInput
from tests.gate.domain_builders import BASE_SPEC_YAML

FACTS = {"tests_passed": "true", "smoke_passed": "true"}


def _request(**fields: str) -> gate_pb2.PreflightRequest:
    return gate_pb2.PreflightRequest(spec_yaml=BASE_SPEC_YAML, facts=FACTS, **fields)


def test_a_request_sent_again_gets_the_input_parsed_the_first_time() -> None:
    inputs = PreflightInputs(Thresholds().Gate.PREFLIGHT_INPUT_CACHE_MAX_ENTRIES)
    first = inputs.parse(_request(request_id="r-1"))
    assert inputs.parse(_request(request_id="r-1")) is first


def test_a_cached_input_equals_the_input_parsed_afresh() -> None:
    inputs = PreflightInputs(Thresholds().Gate.PREFLIGHT_INPUT_CACHE_MAX_ENTRIES)
    inputs.parse(_request(override_token="t"))
    assert inputs.parse(_request(override_token="t")) == preflight_input(
        _request(override_token="t")
    )


def test_requests_that_differ_get_their_own_input() -> None:
    inputs = PreflightInputs(Thresholds().Gate.PREFLIGHT_INPUT_CACHE_MAX_ENTRIES)
    assert inputs.parse(_request(request_id="a")).request_id == "a"
    assert inputs.parse(_request(request_id="b")).request_id == "b"


def test_a_refused_request_is_refused_again() -> None:
    inputs = PreflightInputs(Thresholds().Gate.PREFLIGHT_INPUT_CACHE_MAX_ENTRIES)
    bad = gate_pb2.PreflightRequest(spec_yaml=BASE_SPEC_YAML, facts={"tests_passed": "maybe"})
    for _ in range(2):
        with pytest.raises(InvalidInput):
            inputs.parse(bad)


def test_inputs_are_bounded() -> None:
    inputs = PreflightInputs(max_entries=2)
    first = inputs.parse(_request(request_id="a"))
    inputs.parse(_request(request_id="b"))
    inputs.parse(_request(request_id="c"))
    assert inputs.parse(_request(request_id="a")) is not first
