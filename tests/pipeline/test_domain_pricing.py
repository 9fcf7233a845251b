"""Offer pricing from market prices and tariffs, and each way it can fail (SPEC §3.3)."""

from __future__ import annotations

from decimal import Decimal

from services.pipeline.domain import (
    ActionClass,
    DistributionTariff,
    FlagCode,
    MarketPrice,
    OfferTerms,
    Severity,
    evaluate_extraction,
    price_offer,
)
from services.runtime.config import Thresholds
from tests.pipeline.domain_builders import (
    codes,
    document,
    extraction,
    field,
    process,
    sample_prices,
    sample_tariffs,
)

PRICES = {"2026-01": MarketPrice("2026-01", Decimal("3000"), Decimal("500"))}
TARIFFS = {"ticarethane_ag": DistributionTariff("ticarethane_ag", Decimal("1000"))}
NO_TERMS = OfferTerms()


def test_offer_follows_the_documented_formula() -> None:
    offer = price_offer(extraction(), PRICES, TARIFFS, NO_TERMS).offer
    assert offer is not None
    # 10000 kWh × (3000 + 500) / 1000 = 35000; distribution 10000 × 1.0 = 10000.
    assert (offer.energy_cost_tl, offer.distribution_cost_tl, offer.subtotal_tl) == (
        Decimal(35000),
        Decimal(10000),
        Decimal(45000),
    )
    assert (offer.vat_tl, offer.total_with_vat_tl, offer.savings_tl) == (
        Decimal(9000),
        Decimal(54000),
        Decimal(-12000),
    )


def test_margin_per_mwh_is_added_before_the_margin_rate() -> None:
    terms = OfferTerms(energy_margin_tl_per_mwh=Decimal(100), energy_margin_rate=Decimal("0.1"))
    offer = price_offer(extraction(), PRICES, TARIFFS, terms).offer
    assert offer is not None
    assert offer.energy_unit_price_tl_per_kwh == Decimal("3.96")  # 3.6 × 1.1


def test_other_charges_pass_through_and_vat_uses_the_invoice_rate() -> None:
    parsed = extraction(other_charges_tl=field(250), vat_rate=field(0.1))
    offer = price_offer(parsed, PRICES, TARIFFS, NO_TERMS).offer
    assert offer is not None
    assert (offer.other_charges_tl, offer.total_with_vat_tl) == (Decimal(250), Decimal(49775))


def test_offer_money_is_rounded_to_the_kurus_in_json() -> None:
    parsed = extraction(consumption_kwh=field(Decimal("1.234")))
    offer = price_offer(parsed, PRICES, TARIFFS, NO_TERMS).offer
    assert offer is not None
    assert offer.to_dict()["energy_cost_tl"] == 4.32  # 1.234 × 3.5 = 4.319


def test_happy_path_prices_an_offer_from_the_sample_tables() -> None:
    result = process(document())
    assert result.offer is not None
    assert result.offer.ptf_tl_per_mwh == sample_prices()["2026-01"].ptf_tl_per_mwh


def test_missing_period_gives_period_unknown_and_no_incident() -> None:
    result = process(document(invoice_period=None))
    assert (codes(result), result.offer, result.incident) == (["PERIOD_UNKNOWN"], None, None)


def test_missing_period_keeps_the_grade_ok() -> None:
    assert process(document(invoice_period=None)).quality.grade.value == "OK"


def test_missing_tariff_group_gives_tariff_group_unknown_and_no_incident() -> None:
    result = process(document(tariff_group=None))
    assert (codes(result), result.offer, result.incident) == (["TARIFF_GROUP_UNKNOWN"], None, None)


def test_period_missing_from_the_table_is_market_price_missing() -> None:
    result = process(document(invoice_period="2031-01"))
    assert result.incident is not None
    assert (result.incident.severity, result.incident.primary_flag) == (
        Severity.S1,
        FlagCode.MARKET_PRICE_MISSING,
    )
    assert result.incident.action_hint.action_class is ActionClass.FIX_MARKET_DATA


