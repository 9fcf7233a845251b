"""Total recomputation and mismatch classification (SPEC §3.3), boundary by boundary.

Boundary tests call `compare_totals` with exact decimals and the default
thresholds: RATIO 0.05, ABSOLUTE 50, SEVERE_RATIO 0.20, SEVERE_ABSOLUTE 500,
ROUNDING_DELTA 10, ROUNDING_RATIO 0.005.
"""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal

import pytest

from services.pipeline.domain import (
    FlagCode,
    MismatchCheck,
    Severity,
    SuspectReason,
    check_total,
    compare_totals,
    computed_total,
    separator_misread_exponent,
)
from services.runtime.config import Thresholds
from tests.pipeline.domain_builders import codes, document, extraction, field, process

TOLERANCE = Decimal(str(Thresholds().Mismatch.SEPARATOR_MISREAD_TOLERANCE))

DEFAULTS = Thresholds()


def compare(invoice_total: str, computed: str) -> MismatchCheck:
    return compare_totals(Decimal(invoice_total), Decimal(computed), DEFAULTS.Mismatch)


def test_seed_invoice_computes_to_42000() -> None:
    assert computed_total(extraction()) == Decimal(42000)


def test_computed_total_adds_distribution_and_other_charges_before_vat() -> None:
    parsed = extraction(
        distribution_unit_price_tl_per_kwh=field(0.5),
        other_charges_tl=field(1000),
        vat_rate=field(0.1),
    )
    # (10000 × 3.5 + 10000 × 0.5 + 1000) × 1.1
    assert computed_total(parsed) == Decimal(45100)


def test_equal_totals_are_neither_rounding_nor_mismatch() -> None:
    check = compare("42000", "42000")
    assert (check.delta_tl, check.ratio, check.accept_rounding, check.has_mismatch) == (
        Decimal(0),
        Decimal(0),
        False,
        False,
    )


def test_delta_equal_to_rounding_delta_is_accepted_as_rounding() -> None:
    check = compare("1000", "990")
    assert (check.accept_rounding, check.has_mismatch) == (True, False)


def test_ratio_equal_to_rounding_ratio_is_accepted_as_rounding() -> None:
    check = compare("4000", "3980")  # delta 20 > 10, ratio 0.005
    assert (check.accept_rounding, check.has_mismatch) == (True, False)


def test_difference_above_both_rounding_limits_but_below_mismatch_is_neither() -> None:
    check = compare("4000", "3979.99")  # delta 20.01, ratio 0.0050025
    assert (check.accept_rounding, check.has_mismatch) == (False, False)


def test_small_ratio_is_rounding_even_when_delta_reaches_absolute() -> None:
    check = compare("20000", "19940")  # delta 60 ≥ ABSOLUTE, ratio 0.003 ≤ ROUNDING_RATIO
    assert (check.accept_rounding, check.has_mismatch) == (True, False)


def test_ratio_equal_to_ratio_limit_is_a_mismatch() -> None:
    check = compare("400", "380")  # delta 20 < ABSOLUTE, ratio exactly 0.05
    assert (check.has_mismatch, check.severity) == (True, Severity.S2)


def test_ratio_just_below_ratio_limit_is_no_mismatch() -> None:
    check = compare("400", "380.01")  # delta 19.99, ratio 0.049975
    assert check.has_mismatch is False


def test_delta_equal_to_absolute_is_a_mismatch() -> None:
    check = compare("5000", "4950")  # ratio 0.01 < RATIO
    assert (check.has_mismatch, check.severity) == (True, Severity.S2)


def test_delta_just_below_absolute_is_no_mismatch() -> None:
    check = compare("5000", "4950.01")
    assert check.has_mismatch is False


def test_severe_ratio_and_severe_absolute_together_make_s1() -> None:
    check = compare("2500", "2000")  # ratio exactly 0.20, delta exactly 500
    assert check.severity is Severity.S1


def test_severe_ratio_without_severe_absolute_stays_s2() -> None:
    check = compare("2000", "1600")  # ratio 0.20, delta 400
    assert check.severity is Severity.S2


def test_severe_absolute_without_severe_ratio_stays_s2() -> None:
    check = compare("10000", "9000")  # delta 1000, ratio 0.10
    assert check.severity is Severity.S2


def test_computed_total_above_invoice_total_is_classified_the_same_way() -> None:
    assert compare("2500", "3000").severity is Severity.S1


