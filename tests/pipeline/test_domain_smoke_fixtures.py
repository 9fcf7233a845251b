"""The three smoke fixtures of seed 002 §5.1 through the pure pipeline."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.pipeline.domain import ActionClass, Severity, SuspectReason
from services.runtime.smoke_fixtures import SmokeFixture, expectation_failures, load_smoke_fixtures
from tests.pipeline.domain_builders import process

# Seed 002 §5.1, verbatim: the fixture files must not drift from it.
SEED_EXPECTATIONS: dict[str, dict[str, Any]] = {
    "happy_path_invoice": {"incident_created": False, "quality_grade": "OK", "mismatch": False},
    "s2_mismatch_invoice": {
        "incident_created": True,
        "severity": "S2",
        "primary_flag": "INVOICE_TOTAL_MISMATCH",
        "action_hint": {
            "action_class": "VERIFY_INVOICE_LOGIC",
            "primary_suspect": "INVOICE_LOGIC",
        },
        "mismatch_info": {"has_mismatch": True, "severity": "S2"},
    },
    "s1_ocr_suspect_invoice": {
        "incident_created": True,
        "severity": "S1",
        "primary_flag": "INVOICE_TOTAL_MISMATCH",
        "action_hint": {"action_class": "VERIFY_OCR", "primary_suspect": "OCR_LOCALE_SUSPECT"},
        "mismatch_info": {
            "has_mismatch": True,
            "severity": "S1",
            "suspect_reason": "OCR_LOCALE_SUSPECT",
        },
    },
}


def fixture(name: str) -> SmokeFixture:
    return next(f for f in load_smoke_fixtures() if f.name == name)


def test_fixtures_load_in_seed_order() -> None:
    assert [f.name for f in load_smoke_fixtures()] == list(SEED_EXPECTATIONS)


@pytest.mark.parametrize("name", list(SEED_EXPECTATIONS))
def test_fixture_expectations_are_exactly_the_seed(name: str) -> None:
    assert fixture(name).expected == SEED_EXPECTATIONS[name]


@pytest.mark.parametrize("name", list(SEED_EXPECTATIONS))
def test_fixture_result_meets_its_expectations(name: str) -> None:
    smoke = fixture(name)
    assert expectation_failures(process(smoke.extraction).to_dict(), smoke.expected) == []


def test_happy_path_computes_42000_and_prices_an_offer() -> None:
    result = process(fixture("happy_path_invoice").extraction)
    assert (result.mismatch.computed_total_tl, result.offer is not None, result.flags) == (
        Decimal(42000),
        True,
        (),
    )


def test_s2_fixture_has_delta_8000_ratio_16_percent_and_verify_invoice_logic() -> None:
    result = process(fixture("s2_mismatch_invoice").extraction)
    assert result.incident is not None
    assert (result.mismatch.delta_tl, result.mismatch.ratio, result.incident.severity) == (
        Decimal(8000),
        Decimal("0.16"),
        Severity.S2,
    )
    assert result.incident.action_hint.action_class is ActionClass.VERIFY_INVOICE_LOGIC


def test_s1_fixture_is_an_ocr_suspect_with_verify_ocr() -> None:
    result = process(fixture("s1_ocr_suspect_invoice").extraction)
    assert result.incident is not None
    assert (result.incident.severity, result.incident.mismatch_info.suspect_reason) == (
        Severity.S1,
        SuspectReason.OCR_LOCALE_SUSPECT,
    )
    assert (result.incident.action_hint.action_class, result.ocr_suspect) == (
        ActionClass.VERIFY_OCR,
        True,
    )


def test_expectation_failures_name_what_differs() -> None:
    result = process(fixture("happy_path_invoice").extraction).to_dict()
    assert expectation_failures(result, {"incident_created": True, "quality_grade": "OK"}) == [
        "incident_created: expected True, got False"
    ]


def test_expectation_failures_compare_mappings_as_subsets() -> None:
    result = process(fixture("s2_mismatch_invoice").extraction).to_dict()
    failures = expectation_failures(result, {"mismatch_info": {"severity": "S1"}})
    assert failures == ["mismatch_info.severity: expected 'S1', got 'S2'"]


def test_unknown_expectation_is_a_failure() -> None:
    result = process(fixture("happy_path_invoice").extraction).to_dict()
    assert expectation_failures(result, {"incident_creatd": False}) == [
        "unknown expectation 'incident_creatd'"
    ]