def test_tariff_group_missing_from_the_table_is_tariff_lookup_failed() -> None:
    result = process(document(tariff_group="no_such_group"))
    assert result.incident is not None
    assert (result.incident.severity, result.incident.primary_flag) == (
        Severity.S1,
        FlagCode.TARIFF_LOOKUP_FAILED,
    )
    assert result.incident.action_hint.action_class is ActionClass.FIX_TARIFF_TABLE


def test_both_lookups_failing_reports_both_flags() -> None:
    result = process(document(invoice_period="2031-01", tariff_group="no_such_group"))
    assert codes(result) == ["MARKET_PRICE_MISSING", "TARIFF_LOOKUP_FAILED"]


def test_missing_tariff_group_still_reports_a_period_missing_from_the_table() -> None:
    result = process(document(invoice_period="2031-01", tariff_group=None))
    assert codes(result) == ["MARKET_PRICE_MISSING", "TARIFF_GROUP_UNKNOWN"]


def test_missing_period_still_reports_an_unknown_tariff_group() -> None:
    result = process(document(invoice_period=None, tariff_group="no_such_group"))
    assert result.incident is not None
    assert (codes(result), result.incident.primary_flag) == (
        ["PERIOD_UNKNOWN", "TARIFF_LOOKUP_FAILED"],
        FlagCode.TARIFF_LOOKUP_FAILED,
    )


def test_failed_lookup_is_the_no_offer_reason() -> None:
    result = process(document(tariff_group="no_such_group"))
    assert (result.offer, result.no_offer_reason) == (None, FlagCode.TARIFF_LOOKUP_FAILED)


def test_negative_market_price_is_a_calc_bug() -> None:
    prices = {"2026-01": MarketPrice("2026-01", Decimal("-4000"), Decimal("500"))}
    outcome = price_offer(extraction(), prices, sample_tariffs(), NO_TERMS)
    assert (outcome.offer, [flag.code for flag in outcome.flags]) == (None, [FlagCode.CALC_BUG])


def test_nan_tariff_is_a_calc_bug() -> None:
    tariffs = {"ticarethane_ag": DistributionTariff("ticarethane_ag", Decimal("NaN"))}
    outcome = price_offer(extraction(), sample_prices(), tariffs, NO_TERMS)
    assert [flag.code for flag in outcome.flags] == [FlagCode.CALC_BUG]


def test_arithmetic_failure_is_a_calc_bug() -> None:
    """Infinity × 0 kWh traps in the exact context; the engine must flag, not crash."""
    prices = {"2026-01": MarketPrice("2026-01", Decimal("Infinity"), Decimal("0"))}
    parsed = extraction(consumption_kwh=field(0), invoice_total_with_vat_tl=field(0))
    outcome = price_offer(parsed, prices, sample_tariffs(), NO_TERMS)
    assert [flag.code for flag in outcome.flags] == [FlagCode.CALC_BUG]


def test_negative_margin_terms_are_a_calc_bug() -> None:
    terms = OfferTerms(energy_margin_rate=Decimal("-2"))
    outcome = price_offer(extraction(), PRICES, TARIFFS, terms)
    assert [flag.code for flag in outcome.flags] == [FlagCode.CALC_BUG]


def test_calc_bug_escalates_to_engineering() -> None:
    prices = {"2026-01": MarketPrice("2026-01", Decimal("-4000"), Decimal("500"))}
    result = evaluate_extraction(extraction(), Thresholds(), prices, sample_tariffs())
    assert result.incident is not None
    assert (result.incident.severity, result.incident.action_hint.action_class) == (
        Severity.S1,
        ActionClass.ESCALATE_ENGINEERING,
    )


def test_zero_invoice_total_has_no_savings_ratio() -> None:
    parsed = extraction(invoice_total_with_vat_tl=field(0))
    offer = price_offer(parsed, PRICES, TARIFFS, NO_TERMS).offer
    assert offer is not None
    assert offer.to_dict()["savings_ratio"] is None