def test_zero_invoice_with_zero_computed_total_is_consistent() -> None:
    check = compare("0", "0")
    assert (check.ratio, check.has_mismatch) == (Decimal(0), False)


def test_zero_invoice_with_nonzero_computed_total_has_an_unbounded_ratio() -> None:
    check = compare("0", "100")
    assert (check.ratio.is_infinite(), check.has_mismatch, check.severity) == (
        True,
        True,
        Severity.S2,
    )


def test_zero_invoice_is_s1_once_delta_reaches_severe_absolute() -> None:
    assert compare("0", "500").severity is Severity.S1


def test_unbounded_ratio_is_null_in_json() -> None:
    result = process(document(invoice_total_with_vat_tl=field(0)))
    payload = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(payload)["mismatch"]["ratio"] is None


@pytest.mark.parametrize(
    ("invoice_total", "computed", "exponent"),
    [
        ("420000", "42000", 1),
        ("4200", "42000", -1),
        ("42000000", "42000", 3),
        ("42", "42000", -3),
        ("10.2", "1", 1),
        ("9.8", "1", 1),
    ],
)
def test_total_near_a_power_of_ten_of_the_computed_total_is_a_separator_misread(
    invoice_total: str, computed: str, exponent: int
) -> None:
    assert (
        separator_misread_exponent(Decimal(invoice_total), Decimal(computed), TOLERANCE) == exponent
    )


@pytest.mark.parametrize(
    ("invoice_total", "computed"),
    [("10.21", "1"), ("9.79", "1"), ("1", "1"), ("10000", "1"), ("5", "0"), ("0", "5")],
)
def test_total_not_near_a_power_of_ten_is_no_separator_misread(
    invoice_total: str, computed: str
) -> None:
    assert separator_misread_exponent(Decimal(invoice_total), Decimal(computed), TOLERANCE) is None


def test_mismatch_at_a_power_of_ten_with_high_confidence_is_an_ocr_suspect() -> None:
    check = check_total(extraction(invoice_total_with_vat_tl=field(420000)), DEFAULTS)
    assert (check.suspect_reason, "10^1" in (check.suspect_detail or "")) == (
        SuspectReason.OCR_LOCALE_SUSPECT,
        True,
    )


def test_mismatch_with_a_low_confidence_field_is_an_ocr_suspect() -> None:
    parsed = extraction(
        invoice_total_with_vat_tl=field(50000),
        other_charges_tl=field(0, 0.3),
    )
    check = check_total(parsed, DEFAULTS)
    assert (check.suspect_reason, check.suspect_detail) == (
        SuspectReason.OCR_LOCALE_SUSPECT,
        "low confidence in other_charges_tl",
    )


def test_mismatch_without_misread_evidence_suspects_invoice_logic() -> None:
    check = check_total(extraction(invoice_total_with_vat_tl=field(50000)), DEFAULTS)
    assert check.suspect_reason is SuspectReason.INVOICE_LOGIC


def test_confidence_equal_to_low_confidence_is_not_low() -> None:
    parsed = extraction(
        invoice_total_with_vat_tl=field(50000),
        consumption_kwh=field(10000, 0.6),
    )
    assert check_total(parsed, DEFAULTS).suspect_reason is SuspectReason.INVOICE_LOGIC


def test_no_suspect_is_named_without_a_mismatch() -> None:
    parsed = extraction(consumption_kwh=field(10000, 0.1))
    assert check_total(parsed, DEFAULTS).suspect_reason is None


def test_low_confidence_without_mismatch_is_a_validation_flag_not_an_incident() -> None:
    result = process(document(consumption_kwh=field(10000, 0.2)))
    assert (codes(result), result.quality.grade.value, result.incident) == (
        ["LOW_CONFIDENCE"],
        "CHECK",
        None,
    )


def test_rounding_is_reported_as_an_informational_flag() -> None:
    result = process(document(invoice_total_with_vat_tl=field(42005)))
    assert (codes(result), result.accept_rounding, result.incident) == (
        [FlagCode.ACCEPT_ROUNDING.value],
        True,
        None,
    )


def test_thresholds_come_from_the_config_object() -> None:
    lenient = replace(DEFAULTS, Mismatch=replace(DEFAULTS.Mismatch, RATIO=0.5, ABSOLUTE=10000.0))
    parsed = extraction(invoice_total_with_vat_tl=field(50000))
    assert check_total(parsed, lenient).has_mismatch is False
