"""Plausibility checks of a valid extraction, from `Thresholds.Validation` (docs/SPEC.md §3.3).

`parse_extraction` rejects documents that cannot be processed at all; these
checks accept the document and flag what an operator should look at. None of
them opens an incident by itself; they lower the quality grade to CHECK,
except the hard stop (BAD, no offer).

- LOW_CONFIDENCE: an extracted numeric field with confidence < LOW_CONFIDENCE.
- UNIT_PRICE_OUT_OF_RANGE: active unit price outside [MIN_UNIT_PRICE, MAX_UNIT_PRICE].
- DISTRIBUTION_PRICE_OUT_OF_RANGE: distribution price, when extracted, outside
  [MIN_DIST_PRICE, MAX_DIST_PRICE].
- LINE_AMOUNT_INCONSISTENT: a line whose amount differs from kwh × unit price
  by more than LINE_CONSISTENCY_TOLERANCE % of kwh × unit price.
- ENERGY_CROSSCHECK_FAILED: the lines' kWh sum differs from consumption_kwh by
  more than ENERGY_CROSSCHECK_TOLERANCE % of consumption_kwh.
- HARD_STOP_DELTA_EXCEEDED: ratio × 100 > HARD_STOP_DELTA; no offer is priced
  from such an invoice (the mismatch incident still opens: config invariant I6
  puts HARD_STOP_DELTA at or above SEVERE_RATIO, hence above RATIO).

Bounds are inclusive (a value on a limit is in range); tolerances are
"more than" (a difference equal to the tolerance passes).
"""

from __future__ import annotations

from decimal import Decimal

from services.pipeline.domain.arithmetic import exact, from_threshold, percent
from services.pipeline.domain.calculation import MismatchCheck, format_ratio
from services.pipeline.domain.extraction import Extraction
from services.pipeline.domain.flags import Flag, FlagCode
from services.runtime.config.thresholds import ValidationThresholds


def validation_flags(extraction: Extraction, thresholds: ValidationThresholds) -> tuple[Flag, ...]:
    """Every plausibility flag of an extraction, in a fixed order."""
    flags: list[Flag] = []
    low = extraction.low_confidence_fields(from_threshold(thresholds.LOW_CONFIDENCE))
    if low:
        flags.append(
            Flag(
                FlagCode.LOW_CONFIDENCE,
                f"confidence below {thresholds.LOW_CONFIDENCE} in " + ", ".join(low),
                field=low[0],
            )
        )
    flags.extend(_price_ranges(extraction, thresholds))
    line_flag = _line_consistency(extraction, thresholds.LINE_CONSISTENCY_TOLERANCE)
    if line_flag:
        flags.append(line_flag)
    energy_flag = _energy_crosscheck(extraction, thresholds.ENERGY_CROSSCHECK_TOLERANCE)
    if energy_flag:
        flags.append(energy_flag)
    return tuple(flags)


def is_hard_stop(check: MismatchCheck, thresholds: ValidationThresholds) -> bool:
    """True when the total is so far off that pricing an offer from it would mislead."""
    return check.ratio > percent(thresholds.HARD_STOP_DELTA)


def hard_stop_flag(check: MismatchCheck, thresholds: ValidationThresholds) -> Flag | None:
    """HARD_STOP_DELTA_EXCEEDED when `is_hard_stop`, else None."""
    if not is_hard_stop(check, thresholds):
        return None
    return Flag(
        FlagCode.HARD_STOP_DELTA_EXCEEDED,
        f"total differs by {format_ratio(check.ratio)}, above the hard stop of "
        f"{thresholds.HARD_STOP_DELTA} %: no offer is produced",
        field="invoice_total_with_vat_tl",
    )


def _price_ranges(extraction: Extraction, thresholds: ValidationThresholds) -> list[Flag]:
    flags: list[Flag] = []
    unit_price = extraction.current_active_unit_price_tl_per_kwh.value
    if not _within(unit_price, thresholds.MIN_UNIT_PRICE, thresholds.MAX_UNIT_PRICE):
        flags.append(
            Flag(
                FlagCode.UNIT_PRICE_OUT_OF_RANGE,
                f"active unit price {unit_price} TL/kWh outside "
                f"[{thresholds.MIN_UNIT_PRICE}, {thresholds.MAX_UNIT_PRICE}]",
                field="current_active_unit_price_tl_per_kwh",
            )
        )
    distribution = extraction.distribution_unit_price_tl_per_kwh
    if distribution is not None and not _within(
        distribution.value, thresholds.MIN_DIST_PRICE, thresholds.MAX_DIST_PRICE
    ):
        flags.append(
            Flag(
                FlagCode.DISTRIBUTION_PRICE_OUT_OF_RANGE,
                f"distribution unit price {distribution.value} TL/kWh outside "
                f"[{thresholds.MIN_DIST_PRICE}, {thresholds.MAX_DIST_PRICE}]",
                field="distribution_unit_price_tl_per_kwh",
            )
        )
    return flags


def _within(value: Decimal, low: float, high: float) -> bool:
    return from_threshold(low) <= value <= from_threshold(high)


def _line_consistency(extraction: Extraction, tolerance_percent: float) -> Flag | None:
    """One flag naming every line whose amount is not kwh × unit price within tolerance."""
    tolerance = percent(tolerance_percent)
    bad: list[int] = []
    with exact():
        for index, line in enumerate(extraction.lines):
            expected = line.kwh * line.unit_price_tl
            if abs(line.amount_tl - expected) > tolerance * expected:
                bad.append(index)
    if not bad:
        return None
    shown = ", ".join(str(i) for i in bad[:10]) + (
        f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    )
    return Flag(
        FlagCode.LINE_AMOUNT_INCONSISTENT,
        f"amount differs from kwh × unit price by more than {tolerance_percent} % "
        f"on line(s) {shown}",
        field=f"lines[{bad[0]}].amount_tl",
    )


def _energy_crosscheck(extraction: Extraction, tolerance_percent: float) -> Flag | None:
    """Lines must add up to the billed consumption; skipped for an invoice without lines."""
    if not extraction.lines:
        return None
    tolerance = percent(tolerance_percent)
    consumption = extraction.consumption_kwh.value
    with exact():
        line_kwh = sum((line.kwh for line in extraction.lines), Decimal(0))
        if abs(line_kwh - consumption) <= tolerance * consumption:
            return None
    return Flag(
        FlagCode.ENERGY_CROSSCHECK_FAILED,
        f"lines add up to {line_kwh} kWh but consumption is {consumption} kWh "
        f"(tolerance {tolerance_percent} %)",
        field="consumption_kwh",
    )
