"""Price an offer for the invoiced consumption from market prices and distribution tariffs.

Offer formula (all amounts in TL, prices looked up for the invoice's period
and tariff group; `terms` are the retailer's commercial parameters):

    energy_unit_price_tl_per_kwh = (PTF + YEKDEM + terms.energy_margin_tl_per_mwh) / 1000
                                   × (1 + terms.energy_margin_rate)
    energy_cost_tl               = consumption_kwh × energy_unit_price_tl_per_kwh
    distribution_unit_price      = tariff.distribution_tl_per_mwh / 1000
    distribution_cost_tl         = consumption_kwh × distribution_unit_price
    other_charges_tl             = the invoice's other charges, passed through unchanged
                                   (taxes and fees that do not depend on the retailer)
    subtotal_tl                  = energy_cost_tl + distribution_cost_tl + other_charges_tl
    vat_tl                       = subtotal_tl × vat_rate (the invoice's rate, default 20 %)
    total_with_vat_tl            = subtotal_tl + vat_tl
    savings_tl                   = invoice_total_with_vat_tl − total_with_vat_tl
                                   (negative: the offer is dearer than the current bill)

Outcomes besides an offer (every lookup that can be made is made, so one
invoice reports every table problem it reveals; the first flag is the
`no_offer_reason`):
- no `invoice_period` → PERIOD_UNKNOWN, informational, no incident;
- period not in the market price table → MARKET_PRICE_MISSING (S1, FIX_MARKET_DATA);
- no `tariff_group` → TARIFF_GROUP_UNKNOWN, informational, no incident (the
  document lacks it; no table is at fault);
- tariff group not in the tariff table → TARIFF_LOOKUP_FAILED (S1, FIX_TARIFF_TABLE);
- a looked-up value or a result that is not a finite, non-negative number, or
  any arithmetic failure → CALC_BUG (S1, ESCALATE_ENGINEERING): tables are
  validated when loaded, so reaching the engine with such values means the
  engine or its data path is broken.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.pipeline.domain.arithmetic import exact, to_json_money, to_json_number
from services.pipeline.domain.extraction import Extraction
from services.pipeline.domain.flags import Flag, FlagCode, Severity
from services.pipeline.domain.tables import DistributionTariff, MarketPrice

_PER_MWH = Decimal(1000)


@dataclass(frozen=True)
class OfferTerms:
    """The retailer's commercial parameters; both default to zero (offer at market cost).

    `energy_margin_tl_per_mwh` is added to PTF + YEKDEM; `energy_margin_rate`
    then scales the energy price (0.05 = 5 % on top). They are commercial
    terms, not alarm thresholds, so the service passes them in explicitly.
    """

    energy_margin_tl_per_mwh: Decimal = Decimal(0)
    energy_margin_rate: Decimal = Decimal(0)


@dataclass(frozen=True)
class Offer:
    """A priced offer for the invoiced consumption; see the module docstring for the formula."""

    period: str
    tariff_group: str
    consumption_kwh: Decimal
    ptf_tl_per_mwh: Decimal
    yekdem_tl_per_mwh: Decimal
    energy_unit_price_tl_per_kwh: Decimal
    distribution_unit_price_tl_per_kwh: Decimal
    energy_cost_tl: Decimal
    distribution_cost_tl: Decimal
    other_charges_tl: Decimal
    subtotal_tl: Decimal
    vat_rate: Decimal
    vat_tl: Decimal
    total_with_vat_tl: Decimal
    current_total_tl: Decimal
    savings_tl: Decimal

    @property
    def savings_ratio(self) -> Decimal | None:
        """Savings as a fraction of the current bill; None for a zero bill."""
        if self.current_total_tl <= 0:
            return None
        with exact():
            return self.savings_tl / self.current_total_tl

    def to_dict(self) -> dict[str, Any]:
        """JSON form: money rounded to the kuruş, unit prices and ratios unrounded."""
        ratio = self.savings_ratio
        return {
            "period": self.period,
            "tariff_group": self.tariff_group,
            "consumption_kwh": to_json_number(self.consumption_kwh),
            "ptf_tl_per_mwh": to_json_number(self.ptf_tl_per_mwh),
            "yekdem_tl_per_mwh": to_json_number(self.yekdem_tl_per_mwh),
            "energy_unit_price_tl_per_kwh": to_json_number(self.energy_unit_price_tl_per_kwh),
            "distribution_unit_price_tl_per_kwh": to_json_number(
                self.distribution_unit_price_tl_per_kwh
            ),
            "energy_cost_tl": to_json_money(self.energy_cost_tl),
            "distribution_cost_tl": to_json_money(self.distribution_cost_tl),
            "other_charges_tl": to_json_money(self.other_charges_tl),
            "subtotal_tl": to_json_money(self.subtotal_tl),
            "vat_rate": to_json_number(self.vat_rate),
            "vat_tl": to_json_money(self.vat_tl),
            "total_with_vat_tl": to_json_money(self.total_with_vat_tl),
            "current_total_tl": to_json_money(self.current_total_tl),
            "savings_tl": to_json_money(self.savings_tl),
            "savings_ratio": None if ratio is None else to_json_number(ratio),
        }


@dataclass(frozen=True)
class PricingOutcome:
    """An offer, or the flags explaining why there is none (never both empty)."""

    offer: Offer | None
    flags: tuple[Flag, ...] = ()


def price_offer(
    extraction: Extraction,
    prices: Mapping[str, MarketPrice],
    tariffs: Mapping[str, DistributionTariff],
    terms: OfferTerms,
) -> PricingOutcome:
    """Look up the period's market prices and the group's tariff and price the offer."""
    period = extraction.invoice_period
    group = extraction.tariff_group
    price, price_flag = _market_price(period, prices)
    tariff, tariff_flag = _tariff(group, tariffs)
    if period is None or group is None or price is None or tariff is None:
        return PricingOutcome(None, tuple(f for f in (price_flag, tariff_flag) if f is not None))
    try:
        offer = _compute(extraction, period, group, price, tariff, terms)
    except ArithmeticError as exc:
        return _calc_bug(f"arithmetic failure while pricing: {type(exc).__name__}")
    broken = _inconsistencies(offer, terms)
    if broken:
        return _calc_bug("offer is inconsistent: " + ", ".join(broken))
    return PricingOutcome(offer)


def _market_price(
    period: str | None, prices: Mapping[str, MarketPrice]
) -> tuple[MarketPrice | None, Flag | None]:
    if period is None:
        return None, Flag(
            FlagCode.PERIOD_UNKNOWN,
            "no invoice_period: market prices cannot be looked up, no offer",
            field="invoice_period",
        )
    price = prices.get(period)
    if price is None:
        return None, Flag(
            FlagCode.MARKET_PRICE_MISSING,
            f"no PTF/YEKDEM market prices for period {period}",
            severity=Severity.S1,
            field="invoice_period",
        )
    return price, None


def _tariff(
    group: str | None, tariffs: Mapping[str, DistributionTariff]
) -> tuple[DistributionTariff | None, Flag | None]:
    if group is None:
        return None, Flag(
            FlagCode.TARIFF_GROUP_UNKNOWN,
            "no tariff_group: distribution tariff cannot be looked up, no offer",
            field="tariff_group",
        )
    tariff = tariffs.get(group)
    if tariff is None:
        return None, Flag(
            FlagCode.TARIFF_LOOKUP_FAILED,
            f"no distribution tariff for tariff group {group!r}",
            severity=Severity.S1,
            field="tariff_group",
        )
    return tariff, None


def _compute(
    extraction: Extraction,
    period: str,
    group: str,
    price: MarketPrice,
    tariff: DistributionTariff,
    terms: OfferTerms,
) -> Offer:
    kwh = extraction.consumption_kwh.value
    vat_rate = extraction.effective_vat_rate
    with exact():
        energy_unit = (
            (price.ptf_tl_per_mwh + price.yekdem_tl_per_mwh + terms.energy_margin_tl_per_mwh)
            / _PER_MWH
            * (1 + terms.energy_margin_rate)
        )
        distribution_unit = tariff.distribution_tl_per_mwh / _PER_MWH
        energy_cost = kwh * energy_unit
        distribution_cost = kwh * distribution_unit
        other = extraction.other_charges
        subtotal = energy_cost + distribution_cost + other
        vat = subtotal * vat_rate
        total = subtotal + vat
        current = extraction.invoice_total_with_vat_tl.value
        return Offer(
            period=period,
            tariff_group=group,
            consumption_kwh=kwh,
            ptf_tl_per_mwh=price.ptf_tl_per_mwh,
            yekdem_tl_per_mwh=price.yekdem_tl_per_mwh,
            energy_unit_price_tl_per_kwh=energy_unit,
            distribution_unit_price_tl_per_kwh=distribution_unit,
            energy_cost_tl=energy_cost,
            distribution_cost_tl=distribution_cost,
            other_charges_tl=other,
            subtotal_tl=subtotal,
            vat_rate=vat_rate,
            vat_tl=vat,
            total_with_vat_tl=total,
            current_total_tl=current,
            savings_tl=current - total,
        )


def _inconsistencies(offer: Offer, terms: OfferTerms) -> list[str]:
    """Names of values that break the engine's guarantees (finite, non-negative)."""
    checked = {
        "ptf_tl_per_mwh": offer.ptf_tl_per_mwh,
        "yekdem_tl_per_mwh": offer.yekdem_tl_per_mwh,
        "energy_margin_tl_per_mwh": terms.energy_margin_tl_per_mwh,
        "energy_margin_rate": terms.energy_margin_rate,
        "energy_unit_price_tl_per_kwh": offer.energy_unit_price_tl_per_kwh,
        "distribution_unit_price_tl_per_kwh": offer.distribution_unit_price_tl_per_kwh,
        "energy_cost_tl": offer.energy_cost_tl,
        "distribution_cost_tl": offer.distribution_cost_tl,
        "subtotal_tl": offer.subtotal_tl,
        "vat_tl": offer.vat_tl,
        "total_with_vat_tl": offer.total_with_vat_tl,
    }
    return [name for name, value in checked.items() if not (value.is_finite() and value >= 0)]


def _calc_bug(message: str) -> PricingOutcome:
    return PricingOutcome(None, (Flag(FlagCode.CALC_BUG, message, severity=Severity.S1),))
