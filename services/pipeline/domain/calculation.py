"""Recompute an invoice's total and classify its difference from the stated one (docs/SPEC.md §3.3).

    computed_total = (kwh × active_unit_price + kwh × distribution_unit_price
                      + other_charges) × (1 + vat_rate)
    delta          = |invoice_total − computed_total|
    ratio          = delta / invoice_total

- Rounding (`ACCEPT_ROUNDING`): delta > 0, ratio < RATIO and
  (delta ≤ ROUNDING_DELTA or ratio ≤ ROUNDING_RATIO).
- Mismatch (`INVOICE_TOTAL_MISMATCH`): not rounding and
  (ratio ≥ RATIO or delta ≥ ABSOLUTE); S1 when ratio ≥ SEVERE_RATIO **and**
  delta ≥ SEVERE_ABSOLUTE, else S2.
- Suspect, only for a mismatch: `OCR_LOCALE_SUSPECT` when any extracted
  numeric field has confidence < Validation.LOW_CONFIDENCE, or when
  invoice_total / computed_total is within Mismatch.SEPARATOR_MISREAD_TOLERANCE
  (2 %) of 10^k for k ∈ {±1, ±2, ±3}
  (a decimal or thousands separator read the wrong way: "42.000,00" taken as
  42.0, or "4.200" as 4200); otherwise `INVOICE_LOGIC`.

An invoice total of 0 has no meaningful ratio: with a computed total of 0 too
the invoice is consistent (ratio 0); otherwise the whole computed amount is
unexplained and the ratio is unbounded (Decimal Infinity, `null` in JSON).
That keeps every rule monotone: an unbounded ratio is never rounding, is
always at least RATIO and SEVERE_RATIO, and trips the hard stop, so the
severity is decided by the absolute delta alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from services.pipeline.domain.arithmetic import exact, from_threshold, to_json_number
from services.pipeline.domain.extraction import Extraction
from services.pipeline.domain.flags import Flag, FlagCode, Severity, SuspectReason
from services.runtime.config.thresholds import MismatchThresholds, Thresholds

_SEPARATOR_MISREAD_EXPONENTS = (-3, -2, -1, 1, 2, 3)
_UNBOUNDED = Decimal("Infinity")


@dataclass(frozen=True)
class MismatchCheck:
    """The comparison of an invoice's stated total with our computation of it.

    `ratio` is Decimal Infinity when the invoice total is 0 and the computed
    total is not. `severity` is set exactly when `has_mismatch`; the suspect
    fields only when there is a mismatch.
    """

    invoice_total_tl: Decimal
    computed_total_tl: Decimal
    delta_tl: Decimal
    ratio: Decimal
    accept_rounding: bool
    has_mismatch: bool
    severity: Severity | None = None
    suspect_reason: SuspectReason | None = None
    suspect_detail: str | None = None

    @property
    def ocr_suspect(self) -> bool:
        """True when the mismatch most likely comes from a misread, not from the invoice."""
        return self.suspect_reason is SuspectReason.OCR_LOCALE_SUSPECT

    def to_dict(self) -> dict[str, Any]:
        """`mismatch_info` (docs/SPEC.md §3.4) plus `accept_rounding` and the suspect's evidence."""
        return {
            "has_mismatch": self.has_mismatch,
            "severity": self.severity.value if self.severity else None,
            "delta_tl": to_json_number(self.delta_tl),
            "ratio": to_json_number(self.ratio),
            "computed_total_tl": to_json_number(self.computed_total_tl),
            "invoice_total_tl": to_json_number(self.invoice_total_tl),
            "suspect_reason": self.suspect_reason.value if self.suspect_reason else None,
            "suspect_detail": self.suspect_detail,
            "accept_rounding": self.accept_rounding,
        }


def computed_total(extraction: Extraction) -> Decimal:
    """The invoice total implied by the extracted quantities and prices, VAT included."""
    kwh = extraction.consumption_kwh.value
    with exact():
        subtotal = (
            kwh * extraction.current_active_unit_price_tl_per_kwh.value
            + kwh * extraction.distribution_unit_price
            + extraction.other_charges
        )
        return subtotal * (1 + extraction.effective_vat_rate)


