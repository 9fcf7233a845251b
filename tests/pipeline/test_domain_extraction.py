"""Parsing and validation of extraction documents (SPEC §3.2): what is accepted, what is refused."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from services.pipeline.domain import ErrorCode, PipelineDomainError, parse_extraction
from services.pipeline.domain.extraction import MAX_LINES, MAX_TEXT_LENGTH
from tests.pipeline.domain_builders import document, extraction, field

REQUIRED = (
    "consumption_kwh",
    "current_active_unit_price_tl_per_kwh",
    "invoice_total_with_vat_tl",
)


def refused(doc: object) -> PipelineDomainError:
    with pytest.raises(PipelineDomainError) as caught:
        parse_extraction(doc)
    return caught.value


def line(kwh: Any = 100, unit_price_tl: Any = 3.5, amount_tl: Any = 350) -> dict[str, Any]:
    return {"kwh": kwh, "unit_price_tl": unit_price_tl, "amount_tl": amount_tl}


def test_baseline_document_parses_to_exact_decimals() -> None:
    parsed = extraction()
    assert parsed.consumption_kwh.value == Decimal(10000)
    assert parsed.current_active_unit_price_tl_per_kwh.value == Decimal("3.5")
    assert parsed.invoice_total_with_vat_tl.confidence == Decimal("0.95")
    assert parsed.invoice_period == "2026-01"


def test_floats_keep_the_decimal_spelling_of_the_json_text() -> None:
    parsed = extraction(current_active_unit_price_tl_per_kwh=field(0.1))
    assert parsed.current_active_unit_price_tl_per_kwh.value == Decimal("0.1")


def test_decimals_from_parse_float_decimal_are_accepted() -> None:
    doc = json.loads(json.dumps(document()), parse_float=Decimal)
    assert parse_extraction(doc).consumption_kwh.confidence == Decimal("0.95")


@pytest.mark.parametrize("name", REQUIRED)
def test_missing_required_field_is_refused_naming_it(name: str) -> None:
    error = refused(document(**{name: None}))
    assert (error.error_code, error.field) == (ErrorCode.MISSING_FIELD, name)


def test_required_field_with_null_value_counts_as_missing() -> None:
    error = refused(document(consumption_kwh={"value": None, "confidence": 0.9}))
    assert (error.error_code, error.field) == (ErrorCode.MISSING_FIELD, "consumption_kwh")


def test_missing_confidence_is_refused_naming_the_confidence() -> None:
    error = refused(document(consumption_kwh={"value": 10000}))
    assert (error.error_code, error.field) == (
        ErrorCode.MISSING_FIELD,
        "consumption_kwh.confidence",
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), Decimal("NaN")])
def test_non_finite_value_is_refused_as_invalid_number(bad: Any) -> None:
    error = refused(document(invoice_total_with_vat_tl=field(bad)))
    assert (error.error_code, error.field) == (
        ErrorCode.INVALID_NUMBER,
        "invoice_total_with_vat_tl",
    )


def test_nan_confidence_is_refused_as_invalid_number() -> None:
    error = refused(document(consumption_kwh=field(10000, float("nan"))))
    assert (error.error_code, error.field) == (
        ErrorCode.INVALID_NUMBER,
        "consumption_kwh.confidence",
    )


@pytest.mark.parametrize("bad", ["10000", True, [10000], {"value": 1}])
def test_value_that_is_not_a_json_number_is_refused_not_coerced(bad: Any) -> None:
    error = refused(document(consumption_kwh=field(bad)))
    assert (error.error_code, error.field) == (ErrorCode.INVALID_NUMBER, "consumption_kwh")


def test_negative_kwh_is_refused() -> None:
    error = refused(document(consumption_kwh=field(-1)))
    assert (error.error_code, error.field) == (ErrorCode.NEGATIVE_VALUE, "consumption_kwh")


def test_negative_other_charges_are_refused() -> None:
    error = refused(document(other_charges_tl=field(-0.01)))
    assert (error.error_code, error.field) == (ErrorCode.NEGATIVE_VALUE, "other_charges_tl")


def test_confidence_above_one_is_refused() -> None:
    error = refused(document(current_active_unit_price_tl_per_kwh=field(3.5, 1.5)))
    assert (error.error_code, error.field) == (
        ErrorCode.CONFIDENCE_OUT_OF_RANGE,
        "current_active_unit_price_tl_per_kwh.confidence",
    )


def test_negative_confidence_is_out_of_range_not_a_negative_value() -> None:
    error = refused(document(consumption_kwh=field(10000, -0.1)))
    assert error.error_code is ErrorCode.CONFIDENCE_OUT_OF_RANGE


@pytest.mark.parametrize("confidence", [0, 1, 0.0, 1.0])
def test_confidence_bounds_are_accepted(confidence: float) -> None:
    parsed = extraction(consumption_kwh=field(10000, confidence))
    assert parsed.consumption_kwh.confidence == Decimal(confidence)


def test_amount_above_the_magnitude_limit_is_out_of_range() -> None:
    error = refused(document(invoice_total_with_vat_tl=field(10**13)))
    assert (error.error_code, error.field) == (
        ErrorCode.VALUE_OUT_OF_RANGE,
        "invoice_total_with_vat_tl",
    )


def test_thousand_digit_integer_is_out_of_range_without_converting_it() -> None:
    error = refused(document(consumption_kwh=field(10**1000)))
    assert error.error_code is ErrorCode.VALUE_OUT_OF_RANGE


def test_vat_rate_defaults_to_twenty_percent() -> None:
    assert extraction().effective_vat_rate == Decimal("0.20")


def test_vat_rate_above_one_is_out_of_range() -> None:
    error = refused(document(vat_rate=field(20)))
    assert (error.error_code, error.field) == (ErrorCode.VALUE_OUT_OF_RANGE, "vat_rate")


def test_optional_field_with_null_value_is_absent() -> None:
    parsed = extraction(distribution_unit_price_tl_per_kwh={"value": None, "confidence": 0})
    assert parsed.distribution_unit_price_tl_per_kwh is None


def test_field_that_is_not_an_object_is_an_invalid_type() -> None:
    error = refused(document(consumption_kwh=10000))
    assert (error.error_code, error.field) == (ErrorCode.INVALID_TYPE, "consumption_kwh")


@pytest.mark.parametrize(
    "period", ["2026-13", "2026-00", "2026-1", "26-01", "2026/01", "2026-01-15"]
)
def test_invoice_period_must_be_year_dash_month(period: str) -> None:
    error = refused(document(invoice_period=period))
    assert (error.error_code, error.field) == (ErrorCode.INVALID_PERIOD, "invoice_period")


def test_invoice_period_that_is_not_a_string_is_an_invalid_type() -> None:
    error = refused(document(invoice_period=202601))
    assert (error.error_code, error.field) == (ErrorCode.INVALID_TYPE, "invoice_period")


def test_blank_text_fields_are_absent_and_others_are_stripped() -> None:
    parsed = extraction(provider="  ", invoice_period="", tariff_group=" sanayi_og ")
    assert (parsed.provider, parsed.invoice_period, parsed.tariff_group) == (
        None,
        None,
        "sanayi_og",
    )


def test_text_longer_than_the_limit_is_refused() -> None:
    error = refused(document(provider="x" * (MAX_TEXT_LENGTH + 1)))
    assert (error.error_code, error.field) == (ErrorCode.TEXT_TOO_LONG, "provider")


def test_lines_are_parsed_in_order() -> None:
    parsed = extraction(lines=[line(kwh=1), line(kwh=2)])
    assert [item.kwh for item in parsed.lines] == [Decimal(1), Decimal(2)]


def test_more_lines_than_the_limit_are_refused() -> None:
    error = refused(document(lines=[line()] * (MAX_LINES + 1)))
    assert (error.error_code, error.field) == (ErrorCode.TOO_MANY_LINES, "lines")


def test_lines_that_are_not_a_list_are_an_invalid_type() -> None:
    error = refused(document(lines={"kwh": 1}))
    assert (error.error_code, error.field) == (ErrorCode.INVALID_TYPE, "lines")


def test_line_missing_a_key_is_refused_naming_the_line() -> None:
    error = refused(document(lines=[line(), {"kwh": 1, "unit_price_tl": 2}]))
    assert (error.error_code, error.field) == (ErrorCode.MISSING_FIELD, "lines[1].amount_tl")


def test_negative_line_amount_is_refused_naming_the_line() -> None:
    error = refused(document(lines=[line(amount_tl=-5)]))
    assert (error.error_code, error.field) == (ErrorCode.NEGATIVE_VALUE, "lines[0].amount_tl")


def test_unknown_keys_are_ignored() -> None:
    doc = document(invoice_number="A-1", extractor={"model": "x"})
    doc["consumption_kwh"]["unit"] = "kWh"
    assert parse_extraction(doc) == extraction()


@pytest.mark.parametrize("doc", [None, [], "text", 42])
def test_document_must_be_an_object(doc: object) -> None:
    assert refused(doc).error_code is ErrorCode.INVALID_DOCUMENT


def test_first_problem_in_field_order_is_reported() -> None:
    error = refused(document(consumption_kwh=None, invoice_total_with_vat_tl=field(-1)))
    assert error.field == "consumption_kwh"


def test_low_confidence_fields_ignore_defaults_and_respect_the_limit() -> None:
    parsed = extraction(
        consumption_kwh=field(10000, 0.59),
        invoice_total_with_vat_tl=field(42000, 0.6),
    )
    assert parsed.low_confidence_fields(Decimal("0.6")) == ("consumption_kwh",)
