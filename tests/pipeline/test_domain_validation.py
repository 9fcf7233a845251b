"""Validation flags from `Thresholds.Validation` (SPEC §3.3), at and just past each limit.

Documents keep their stated total consistent with the changed field, so the
only finding is the one under test.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.pipeline.domain import FlagCode
from tests.pipeline.domain_builders import codes, document, field, process


def priced(unit_price: str, distribution: str | None = None) -> dict[str, Any]:
    """10000 kWh at the given prices with a stated total equal to the computed one."""
    per_kwh = Decimal(unit_price) + Decimal(distribution or 0)
    overrides: dict[str, Any] = {
        "current_active_unit_price_tl_per_kwh": field(Decimal(unit_price)),
        "invoice_total_with_vat_tl": field(10000 * per_kwh * Decimal("1.2")),
    }
    if distribution is not None:
        overrides["distribution_unit_price_tl_per_kwh"] = field(Decimal(distribution))
    return document(**overrides)


def with_lines(*lines: tuple[str, str, str]) -> dict[str, Any]:
    return document(
        lines=[
            {"kwh": Decimal(kwh), "unit_price_tl": Decimal(price), "amount_tl": Decimal(amount)}
            for kwh, price, amount in lines
        ]
    )


def test_clean_baseline_has_no_flags() -> None:
    assert codes(process(document())) == []


def test_unit_price_on_the_range_limits_is_in_range() -> None:
    assert codes(process(priced("0.5"))) == codes(process(priced("15"))) == []


def test_unit_price_below_minimum_is_flagged() -> None:
    assert codes(process(priced("0.49"))) == [FlagCode.UNIT_PRICE_OUT_OF_RANGE.value]


def test_unit_price_above_maximum_is_flagged() -> None:
    assert codes(process(priced("15.01"))) == [FlagCode.UNIT_PRICE_OUT_OF_RANGE.value]


def test_distribution_price_on_the_range_limits_is_in_range() -> None:
    assert codes(process(priced("3.5", "0"))) == codes(process(priced("3.5", "5"))) == []


def test_distribution_price_above_maximum_is_flagged() -> None:
    result = process(priced("3.5", "5.01"))
    assert codes(result) == [FlagCode.DISTRIBUTION_PRICE_OUT_OF_RANGE.value]


def test_out_of_range_flag_names_the_field() -> None:
    flag = process(priced("0.49")).flags[0]
    assert flag.field == "current_active_unit_price_tl_per_kwh"


def test_line_amount_within_tolerance_is_consistent() -> None:
    # 10000 × 3.5 = 35000; 2 % of it is 700.
    assert codes(process(with_lines(("10000", "3.5", "35700")))) == []


def test_line_amount_beyond_tolerance_is_flagged_on_that_line() -> None:
    result = process(with_lines(("5000", "3.5", "17500"), ("5000", "3.5", "17850.01")))
    assert (codes(result), result.flags[0].field) == (
        [FlagCode.LINE_AMOUNT_INCONSISTENT.value],
        "lines[1].amount_tl",
    )


def test_line_with_zero_expected_amount_must_have_zero_amount() -> None:
    result = process(with_lines(("10000", "0", "1"), ("0", "0", "0")))
    assert FlagCode.LINE_AMOUNT_INCONSISTENT in [flag.code for flag in result.flags]


def test_lines_summing_to_consumption_within_tolerance_pass_the_energy_crosscheck() -> None:
    result = process(with_lines(("5000", "3.5", "17500"), ("5500", "3.5", "19250")))
    assert codes(result) == []


def test_lines_off_from_consumption_beyond_tolerance_fail_the_energy_crosscheck() -> None:
    result = process(with_lines(("5000", "3.5", "17500"), ("5500.01", "3.5", "19250.035")))
    assert codes(result) == [FlagCode.ENERGY_CROSSCHECK_FAILED.value]


def test_invoice_without_lines_skips_the_energy_crosscheck() -> None:
    assert codes(process(document(lines=[]))) == []


def test_ratio_equal_to_hard_stop_still_produces_an_offer() -> None:
    # 42000 computed, 52500 stated: ratio exactly 0.20 = HARD_STOP_DELTA / 100.
    result = process(document(invoice_total_with_vat_tl=field(52500)))
    assert (
        result.offer is not None,
        FlagCode.HARD_STOP_DELTA_EXCEEDED in result.quality.flags,
    ) == (
        True,
        False,
    )


def test_ratio_above_hard_stop_produces_no_offer() -> None:
    result = process(document(invoice_total_with_vat_tl=field(52600)))
    assert (result.offer, result.no_offer_reason) == (None, FlagCode.HARD_STOP_DELTA_EXCEEDED)


def test_hard_stop_still_opens_the_mismatch_incident() -> None:
    result = process(document(invoice_total_with_vat_tl=field(52600)))
    assert result.incident is not None
    assert result.incident.primary_flag is FlagCode.INVOICE_TOTAL_MISMATCH


def test_hard_stop_skips_pricing_so_missing_market_data_is_not_reported() -> None:
    result = process(document(invoice_total_with_vat_tl=field(52600), invoice_period="2031-01"))
    assert FlagCode.MARKET_PRICE_MISSING not in result.quality.flags