def compare_totals(
    invoice_total: Decimal, computed: Decimal, thresholds: MismatchThresholds
) -> MismatchCheck:
    """Delta, ratio, rounding, mismatch and severity of two totals; no suspect yet."""
    with exact():
        delta = abs(invoice_total - computed)
        if invoice_total > 0:
            ratio = delta / invoice_total
        else:
            ratio = Decimal(0) if delta == 0 else _UNBOUNDED
        ratio_limit = from_threshold(thresholds.RATIO)
        accept_rounding = (
            delta > 0
            and ratio < ratio_limit
            and (
                delta <= from_threshold(thresholds.ROUNDING_DELTA)
                or ratio <= from_threshold(thresholds.ROUNDING_RATIO)
            )
        )
        has_mismatch = not accept_rounding and (
            ratio >= ratio_limit or delta >= from_threshold(thresholds.ABSOLUTE)
        )
        severity: Severity | None = None
        if has_mismatch:
            severe = ratio >= from_threshold(thresholds.SEVERE_RATIO) and delta >= from_threshold(
                thresholds.SEVERE_ABSOLUTE
            )
            severity = Severity.S1 if severe else Severity.S2
    return MismatchCheck(
        invoice_total_tl=invoice_total,
        computed_total_tl=computed,
        delta_tl=delta,
        ratio=ratio,
        accept_rounding=accept_rounding,
        has_mismatch=has_mismatch,
        severity=severity,
    )


def separator_misread_exponent(
    invoice_total: Decimal, computed: Decimal, tolerance: Decimal
) -> int | None:
    """k when invoice_total / computed is within `tolerance` × 10^k of 10^k (k = ±1..3)."""
    if computed <= 0 or invoice_total <= 0:
        return None
    with exact():
        quotient = invoice_total / computed
        for exponent in _SEPARATOR_MISREAD_EXPONENTS:
            power = Decimal(10) ** exponent
            if abs(quotient - power) <= tolerance * power:
                return exponent
    return None


def check_total(extraction: Extraction, thresholds: Thresholds) -> MismatchCheck:
    """Compare stated and computed totals and, for a mismatch, name the likely suspect."""
    check = compare_totals(
        extraction.invoice_total_with_vat_tl.value, computed_total(extraction), thresholds.Mismatch
    )
    if not check.has_mismatch:
        return check
    evidence: list[str] = []
    low_confidence = extraction.low_confidence_fields(
        from_threshold(thresholds.Validation.LOW_CONFIDENCE)
    )
    if low_confidence:
        evidence.append("low confidence in " + ", ".join(low_confidence))
    exponent = separator_misread_exponent(
        check.invoice_total_tl,
        check.computed_total_tl,
        from_threshold(thresholds.Mismatch.SEPARATOR_MISREAD_TOLERANCE),
    )
    if exponent is not None:
        evidence.append(
            f"invoice total is about 10^{exponent} × computed total "
            "(decimal/thousands separator misread)"
        )
    if evidence:
        return replace(
            check,
            suspect_reason=SuspectReason.OCR_LOCALE_SUSPECT,
            suspect_detail="; ".join(evidence),
        )
    return replace(check, suspect_reason=SuspectReason.INVOICE_LOGIC)


def mismatch_flags(check: MismatchCheck) -> tuple[Flag, ...]:
    """ACCEPT_ROUNDING, or INVOICE_TOTAL_MISMATCH (with OCR_LOCALE_SUSPECT when suspected)."""
    difference = (
        f"invoice total {check.invoice_total_tl:.2f} TL vs computed "
        f"{check.computed_total_tl:.2f} TL: delta {check.delta_tl:.2f} TL "
        f"({format_ratio(check.ratio)})"
    )
    if check.accept_rounding:
        return (Flag(FlagCode.ACCEPT_ROUNDING, f"accepted as rounding: {difference}"),)
    if not check.has_mismatch:
        return ()
    flags = [
        Flag(
            FlagCode.INVOICE_TOTAL_MISMATCH,
            difference,
            severity=check.severity,
            field="invoice_total_with_vat_tl",
        )
    ]
    if check.ocr_suspect:
        flags.append(Flag(FlagCode.OCR_LOCALE_SUSPECT, check.suspect_detail or ""))
    return tuple(flags)


def format_ratio(ratio: Decimal) -> str:
    """A ratio as a percentage for messages; an unbounded ratio says so."""
    if not ratio.is_finite():
        return "unbounded: invoice total is 0"
    with exact():
        return f"{ratio * 100:.2f} %"
